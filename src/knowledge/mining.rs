//! Drafting a knowledge card from a conversation a person resolved: the customer's question as
//! asked, and the answer as the agent gave it, written by the chat model from the agent's
//! replies (`prompts/draft.j2`) and scrubbed of personal data before anything is stored.
//!
//! The model's draft is kept only when it holds every number the agent gave (times, amounts,
//! limits) and adds none, in the conversation's language; otherwise the draft is the agent's
//! own sentences, greetings and sign-offs left out. A 0.5B model drops or invents figures often
//! enough that an unchecked draft would put wrong facts in front of the reviewer.
//!
//! Pure: composes the draft; the mining flow (`desk::mining`) stores it.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::Serialize;

use super::answer::{Answerer, grounded_sampling, language_name};
use super::support;
use crate::error::{Error, Result};
use crate::pii::Detector;
use crate::runtime::generate::{ChatMessage, GenEvent};
use crate::text;
use crate::vocab::Role;

/// The most characters of a drafted question (the card's title).
const MAX_TITLE_CHARS: usize = 160;
/// The share of the agent's answer's keyword terms a model draft must keep.
const MIN_TERMS_KEPT: f32 = 0.5;
/// The most tokens the model may write for one draft.
const DRAFT_TOKENS: usize = 320;

/// One turn of the conversation being mined, as stored (already masked at rest).
#[derive(Debug, Clone)]
pub struct MinedTurn {
    pub seq: i64,
    pub role: Role,
    pub text: String,
}

/// Who wrote a draft's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WrittenBy {
    /// The chat model, and its draft passed the checks.
    Model,
    /// The agent's own sentences: no chat model, or its draft failed a check.
    Agent,
}

#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    /// The customer's question as asked (scrubbed): the evidence's question.
    pub asked: String,
    /// The card's title: the question, as a general one.
    pub title: String,
    pub body: String,
    pub language: String,
    pub written_by: WrittenBy,
    /// Why the model's draft was not kept, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The turns read, by position.
    pub turns: Vec<i64>,
}

pub struct Drafter {
    answerer: Arc<Answerer>,
    scrubber: Scrubber,
}

impl Drafter {
    pub fn new(answerer: Arc<Answerer>, allow: &[String]) -> Self {
        Drafter {
            answerer,
            scrubber: Scrubber::new(allow),
        }
    }

    /// The draft of a resolved conversation, or `None` when no agent answered in it (nothing
    /// a person taught).
    pub async fn draft(&self, turns: &[MinedTurn]) -> Result<Option<Draft>> {
        let Some(last_agent) = turns.iter().rposition(|t| t.role == Role::Agent) else {
            return Ok(None);
        };
        // What was asked before the last reply; bot turns are kefu's own and teach nothing.
        let read: Vec<MinedTurn> = turns[..=last_agent]
            .iter()
            .filter(|t| t.role != Role::Bot && !t.text.trim().is_empty())
            .map(|t| MinedTurn {
                text: self.scrubber.scrub(&t.text),
                ..t.clone()
            })
            .collect();
        let customer: Vec<&str> = read
            .iter()
            .filter(|t| t.role == Role::Customer)
            .map(|t| t.text.as_str())
            .collect();
        let agent: Vec<&str> = read
            .iter()
            .filter(|t| t.role == Role::Agent)
            .map(|t| t.text.as_str())
            .collect();
        if customer.is_empty() {
            return Ok(None);
        }
        let language = text::detect_language(&customer.join("\n")).to_string();
        let asked = text::shorten(&question_of(&customer), 600);
        let extracted = (text::shorten(&asked, MAX_TITLE_CHARS), agent_answer(&agent));
        let (title, body, written_by, refused) = match self.write(&read, &language).await? {
            None => (extracted.0, extracted.1, WrittenBy::Agent, None),
            Some(raw) => match self.keep(&raw, &agent, &language) {
                Ok((q, a)) => (q, a, WrittenBy::Model, None),
                Err(why) => (extracted.0, extracted.1, WrittenBy::Agent, Some(why)),
            },
        };
        Ok(Some(Draft {
            asked,
            title,
            body,
            language,
            written_by,
            refused,
            turns: read.iter().map(|t| t.seq).collect(),
        }))
    }

    /// The model's raw draft, or `None` without a chat model.
    async fn write(&self, read: &[MinedTurn], language: &str) -> Result<Option<String>> {
        let Some(g) = self.answerer.generator() else {
            return Ok(None);
        };
        let system = self.answerer.prompts().render(
            "draft.j2",
            minijinja::context! { language => language, language_name => language_name(language) },
        )?;
        let transcript = read
            .iter()
            .map(|t| {
                let who = if t.role == Role::Agent {
                    "Agent"
                } else {
                    "Customer"
                };
                format!("{who}: {}", t.text)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let prompt = g.render_chat(&[
            ChatMessage::new("system", system),
            ChatMessage::new("user", transcript),
        ])?;
        let mut rx = g.generate(prompt, grounded_sampling(0.0, DRAFT_TOKENS, 0))?;
        let mut out = String::new();
        loop {
            match rx.recv().await {
                Some(GenEvent::Delta(d)) => out.push_str(&d),
                Some(GenEvent::Done { .. }) => {
                    tracing::debug!(raw = %out, "the chat model's draft");
                    return Ok(Some(out));
                }
                Some(GenEvent::Failed(e)) => return Err(Error::Model(e)),
                None => {
                    return Err(Error::Model(crate::runtime::ModelError::WorkerGone(
                        "generation",
                    )));
                }
            }
        }
    }

    /// The model's question and answer, scrubbed, when they pass the checks; otherwise why not.
    fn keep(
        &self,
        raw: &str,
        agent: &[&str],
        language: &str,
    ) -> std::result::Result<(String, String), String> {
        let (q, a) = parse(raw).ok_or("the reply is not in the QUESTION/ANSWER form")?;
        let (q, a) = (self.scrubber.scrub(&q), self.scrubber.scrub(&a));
        if q.is_empty() || a.is_empty() {
            return Err("an empty question or answer".into());
        }
        if text::detect_language(&a) != language {
            return Err(format!("the answer is not in {language}"));
        }
        let given = support::stated(agent.iter().copied());
        let invented = support::unsupported_numbers(&a, &given);
        if !invented.is_empty() {
            return Err(format!(
                "numbers the agent did not give: {}",
                invented.join(", ")
            ));
        }
        // Where to click is a fact as much as a figure: every quoted label and menu path the
        // agent gave ("Orders > Refunds", “修改地址”) must be in the draft.
        let answer = agent_answer(agent);
        let missing: Vec<&str> = steps(&answer)
            .into_iter()
            .filter(|st| !a.contains(st))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "steps the agent gave are missing: {}",
                missing.join(", ")
            ));
        }
        // A placeholder the agent's answer does not have came from the customer's words (their
        // order number): no general answer carries one.
        for p in PLACEHOLDERS {
            if a.matches(p).count() > answer.matches(p).count() {
                return Err(format!("it carries {p} from the customer's words"));
            }
        }
        // Much longer than what the agent said: the model added steps of its own.
        let said_chars = answer.chars().count();
        if a.chars().count() > said_chars * 3 / 2 + 40 {
            return Err("it is much longer than the agent's answer".into());
        }
        let kept = support::stated([a.as_str()]);
        let dropped: Vec<String> = agent
            .iter()
            .flat_map(|t| support::claimed(t))
            .filter(|n| !kept.contains(n))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !dropped.is_empty() {
            return Err(format!(
                "numbers the agent gave are missing: {}",
                dropped.join(", ")
            ));
        }
        // Steps and conditions are facts too, and they carry no number: a draft that keeps
        // too few of the agent's words has left some out ("3到5个工作日内" for a reply that
        // also said where to follow the refund).
        let said: HashSet<String> = text::query_terms(&answer).into_iter().collect();
        let written: HashSet<String> = text::query_terms(&a).into_iter().collect();
        let kept = said.intersection(&written).count() as f32 / said.len().max(1) as f32;
        if kept < MIN_TERMS_KEPT {
            return Err(format!(
                "it keeps {:.0}% of the agent's words (at least {:.0}% needed)",
                kept * 100.0,
                MIN_TERMS_KEPT * 100.0
            ));
        }
        Ok((text::shorten(&q, MAX_TITLE_CHARS), a))
    }
}

/// What the scrubber and the turn masker put in place of personal data.
const PLACEHOLDERS: [&str; 9] = [
    "[name]",
    "[number]",
    "[address]",
    "[地址]",
    "[email]",
    "[phone]",
    "[id]",
    "[card]",
    "[account]",
];

/// The quoted labels and menu paths of a text: what a customer clicks.
fn steps(text: &str) -> Vec<&str> {
    static STEP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"“([^”]{1,40})”|「([^」]{1,40})」|"([^"]{1,40})"|\b([A-Z]\w*(?: [A-Z]\w*)*(?: > [A-Z]\w*(?: [A-Z]\w*)*)+)"#).unwrap()
    });
    STEP.captures_iter(text)
        .filter_map(|c| c.iter().skip(1).flatten().next())
        .map(|m| m.as_str().trim())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a draft's answer can be the same answer as a card's: every number it states is
/// one the card states too.
pub fn same_answer(body: &str, card: &crate::store::CardContent) -> bool {
    let stated = support::stated([card.title.as_str(), card.body.as_str()]);
    support::unsupported_numbers(body, &stated).is_empty()
}

/// The customer's question: the first sentence that asks one, else their first turn.
fn question_of(customer: &[&str]) -> String {
    let asks = |s: &&str| s.contains('?') || s.contains('？') || s.ends_with('吗');
    customer
        .iter()
        .flat_map(|t| text::sentences(t))
        .find(asks)
        .or(customer.first().copied())
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// Pleasantries that carry no fact: an opening or closing sentence of an agent's reply.
static PLEASANTRY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|thanks|thank you|you're welcome|you are welcome|no problem|sorry (?:for|about) the|is there anything|anything else|have a (?:nice|great|good)|glad|happy to help|您好|你好|亲|感谢|谢谢|不客气|还有什么|祝您|很高兴|抱歉给您)",
    )
    .unwrap()
});

/// The agent's answer in their own sentences, without greetings and sign-offs.
fn agent_answer(agent: &[&str]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for reply in agent {
        for s in text::sentences(reply) {
            if let Some(kept) = without_pleasantry(s.trim()) {
                out.push(kept);
            }
        }
    }
    if out.is_empty() {
        agent.join(" ")
    } else {
        let joiner = if out.iter().any(|s| s.chars().any(text::is_cjk)) {
            ""
        } else {
            " "
        };
        out.join(joiner)
    }
}

/// A sentence without its opening pleasantry: "您好，退款3到5天到账。" keeps what follows the
/// greeting; "Thanks for reaching out." is all pleasantry and goes.
fn without_pleasantry(s: &str) -> Option<&str> {
    let mut rest = s;
    while !rest.is_empty() && PLEASANTRY.is_match(rest) {
        match rest.find([',', '，', '!', '！']) {
            Some(i) => {
                let sep = rest[i..].chars().next().map_or(1, char::len_utf8);
                rest = rest[i + sep..].trim_start();
            }
            // A whole sentence that opens with a pleasantry: short ones are only that.
            None if rest.chars().count() < 60 => return None,
            None => break,
        }
    }
    (!rest.is_empty()).then_some(rest)
}

/// `QUESTION: …` and `ANSWER: …` (or 问题/答案), each possibly over several lines.
fn parse(raw: &str) -> Option<(String, String)> {
    static LABEL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?im)^\s*(?:\*\*)?(question|answer|问题|答案|回答)(?:\*\*)?\s*[:：]\s*")
            .unwrap()
    });
    let mut q = None;
    let mut a = None;
    let labels: Vec<_> = LABEL.captures_iter(raw).collect();
    for (i, c) in labels.iter().enumerate() {
        let whole = c.get(0)?;
        let end = labels
            .get(i + 1)
            .and_then(|n| n.get(0))
            .map_or(raw.len(), |m| m.start());
        let value = raw[whole.end()..end].trim().to_string();
        match c[1].to_lowercase().as_str() {
            "question" | "问题" if q.is_none() => q = Some(value),
            "answer" | "答案" | "回答" if a.is_none() => a = Some(value),
            _ => {}
        }
    }
    Some((q?, a?))
}

/// Removes what identifies a person from text a card is drafted from: what the turn masker
/// finds (phone, e-mail, ID, payment card and account numbers) and, beyond it, names in
/// greetings and introductions, order and reference codes, and street addresses. The masker
/// keeps order codes on purpose (the agent reading a conversation needs them); a card never
/// does.
pub struct Scrubber {
    pii: Detector,
}

static NAME_AFTER_GREETING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(Hi|Hello|Hey|Dear|Thanks|Thank you|Morning|Good (?:morning|afternoon|evening))(,?\s+)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\b").unwrap()
});
static TITLED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?").unwrap()
});
static INTRODUCED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i:\b(my name is|this is|i am|i'm|name:)\s+)[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?")
        .unwrap()
});
static SIGNED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)(?:^|\s)[-–—~]\s*[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s*$").unwrap()
});
static ZH_HONORIFIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:我叫|我是|本人是?|亲爱的)?[\p{Han}]{1,2}(?:先生|女士|小姐)").unwrap()
});
/// "我叫李娜", "我是张伟，…": a name of two or three characters ending the clause.
static ZH_INTRODUCED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:我叫|我是|本人|姓名[:：]?)[\p{Han}]{2,3}(?:[，,。.！!？?\s]|$)").unwrap()
});
/// Codes with five or more digits (orders, tickets, tracking, invoices), possibly with letters
/// and dashes: no general answer needs one.
static CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?-u:\b)#?[A-Za-z]{0,6}[-#]?[0-9](?:[0-9A-Za-z-]*[0-9]){4,}[A-Za-z]*(?-u:\b)|#[0-9]{3,}",
    )
    .unwrap()
});
static EN_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9]{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl)\b\.?(?:,?\s*(?:Apt|Unit|Suite)\.?\s*[0-9A-Za-z]+)?").unwrap()
});
static ZH_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[\p{Han}0-9]{0,12}(?:省|市|区|县)?[\p{Han}0-9]{1,12}(?:路|街|大道|巷)[0-9一二三四五六七八九十百]+号(?:[0-9]+(?:栋|幢|单元|楼|室|号))*").unwrap()
});

impl Scrubber {
    pub fn new(allow: &[String]) -> Self {
        Scrubber {
            pii: Detector::new(allow),
        }
    }

    pub fn scrub(&self, s: &str) -> String {
        let s = self.pii.mask(s);
        let s = EN_ADDRESS.replace_all(&s, "[address]");
        let s = ZH_ADDRESS.replace_all(&s, "[地址]");
        // Titles first: "Hello Ms. Chen" would otherwise lose "Ms" as the greeted name and
        // keep "Chen".
        let s = TITLED_NAME.replace_all(&s, "[name]");
        let s = NAME_AFTER_GREETING.replace_all(&s, "$1");
        let s = INTRODUCED_NAME.replace_all(&s, "$1 [name]");
        let s = SIGNED_NAME.replace_all(&s, "");
        let s = ZH_HONORIFIC.replace_all(&s, "");
        let s = ZH_INTRODUCED.replace_all(&s, "");
        let s = CODE.replace_all(&s, "[number]");
        s.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_is_scrubbed_and_facts_stay() {
        let s = Scrubber::new(&[]);
        let out = s.scrub(
            "Hi Jane Doe, your order AB-1234567 ships to 42 Baker Street. Mail jane@example.com or call +44 20 7946 0958. Refunds take 5 to 7 business days and cost $25.",
        );
        assert_eq!(
            s.scrub("Hello Ms. Chen, open Orders."),
            "Hello [name], open Orders."
        );
        for gone in ["Jane", "1234567", "Baker", "example.com", "7946"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        for kept in ["5 to 7 business days", "$25", "Hi,"] {
            assert!(out.contains(kept), "{kept} lost from {out}");
        }
        let zh = s.scrub("王先生您好，您的订单号2023110512345已退款，退款3到5个工作日到账。地址：北京市朝阳区建国路88号。我叫李小明。");
        for gone in ["王先生", "2023110512345", "建国路88号", "李小明", "王"] {
            assert!(!zh.contains(gone), "{gone} left in {zh}");
        }
        assert!(zh.contains("3到5个工作日"), "{zh}");
        assert_eq!(
            s.scrub("退款要几天？我是张伟，电话在上面"),
            "退款要几天？电话在上面"
        );
        assert_eq!(
            s.scrub("How do I reset it? - Raj Patel"),
            "How do I reset it?"
        );
    }

    #[test]
    fn the_two_labelled_lines_are_read_in_either_language() {
        assert_eq!(
            parse(
                "QUESTION: How long do refunds take?\nANSWER: Five to seven days.\nThey go to the card."
            ),
            Some((
                "How long do refunds take?".into(),
                "Five to seven days.\nThey go to the card.".into()
            ))
        );
        assert_eq!(
            parse("问题：退款多久到账？\n答案：3到5个工作日。"),
            Some(("退款多久到账？".into(), "3到5个工作日。".into()))
        );
        assert_eq!(parse("Refunds take five days."), None);
        assert_eq!(
            steps("Track it under Orders > Refunds, or tap “修改地址” or \"Download invoice\"."),
            ["Orders > Refunds", "修改地址", "Download invoice"]
        );
    }

    #[test]
    fn the_agent_answer_leaves_pleasantries_out() {
        let a = agent_answer(&[
            "Hello! Thanks for reaching out.",
            "Refunds reach your card within 5 business days. Is there anything else I can help with?",
        ]);
        assert_eq!(a, "Refunds reach your card within 5 business days.");
        assert_eq!(
            agent_answer(&[
                "您好，电子发票会在2个工作日内发到邮箱。",
                "Hi Jane, thanks for waiting, it takes 5 days."
            ]),
            "电子发票会在2个工作日内发到邮箱。it takes 5 days."
        );
        assert_eq!(
            question_of(&["hi", "How long does a refund take?"]),
            "How long does a refund take?"
        );
    }
}

//! Agent assist: for a live conversation, the cards that matter now, coaching notes for the
//! agent, and suggested replies grounded in the cards.
//!
//! Everything but the suggestions is retrieval and rules (tens of milliseconds), so a caller can
//! show it at once and let the generated suggestions stream in after. Suggestions follow the
//! answer endpoint's rules: only when a card covers the question (the calibrated threshold), from
//! the cards alone, cited, and withheld if they repeat the instructions.

use std::sync::{Arc, LazyLock};

use futures::{Stream, StreamExt};
use regex::Regex;
use serde::Serialize;

use super::answer::{Answerer, clean, grounded_sampling, language_name, reply_language};
use super::guard;
use super::retrieval::Hit;
use crate::error::{Error, Result};
use crate::runtime::generate::GenEvent;
use crate::store::answers::Citation;
use crate::store::conversations::Turn;
use crate::vocab::{Channel, CoachingKind, EscalationReason, NoSuggestions, Role, Sentiment};

/// At most this many suggestions per request: each is a generation.
pub const MAX_SUGGESTIONS: usize = 3;
/// Tokens per suggested reply: a chat-length message.
const SUGGESTION_TOKENS: usize = 160;

/// What the conversation layer knows about the customer's mood, as plain data (knowledge does
/// not depend on the conversation module).
#[derive(Debug, Clone, Default)]
pub struct MoodSignal {
    /// Sentiment of the customer's last scored turn.
    pub last: Option<Sentiment>,
    pub worsening: bool,
    /// Escalation flags in turn order: (reason, turn, detail).
    pub flags: Vec<(EscalationReason, i64, String)>,
}

#[derive(Debug, Clone)]
pub struct AssistRequest {
    /// The conversation's recent turns, oldest first; the last customer turn is what is being
    /// assisted with.
    pub turns: Vec<Turn>,
    pub language: Option<String>,
    pub n: usize,
    pub seed: Option<u64>,
    pub mood: MoodSignal,
}

/// A card that matters to the conversation now.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RelevantCard {
    pub card_id: String,
    pub title: String,
    pub score: f32,
    /// Whether it scores above the answer threshold (a bot would answer from it).
    pub covers: bool,
    /// The passage that matched.
    pub passage: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Coaching {
    pub kind: CoachingKind,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    pub text: String,
    pub citations: Vec<Citation>,
}

/// The non-generative part: ready before any suggestion is generated.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssistContext {
    pub language: String,
    pub cards: Vec<RelevantCard>,
    pub coaching: Vec<Coaching>,
    /// Why there are no suggestions, when there will be none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_suggestions: Option<NoSuggestions>,
}

/// Everything decided before generation.
pub struct AssistPlan {
    pub context: AssistContext,
    prompt: Option<String>,
    covering: Vec<(Hit, String)>,
    fingerprint: Option<guard::Fingerprint>,
    n: usize,
    seed: Option<u64>,
}

/// What a suggestion stream yields.
#[derive(Debug, Clone)]
pub enum SuggestEvent {
    Delta {
        index: usize,
        text: String,
    },
    /// A suggestion is complete; `None` when it was withheld (empty, or it repeated the
    /// instructions).
    Done {
        index: usize,
        suggestion: Option<Suggestion>,
    },
}

impl Answerer {
    /// Retrieval, coaching and the prompt: everything an agent sees before the suggestions.
    pub async fn assist_plan(&self, req: AssistRequest) -> Result<AssistPlan> {
        if req.n == 0 || req.n > MAX_SUGGESTIONS {
            return Err(Error::invalid(format!("n must be 1 to {MAX_SUGGESTIONS}")));
        }
        let Some(last) = req.turns.iter().rposition(|t| t.role == Role::Customer) else {
            return Err(Error::invalid(
                "the conversation has no customer turn to assist with yet",
            ));
        };
        let question = req.turns[last].text.clone();
        let language = reply_language(req.language.as_deref(), &question);
        // The turns up to the question, without earlier turns that try to instruct the model.
        let mut turns = req.turns[..last].to_vec();
        guard::screen_history(&mut turns);
        // Agents may use every published card, whatever channels it is meant for.
        let hits = self.retrieve(&question, &turns, None).await?;
        turns.push(req.turns[last].clone());
        let cards: Vec<RelevantCard> = hits
            .iter()
            .take(3)
            .map(|h| RelevantCard {
                card_id: h.card_id.clone(),
                title: h.title.clone(),
                score: h.score,
                covers: h.score >= self.cfg.threshold,
                passage: h.passage.clone(),
            })
            .collect();
        let covering = self.grounding(hits).await?;
        let upset = req.mood.last == Some(Sentiment::Negative) || req.mood.worsening;
        let coaching = self.coach(&req, &language, upset, &covering)?;
        let mut context = AssistContext {
            language,
            cards,
            coaching,
            no_suggestions: None,
        };
        let mut plan_prompt = None;
        let mut fingerprint = None;
        if guard::is_injection(&question) {
            context.no_suggestions = Some(NoSuggestions::UnsupportedRequest);
        } else if covering.is_empty() {
            context.no_suggestions = Some(NoSuggestions::NotCovered);
        } else if let Some(g) = &self.generator {
            let vars = minijinja::context! {
                language => &context.language,
                language_name => language_name(&context.language),
                channel => req.turns[last].channel.as_str(),
                upset => upset,
            };
            let (prompt, print) =
                self.grounded_prompt(g, "suggest.j2", vars, &covering, &turns, SUGGESTION_TOKENS)?;
            plan_prompt = Some(prompt);
            fingerprint = Some(print);
        } else {
            context.no_suggestions = Some(NoSuggestions::GeneratorUnavailable);
        }
        Ok(AssistPlan {
            context,
            prompt: plan_prompt,
            covering,
            fingerprint,
            n: req.n,
            seed: req.seed,
        })
    }

    /// The suggestions of a plan, as they are generated: all `n` are queued at once, so they
    /// advance together in the generator's batch. Dropping the stream cancels them.
    pub fn suggest(
        self: Arc<Self>,
        plan: &AssistPlan,
    ) -> Result<impl Stream<Item = Result<SuggestEvent>> + use<>> {
        let mut streams = Vec::new();
        if let (Some(prompt), Some(g)) = (&plan.prompt, &self.generator) {
            for index in 0..plan.n {
                // The first is the greedy reply; the others sample for variety, each with its
                // own seed so that a request is reproducible.
                let temperature = if index == 0 && plan.seed.is_none() {
                    0.0
                } else {
                    0.8
                };
                let seed = plan.seed.unwrap_or(0).wrapping_add(index as u64);
                let params = grounded_sampling(temperature, SUGGESTION_TOKENS, seed);
                let rx = g.generate(prompt.clone(), params)?;
                let (me, covering, fingerprint) = (
                    self.clone(),
                    plan.covering.clone(),
                    plan.fingerprint.clone(),
                );
                streams.push(
                    async_stream::try_stream! {
                        let mut rx = rx;
                        let mut text = String::new();
                        loop {
                            match rx.recv().await {
                                Some(GenEvent::Delta(d)) => {
                                    text.push_str(&d);
                                    yield SuggestEvent::Delta { index, text: d };
                                }
                                Some(GenEvent::Done { .. }) => break,
                                Some(GenEvent::Failed(e)) => Err(Error::Model(e))?,
                                None => Err(Error::Model(crate::runtime::ModelError::WorkerGone("generation")))?,
                            }
                        }
                        let text = clean(&text, Channel::Chat);
                        let leaked = fingerprint.as_ref().is_some_and(|f| f.leaked_in(&text));
                        let suggestion = if text.is_empty() || leaked {
                            None
                        } else {
                            let citations = me.cite(&text, &covering).await?;
                            Some(Suggestion { text, citations })
                        };
                        yield SuggestEvent::Done { index, suggestion };
                    }
                    .boxed(),
                );
            }
        }
        Ok(futures::stream::select_all(streams))
    }

    /// Notes for the agent: the customer's mood and escalation state, what the cards do not
    /// allow promising, and the next thing to ask.
    fn coach(
        &self,
        req: &AssistRequest,
        language: &str,
        upset: bool,
        covering: &[(Hit, String)],
    ) -> Result<Vec<Coaching>> {
        let note = |kind: CoachingKind, vars: minijinja::Value| -> Result<Coaching> {
            let ctx = minijinja::context! { kind => kind.as_str(), language => language, ..vars };
            Ok(Coaching {
                kind,
                note: self.prompts.render("coaching.j2", ctx)?.trim().to_string(),
            })
        };
        let mut out = Vec::new();
        if upset {
            let mut why = Vec::new();
            if req.mood.last == Some(Sentiment::Negative) {
                why.push(if language.starts_with("zh") {
                    "最近一轮为负面"
                } else {
                    "last turn negative"
                });
            }
            if req.mood.worsening {
                why.push(if language.starts_with("zh") {
                    "情绪在变差"
                } else {
                    "mood worsening"
                });
            }
            let sep = if language.starts_with("zh") {
                "，"
            } else {
                ", "
            };
            out.push(note(
                CoachingKind::AcknowledgeFrustration,
                minijinja::context! { why => why.join(sep) },
            )?);
        }
        let mut escalated = false;
        for (reason, turn, detail) in &req.mood.flags {
            let kind = match reason {
                EscalationReason::HumanRequested => CoachingKind::HumanRequested,
                EscalationReason::RepeatedContacts => CoachingKind::RepeatedContacts,
                _ if escalated => continue,
                _ => {
                    escalated = true;
                    CoachingKind::Escalated
                }
            };
            if out.iter().any(|c| c.kind == kind) {
                continue;
            }
            out.push(note(
                kind,
                minijinja::context! { turn => turn, detail => detail },
            )?);
        }
        for (h, body) in covering.iter().take(2) {
            for quote in limits(body).into_iter().take(2) {
                if out
                    .iter()
                    .filter(|c| c.kind == CoachingKind::DoNotPromise)
                    .count()
                    < 2
                {
                    out.push(note(
                        CoachingKind::DoNotPromise,
                        minijinja::context! { quote => quote, title => &h.title },
                    )?);
                }
            }
        }
        match covering.first() {
            None => out.push(note(CoachingKind::NotCovered, minijinja::context! {})?),
            Some((h, body)) => {
                let said: String = req
                    .turns
                    .iter()
                    .filter(|t| t.role == Role::Customer)
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                match needed_item(body, &said, language) {
                    Some(item) => out.push(note(
                        CoachingKind::AskFor,
                        minijinja::context! { item => item, title => &h.title },
                    )?),
                    None => out.push(note(
                        CoachingKind::ConfirmSteps,
                        minijinja::context! { title => &h.title },
                    )?),
                }
            }
        }
        Ok(out)
    }
}

/// Sentences of a card that limit what may be offered: negations, "only", deadlines, caps.
pub(super) fn limits(body: &str) -> Vec<String> {
    static LIMIT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(not|no|never|cannot|can't|won't|only|must|within|up to|at most|maximum|non-refundable|except|unless)\b|不|仅|只|须|无法|以内|最多|除外",
        )
        .expect("static regex")
    });
    static SENTENCE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[^.!?。！？\n]+[.!?。！？]?").expect("static regex"));
    SENTENCE
        .find_iter(body)
        .map(|m| m.as_str().trim())
        .filter(|s| s.chars().count() >= 12 && LIMIT.is_match(s))
        .map(|s| crate::text::shorten(s, 200))
        .collect()
}

/// What a card's steps need from the customer (an order number, a receipt...) that the customer
/// has not given yet, named in the customer's language.
fn needed_item(card: &str, said: &str, language: &str) -> Option<&'static str> {
    const ITEMS: [(&str, &str); 10] = [
        ("order number", "订单号"),
        ("tracking number", "快递单号"),
        ("account number", "账号"),
        ("serial number", "序列号"),
        ("model number", "型号"),
        ("invoice", "发票"),
        ("receipt", "收据"),
        ("photo", "照片"),
        ("phone number", "手机号"),
        ("email address", "邮箱"),
    ];
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[A-Za-z]*\d{5,}").expect("static regex"));
    let (card, said) = (card.to_lowercase(), said.to_lowercase());
    // A long number in what the customer wrote is most likely the identifier already given.
    let gave_number = NUMBER.is_match(&said);
    ITEMS
        .iter()
        .find(|(en, zh)| {
            (card.contains(en) || card.contains(zh))
                && !said.contains(en)
                && !said.contains(zh)
                && !(gave_number && (en.ends_with("number") || zh.ends_with('号')))
        })
        .map(|(en, zh)| if language.starts_with("zh") { *zh } else { *en })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiting_sentences_are_found_in_english_and_chinese() {
        let body = "Hold RESET for 10 seconds. Refunds are only issued within 30 days of purchase. \
                    Enjoy your router! 退款仅限购买后30天以内。";
        let got = limits(body);
        assert_eq!(
            got,
            [
                "Refunds are only issued within 30 days of purchase.",
                "退款仅限购买后30天以内。"
            ]
        );
    }

    #[test]
    fn the_next_thing_to_ask_is_what_the_card_needs_and_was_not_given() {
        let card = "Tell us your order number and attach a photo of the damage.";
        assert_eq!(
            needed_item(card, "my lamp arrived broken", "en"),
            Some("order number")
        );
        assert_eq!(
            needed_item(card, "order A123456 arrived broken", "en"),
            Some("photo")
        );
        assert_eq!(needed_item(card, "我的台灯坏了", "zh"), Some("订单号"));
        assert_eq!(needed_item("Restart the router.", "it drops", "en"), None);
    }
}

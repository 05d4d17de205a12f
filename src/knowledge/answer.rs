//! Grounded answers: retrieve published cards for a question, decide whether they cover it, and
//! if they do have the chat model answer from them alone, in the channel's style; if they do not,
//! hand off to a person without calling the model. Every answer is recorded against its
//! conversation with the cards it cited.
//!
//! The decision to answer is a threshold on the retrieval score of the best card, calibrated on
//! labelled questions (eval/README.md), not left to the model: a small model asked "answer only if
//! the articles cover it" still invents answers.

use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};

use super::retrieval::{Filters, Hit};
use super::{Knowledge, guard, prompts::Prompts};
use crate::config::AnswerConfig;
use crate::error::{Error, Result};
use crate::runtime::embed::TextKind;
use crate::runtime::generate::{ChatMessage, GenEvent, GenPool, SamplingParams};
use crate::store::conversations::{AnswerRecord, Citation, Turn, TurnMood};
use crate::store::vector::embedded::dot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Chat,
    Social,
    Email,
    Voice,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Chat => "chat",
            Channel::Social => "social",
            Channel::Email => "email",
            Channel::Voice => "voice",
        }
    }

    /// Longest answer, in tokens: chat and voice are short by design, e-mail has room for steps.
    fn max_tokens(self) -> usize {
        match self {
            Channel::Chat | Channel::Social => 160,
            Channel::Voice => 140,
            Channel::Email => 360,
        }
    }
}

use crate::store::conversations::CARRY_HOURS;

#[derive(Debug, Clone)]
pub struct AnswerRequest {
    pub question: String,
    pub channel: Channel,
    pub conversation_id: Option<String>,
    pub customer_id: Option<String>,
    pub language: Option<String>,
    pub seed: Option<u64>,
    /// Who asked, for the log.
    pub actor: String,
    /// The question's sentiment, recorded with its turn (conversation::Conversations scores it).
    pub mood: Option<TurnMood>,
    /// Set when the conversation is flagged for escalation: the answer is a hand-off
    /// (`escalated`) and the model is not called.
    pub escalated: bool,
}

impl AnswerRequest {
    /// The caller's mistakes, found before any model work.
    pub fn validate(&self) -> Result<()> {
        let question = self.question.trim();
        if question.is_empty() {
            return Err(Error::invalid(
                "invalid_request",
                "question must not be empty",
            ));
        }
        if question.chars().count() > MAX_QUESTION_CHARS {
            return Err(Error::invalid(
                "invalid_request",
                format!("question is longer than {MAX_QUESTION_CHARS} characters"),
            ));
        }
        for (name, v) in [
            ("conversation_id", &self.conversation_id),
            ("customer_id", &self.customer_id),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.len() > 128 || v.chars().any(char::is_control))
            {
                return Err(Error::invalid(
                    "invalid_request",
                    format!("{name} must be 1 to 128 printable characters"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Answer {
    /// Id of this answer, for `POST /v1/answers/{id}/feedback`.
    pub answer_id: String,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub handoff: bool,
    /// `escalated` (the conversation is flagged: see `GET /v1/conversations/{id}`),
    /// `no_relevant_card`, `unsupported_request`, `no_answer` or `generator_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_reason: Option<String>,
    /// 0.5 at the answer threshold, towards 1 as the best card scores higher above it.
    pub confidence: f32,
    pub conversation_id: String,
    pub language: String,
}

/// What a streaming answer yields: text as it is generated, then the whole answer.
#[derive(Debug, Clone)]
pub enum AnswerEvent {
    Delta(String),
    Done(Box<Answer>),
}

pub struct Answerer {
    pub(super) knowledge: Arc<Knowledge>,
    pub(super) generator: Option<GenPool>,
    pub(super) prompts: Arc<Prompts>,
    pub(super) cfg: AnswerConfig,
}

/// Everything decided before generation starts.
struct Plan {
    req: AnswerRequest,
    conversation_id: String,
    language: String,
    confidence: f32,
    cards: Vec<(Hit, String)>,
    /// `Some(reason)`: hand off without generating.
    handoff: Option<&'static str>,
    prompt: Option<String>,
    fingerprint: Option<guard::Fingerprint>,
}

/// The language to reply in: the caller's, else the one the customer wrote in.
pub(super) fn reply_language(given: Option<&str>, customer_text: &str) -> String {
    given
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| super::card::detect_language(customer_text).to_string())
}

pub(super) fn language_name(code: &str) -> &str {
    match code {
        "zh" | "zh-cn" | "zh-hans" => "Simplified Chinese",
        "zh-tw" | "zh-hant" => "Traditional Chinese",
        "en" => "English",
        "es" => "Spanish",
        "fr" => "French",
        "de" => "German",
        "ja" => "Japanese",
        other => other,
    }
}

const MAX_QUESTION_CHARS: usize = 2000;
/// A card body longer than this goes to the model as its best-matching passage only.
const MAX_CARD_CHARS: usize = 2400;

impl Answerer {
    pub fn new(
        knowledge: Arc<Knowledge>,
        generator: Option<GenPool>,
        prompts: Arc<Prompts>,
        cfg: AnswerConfig,
    ) -> Self {
        Answerer {
            knowledge,
            generator,
            prompts,
            cfg,
        }
    }

    pub fn generator(&self) -> Option<&GenPool> {
        self.generator.as_ref()
    }

    pub fn prompts(&self) -> &Prompts {
        &self.prompts
    }

    fn confidence(&self, score: f32) -> f32 {
        1.0 / (1.0 + (-(score - self.cfg.threshold) / 0.03).exp())
    }

    async fn plan(&self, req: AnswerRequest) -> Result<Plan> {
        req.validate()?;
        let question = req.question.trim().to_string();
        let language = reply_language(req.language.as_deref(), &question);
        let conversation_id = req
            .conversation_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let history = {
            let (store, conv, cust, n) = (
                self.knowledge.store().clone(),
                conversation_id.clone(),
                req.customer_id.clone(),
                self.cfg.history_turns,
            );
            super::blocking(move || {
                let own = store.recent_turns(&conv, cust.as_deref(), n)?;
                match cust {
                    // A new conversation of a known customer (they moved from chat to voice, or
                    // to an agent): the context of their latest other conversation of the last
                    // day comes with them.
                    Some(c) if own.is_empty() => {
                        let since = crate::store::hours_ago(CARRY_HOURS);
                        store.carried_turns(&c, &conv, &since, n)
                    }
                    _ => Ok(own),
                }
            })
            .await?
        };
        let mut plan = Plan {
            req: AnswerRequest {
                question: question.clone(),
                ..req
            },
            conversation_id,
            language,
            confidence: 0.0,
            cards: Vec::new(),
            handoff: None,
            prompt: None,
            fingerprint: None,
        };
        if plan.req.escalated {
            plan.handoff = Some("escalated");
            return Ok(plan);
        }
        if guard::is_injection(&question) {
            plan.handoff = Some("unsupported_request");
            return Ok(plan);
        }
        let hits = self
            .retrieve(&question, &history, Some(plan.req.channel))
            .await?;
        let best = hits.first().map(|h| h.score).unwrap_or(0.0);
        plan.confidence = self.confidence(best);
        if best < self.cfg.threshold {
            plan.handoff = Some("no_relevant_card");
            return Ok(plan);
        }
        plan.cards = self.grounding(hits).await?;
        let Some(generator) = &self.generator else {
            plan.handoff = Some("generator_unavailable");
            return Ok(plan);
        };
        let template = format!("answer.{}.j2", plan.req.channel.as_str());
        let vars = minijinja::context! {
            language => &plan.language,
            language_name => language_name(&plan.language),
            channel => plan.req.channel.as_str(),
        };
        let mut turns = history;
        turns.push(Turn {
            seq: 0,
            role: "customer".into(),
            channel: plan.req.channel.as_str().into(),
            text: question,
            at: String::new(),
            sentiment: None,
            valence: None,
        });
        let (prompt, fingerprint) =
            self.grounded_prompt(generator, &template, vars, &plan.cards, &turns)?;
        plan.prompt = Some(prompt);
        plan.fingerprint = Some(fingerprint);
        Ok(plan)
    }

    /// The cards a grounded reply may draw on: the hits at or above the answer threshold and
    /// within `margin` of the best, at most `max_cards`, each as its whole body (its matching
    /// passage when the body is long), with lines addressed to an assistant removed.
    pub(super) async fn grounding(&self, hits: Vec<Hit>) -> Result<Vec<(Hit, String)>> {
        let best = hits.first().map_or(0.0, |h| h.score);
        let mut cards = Vec::new();
        for h in hits
            .into_iter()
            .filter(|h| h.score >= self.cfg.threshold.max(best - self.cfg.margin))
            .take(self.cfg.max_cards)
        {
            let card = self.knowledge.get(&h.card_id).await?;
            let body = if card.content.body.chars().count() > MAX_CARD_CHARS {
                h.passage.clone()
            } else {
                card.content.body.clone()
            };
            cards.push((h, guard::sanitize_card(&body)));
        }
        Ok(cards)
    }

    /// The model's prompt for a grounded reply: `template` rendered with `vars`, the `cards`
    /// and their `limits` (the sentences that bound what may be offered) as the system
    /// message, then the conversation (the customer is the user; the bot and agents are the
    /// assistant). Also the fingerprint of the instructions alone, rendered without any card
    /// text, to catch a reply that repeats them: a reply may quote the cards.
    pub(super) fn grounded_prompt(
        &self,
        g: &GenPool,
        template: &str,
        vars: minijinja::Value,
        cards: &[(Hit, String)],
        turns: &[Turn],
    ) -> Result<(String, guard::Fingerprint)> {
        let card_ctx: Vec<minijinja::Value> = cards
            .iter()
            .enumerate()
            .map(|(i, (h, body))| minijinja::context! { n => i + 1, title => &h.title, body => body })
            .collect();
        let limits: Vec<String> = cards
            .iter()
            .flat_map(|(_, body)| super::assist::limits(body))
            .collect();
        let system = self.prompts.render(
            template,
            minijinja::context! { cards => card_ctx, limits => limits, ..vars.clone() },
        )?;
        let fingerprint = guard::Fingerprint::of(&self.prompts.render(
            template,
            minijinja::context! { cards => Vec::<minijinja::Value>::new(), limits => Vec::<String>::new(), ..vars },
        )?);
        let mut messages = vec![ChatMessage::new("system", system)];
        for t in turns {
            let role = if t.role == "customer" {
                "user"
            } else {
                "assistant"
            };
            messages.push(ChatMessage::new(role, t.text.clone()));
        }
        Ok((g.render_chat(&messages)?, fingerprint))
    }

    /// The question's hits, and for a follow-up (a conversation with earlier customer turns) the
    /// hits of the question read together with the previous one, best score per card.
    pub(super) async fn retrieve(
        &self,
        question: &str,
        history: &[Turn],
        channel: Option<Channel>,
    ) -> Result<Vec<Hit>> {
        let filters = || Filters {
            channel: channel.map(|c| c.as_str().to_string()),
            ..Default::default()
        };
        let k = self.cfg.max_cards.max(3) * 2;
        let mut hits = self.knowledge.search(question, k, filters()).await?;
        if let Some(prev) = history.iter().rev().find(|t| t.role == "customer") {
            let joint = format!("{} {}", prev.text, question);
            for h in self.knowledge.search(&joint, k, filters()).await? {
                match hits.iter_mut().find(|x| x.card_id == h.card_id) {
                    Some(x) if x.score >= h.score => {}
                    Some(x) => *x = h,
                    None => hits.push(h),
                }
            }
            hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
        Ok(hits)
    }

    fn sampling(&self, plan: &Plan) -> SamplingParams {
        // Greedy unless the caller asks for variety with a seed: answers should not change
        // from one call to the next.
        let temperature = if plan.req.seed.is_some() { 0.7 } else { 0.0 };
        grounded_sampling(
            temperature,
            plan.req.channel.max_tokens(),
            plan.req.seed.unwrap_or(0),
        )
    }

    fn handoff_text(&self, plan: &Plan, reason: &str) -> Result<String> {
        self.prompts.render(
            "handoff.j2",
            minijinja::context! {
                language => &plan.language,
                reason => reason,
                channel => plan.req.channel.as_str(),
            },
        )
    }

    /// Turns generated text into the recorded answer: style clean-up, leak and emptiness checks,
    /// citations.
    async fn finish(&self, plan: Plan, raw: Option<String>) -> Result<Answer> {
        let mut reason = plan.handoff.map(str::to_string);
        let mut text = raw.map(|r| clean(&r, plan.req.channel)).unwrap_or_default();
        if reason.is_none() {
            if plan
                .fingerprint
                .as_ref()
                .is_some_and(|f| f.leaked_in(&text))
            {
                tracing::warn!(conversation = %plan.conversation_id, "answer repeated the instructions; withheld");
                reason = Some("unsupported_request".into());
            } else if text.is_empty() {
                reason = Some("no_answer".into());
            }
        }
        let citations = if reason.is_none() {
            self.cite(&text, &plan.cards).await?
        } else {
            Vec::new()
        };
        if let Some(r) = &reason {
            text = self.handoff_text(&plan, r)?;
        }
        let record = AnswerRecord {
            id: uuid::Uuid::now_v7().to_string(),
            conversation_id: plan.conversation_id.clone(),
            customer_id: plan.req.customer_id.clone(),
            channel: plan.req.channel.as_str().into(),
            question: plan.req.question.clone(),
            answer: text,
            citations,
            handoff: reason.is_some(),
            handoff_reason: reason,
            confidence: plan.confidence,
            model: self.generator.as_ref().map(|g| g.id().to_string()),
            question_mood: plan.req.mood.clone(),
        };
        let store = self.knowledge.store().clone();
        let r2 = record.clone();
        super::blocking(move || store.record_answer(&r2)).await?;
        tracing::info!(
            answer = %record.id,
            conversation = %record.conversation_id,
            handoff = record.handoff,
            reason = record.handoff_reason.as_deref().unwrap_or(""),
            citations = record.citations.len(),
            actor = %plan.req.actor,
            "answered"
        );
        Ok(Answer {
            answer_id: record.id,
            answer: record.answer,
            citations: record.citations,
            handoff: record.handoff,
            handoff_reason: record.handoff_reason,
            confidence: record.confidence,
            conversation_id: record.conversation_id,
            language: plan.language,
        })
    }

    /// The cards the answer drew on: those whose closest passage is, in meaning, as close to the
    /// answer as the best card's (within 0.03 cosine). Meaning rather than shared words, so that a
    /// Chinese answer from an English card cites it; the passages' vectors are the ones stored
    /// at indexing, so only the answer is embedded.
    pub(super) async fn cite(
        &self,
        answer: &str,
        cards: &[(Hit, String)],
    ) -> Result<Vec<Citation>> {
        if cards.len() <= 1 {
            return Ok(cards.iter().map(|(h, _)| citation(h)).collect());
        }
        let ids: Vec<String> = cards.iter().map(|(h, _)| h.card_id.clone()).collect();
        let store = self.knowledge.store().clone();
        let chunks = super::blocking(move || {
            ids.iter()
                .map(|id| store.card_chunks(id))
                .collect::<Result<Vec<_>, _>>()
        });
        let query = self
            .knowledge
            .embedder()
            .embed(vec![answer.to_string()], TextKind::Query);
        let (chunks, vecs) = tokio::join!(chunks, query);
        let (chunks, answer_vec) = (chunks?, vecs?.remove(0));
        let sims: Vec<f32> = chunks
            .iter()
            .map(|cs| {
                cs.iter()
                    .map(|c| dot(&c.vector, &answer_vec))
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        let best = sims.iter().copied().fold(f32::MIN, f32::max);
        Ok(cards
            .iter()
            .zip(&sims)
            .filter(|(_, s)| **s >= best - 0.03)
            .map(|((h, _), _)| citation(h))
            .collect())
    }

    pub async fn answer(&self, req: AnswerRequest) -> Result<Answer> {
        let plan = self.plan(req).await?;
        let raw = match (&plan.prompt, &self.generator) {
            (Some(prompt), Some(g)) if plan.handoff.is_none() => {
                let rx = g.generate(prompt.clone(), self.sampling(&plan))?;
                Some(crate::runtime::generate::collect(rx).await?.0)
            }
            _ => None,
        };
        self.finish(plan, raw).await
    }

    /// The same answer as [`Answerer::answer`], streamed: text deltas, then the whole answer.
    /// Validation and retrieval errors come back before the stream starts. Dropping the stream
    /// cancels the generation and records nothing.
    pub async fn answer_stream(
        self: Arc<Self>,
        req: AnswerRequest,
    ) -> Result<impl Stream<Item = Result<AnswerEvent>>> {
        let plan = self.plan(req).await?;
        let rx = match (&plan.prompt, &self.generator) {
            (Some(prompt), Some(g)) if plan.handoff.is_none() => {
                Some(g.generate(prompt.clone(), self.sampling(&plan))?)
            }
            _ => None,
        };
        Ok(async_stream::try_stream! {
            let mut raw = None;
            if let Some(mut rx) = rx {
                let mut text = String::new();
                loop {
                    match rx.recv().await {
                        Some(GenEvent::Delta(d)) => {
                            text.push_str(&d);
                            yield AnswerEvent::Delta(d);
                        }
                        Some(GenEvent::Done { .. }) => break,
                        Some(GenEvent::Failed(e)) => Err(Error::Model(e))?,
                        None => Err(Error::Model(crate::runtime::ModelError::WorkerGone("generation")))?,
                    }
                }
                raw = Some(text);
            }
            let answer = self.finish(plan, raw).await?;
            yield AnswerEvent::Done(Box::new(answer));
        })
    }
}

/// Sampling for replies drawn from cards: nucleus and top-k cut the tail where small models
/// invent, and generation stops before the model starts writing another article block.
pub(super) fn grounded_sampling(temperature: f64, max_tokens: usize, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p: Some(0.9),
        top_k: Some(40),
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        max_tokens,
        stop: vec!["<article".into(), "\n\n\n".into()],
        seed,
    }
}

pub(super) fn citation(h: &Hit) -> Citation {
    Citation {
        card_id: h.card_id.clone(),
        title: h.title.clone(),
        score: h.score,
    }
}

/// Channel clean-up of generated text. Voice is read aloud: no markdown, no lists, no URLs.
pub fn clean(raw: &str, channel: Channel) -> String {
    let text = raw.trim();
    if channel != Channel::Voice {
        return text.to_string();
    }
    static URL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b(https?://|www\.)\S+").expect("valid regex")
    });
    static MARKUP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?m)^\s*(#+|[-*•]|\d+[.)])\s+|[*_`#>\[\]]").expect("valid regex")
    });
    let text = URL.replace_all(text, "our website");
    let text = MARKUP.replace_all(&text, "");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_answers_are_speakable() {
        let raw = "## Steps\n1. Open **Settings**.\n- Visit https://example.com/help for more.\n";
        assert_eq!(
            clean(raw, Channel::Voice),
            "Steps Open Settings. Visit our website for more."
        );
        assert_eq!(clean(" **hi** ", Channel::Chat), "**hi**");
    }
}

//! The answer flow, as a chatbot calls it: one customer question in, a grounded answer with
//! citations or an honest hand-off out. Every step is here, in order:
//!
//! 1. check the request;
//! 2. score the question's sentiment (every customer turn is scored);
//! 3. ask whether the conversation, with this turn, must go to a person (escalation);
//! 4. read the conversation's history (the one carry-over rule lives in `conversation`);
//! 5. retrieve the cards and decide: answer from them, or hand off (`knowledge::answer`); the
//!    reply drawn from the best card's own sentences (`knowledge::extract`), unless the
//!    configuration has the chat model write it;
//! 6. generate, streamed or not (an extracted reply is sent as one piece);
//! 7. check what the model wrote (every number stated by a card, or a hand-off) and cite the
//!    cards it drew on;
//! 8. record the question, the reply and the answer in one transaction (`conversation`).

use std::sync::Arc;

use futures::Stream;
use serde::Serialize;

use super::Desk;
use crate::error::{Error, Result};
use crate::knowledge::answer::{Plan, Question, Reply};
use crate::knowledge::support;
use crate::runtime::generate::GenEvent;
use crate::store::answers::{AnswerRecord, Citation};
use crate::store::conversations::{Party, TurnSignals};
use crate::vocab::{Channel, HandoffReason};

const MAX_QUESTION_CHARS: usize = 2000;

#[derive(Debug, Clone)]
pub struct AnswerRequest {
    pub question: String,
    pub channel: Channel,
    /// A new conversation is started when absent.
    pub conversation_id: Option<String>,
    /// Who asks: the conversation must be theirs.
    pub party: Party,
    pub language: Option<String>,
    pub seed: Option<u64>,
    /// Who asked, for the log.
    pub actor: String,
}

impl AnswerRequest {
    /// The caller's mistakes, found before any model work.
    fn validate(&self) -> Result<()> {
        let question = self.question.trim();
        if question.is_empty() {
            return Err(Error::invalid("question must not be empty"));
        }
        if question.chars().count() > MAX_QUESTION_CHARS {
            return Err(Error::invalid(format!(
                "question is longer than {MAX_QUESTION_CHARS} characters"
            )));
        }
        if !self.channel.is_customer_facing() {
            return Err(Error::invalid(format!(
                "channel must be one of {}",
                crate::vocab::join(&Channel::CUSTOMER_FACING, ", ")
            )));
        }
        if let Some(l) = &self.language {
            crate::knowledge::card::check_reply_language(l)?;
        }
        for (name, v) in [
            ("conversation_id", self.conversation_id.as_deref()),
            ("customer_id", self.party.customer()),
        ] {
            if let Some(v) = v {
                crate::conversation::validate_id(name, v)?;
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
    /// Why the customer was handed to a person (`escalated`: see
    /// `GET /v1/conversations/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_reason: Option<HandoffReason>,
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

/// The question as it will be recorded, carried from the first steps to the last.
struct Asked {
    req: AnswerRequest,
    conversation_id: String,
    signals: TurnSignals,
}

impl Desk {
    /// A grounded answer, or a hand-off.
    pub async fn answer(&self, req: AnswerRequest) -> Result<Answer> {
        let (asked, plan) = self.decide(req).await?;
        let raw = match self.answerer.generate(&plan)? {
            Some(rx) => Some(crate::runtime::generate::collect(rx).await?.0),
            None => plan.extracted().map(str::to_string),
        };
        self.check_and_record(asked, plan, raw).await
    }

    /// The same answer as [`Desk::answer`], streamed: text deltas, then the whole answer.
    /// Request and retrieval errors come back before the stream starts. Dropping the stream
    /// cancels the generation and records nothing.
    ///
    /// Text is released a whole sentence at a time, once the text so far is checked: a sentence
    /// stating a number no card gave, or repeating the service's instructions, is never sent;
    /// the generation stops there and the answer ends as a hand-off.
    pub async fn answer_stream(
        self: Arc<Self>,
        req: AnswerRequest,
    ) -> Result<impl Stream<Item = Result<AnswerEvent>>> {
        let (asked, plan) = self.decide(req).await?;
        let rx = self.answerer.generate(&plan)?;
        Ok(async_stream::try_stream! {
            let mut raw = None;
            if let Some(mut rx) = rx {
                let mut text = String::new();
                let mut sent = 0;
                loop {
                    match rx.recv().await {
                        Some(GenEvent::Delta(d)) => {
                            text.push_str(&d);
                            let Some(end) = support::sentence_end(&text, sent) else { continue };
                            if !plan.releasable(&text[..end]) {
                                break; // dropping `rx` stops the model; finish hands off
                            }
                            yield AnswerEvent::Delta(text[sent..end].to_string());
                            sent = end;
                        }
                        Some(GenEvent::Done { .. }) => {
                            if plan.releasable(&text) && text.len() > sent {
                                yield AnswerEvent::Delta(text[sent..].to_string());
                            }
                            break;
                        }
                        Some(GenEvent::Failed(e)) => Err(Error::Model(e))?,
                        None => Err(Error::Model(crate::runtime::ModelError::WorkerGone("generation")))?,
                    }
                }
                raw = Some(text);
            } else if let Some(text) = plan.extracted() {
                if plan.releasable(text) {
                    yield AnswerEvent::Delta(text.to_string());
                }
                raw = Some(text.to_string());
            }
            let answer = self.check_and_record(asked, plan, raw).await?;
            yield AnswerEvent::Done(Box::new(answer));
        })
    }

    /// Steps 1 to 5: everything before the model is called.
    async fn decide(&self, mut req: AnswerRequest) -> Result<(Asked, Plan)> {
        req.validate()?;
        req.question = req.question.trim().to_string();
        let conversation_id = req
            .conversation_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let party = &req.party;
        let signals = self.conversations.read(&req.question).await?;
        let escalation = self
            .conversations
            .assess_with(
                &conversation_id,
                party,
                req.channel,
                &req.question,
                &signals,
            )
            .await?;
        let history = self
            .conversations
            .history(&conversation_id, party, self.config.answer.history_turns)
            .await?;
        let plan = self
            .answerer
            .plan(Question {
                text: req.question.clone(),
                channel: req.channel,
                language: req.language.clone(),
                seed: req.seed,
                history,
                escalated: escalation.flagged,
            })
            .await?;
        let asked = Asked {
            req,
            conversation_id,
            signals,
        };
        Ok((asked, plan))
    }

    /// Steps 7 and 8.
    async fn check_and_record(
        &self,
        asked: Asked,
        plan: Plan,
        raw: Option<String>,
    ) -> Result<Answer> {
        let Reply {
            text,
            citations,
            handoff_reason,
            confidence,
            language,
            model,
        } = self.answerer.finish(plan, raw).await?;
        let record = self
            .conversations
            .record_answer(
                AnswerRecord {
                    id: uuid::Uuid::now_v7().to_string(),
                    conversation_id: asked.conversation_id,
                    customer_id: asked.req.party.customer().map(str::to_string),
                    channel: asked.req.channel,
                    question: asked.req.question,
                    answer: text,
                    citations,
                    handoff: handoff_reason.is_some(),
                    handoff_reason,
                    confidence,
                    model,
                    question_signals: asked.signals,
                    answer_language: None,
                },
                &asked.req.party,
            )
            .await?;
        // By the answer's own random id: conversation and customer ids are the frontend's, often
        // made from who the customer is, and stay out of the log (README "Privacy").
        tracing::info!(
            answer = %record.id,
            handoff = record.handoff,
            reason = record.handoff_reason.map_or("", |r| r.as_str()),
            citations = record.citations.len(),
            actor = %asked.req.actor,
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
            language,
        })
    }
}

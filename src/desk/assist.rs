//! The agent-assist flow: for a live conversation, what an agent sees at once (the cards that
//! matter now, coaching, the escalation state and the mood), then the suggested replies as they
//! are written. In order:
//!
//! 1. read the conversation and its escalation state (`conversation`);
//! 2. read its history (the one carry-over rule, for an agent picking up a customer who came
//!    from another channel);
//! 3. retrieve, coach and compose the suggestion prompt (`knowledge::assist`): the context;
//! 4. start the suggestions, which the caller collects or streams.

use std::time::Instant;

use futures::Stream;
use serde::Serialize;

use super::Desk;
use crate::conversation::Party;
use crate::conversation::escalation::{Escalation, MoodTrend};
use crate::error::{Error, Result};
use crate::knowledge::assist::{
    AssistContext, AssistRequest, MoodSignal, SuggestEvent, Suggestion,
};
use crate::vocab::{MoodDirection, Role};

#[derive(Debug, Clone)]
pub struct SuggestRequest {
    pub conversation_id: String,
    /// When given, a conversation of another customer is refused (409).
    pub customer_id: Option<String>,
    /// Suggested replies wanted, 1 to 3.
    pub n: usize,
    pub language: Option<String>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssistResponse {
    pub conversation_id: String,
    #[serde(flatten)]
    pub context: AssistContext,
    pub escalation: Escalation,
    pub mood: MoodTrend,
    pub suggestions: Vec<Suggestion>,
    /// Milliseconds to the context (retrieval, coaching, escalation), and in all.
    pub context_ms: u64,
    pub total_ms: u64,
}

impl AssistResponse {
    /// The suggestions in request order, and the time taken in all.
    pub fn finish(&mut self, mut done: Vec<(usize, Suggestion)>, started: Instant) {
        done.sort_by_key(|(i, _)| *i);
        self.suggestions = done.into_iter().map(|(_, sg)| sg).collect();
        self.total_ms = started.elapsed().as_millis() as u64;
    }
}

impl Desk {
    /// The context at once, and the suggestions as a stream of events; `started` is when the
    /// request arrived, for the timings.
    pub async fn assist(
        &self,
        req: SuggestRequest,
        started: Instant,
    ) -> Result<(
        AssistResponse,
        impl Stream<Item = Result<SuggestEvent>> + use<>,
    )> {
        if let Some(l) = &req.language {
            crate::knowledge::card::check_reply_language(l)?;
        }
        let view = self
            .conversations
            .get(&req.conversation_id, &Party::Staff(req.customer_id.clone()))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no conversation {}", req.conversation_id)))?;
        let turns = self
            .conversations
            .history(
                &req.conversation_id,
                &Party::Staff(view.record.customer_id.clone()),
                self.config.answer.history_turns,
            )
            .await?;
        let mood = MoodSignal {
            last: turns
                .iter()
                .rev()
                .filter(|t| t.role == Role::Customer)
                .find_map(|t| t.sentiment),
            worsening: view.mood.direction == MoodDirection::Worsening,
            flags: view
                .escalation
                .reasons
                .iter()
                .map(|f| (f.reason, f.turn, f.detail.clone()))
                .collect(),
        };
        let plan = self
            .answerer
            .assist_plan(AssistRequest {
                turns,
                language: req.language,
                n: req.n,
                seed: req.seed,
                mood,
            })
            .await?;
        let context_ms = started.elapsed().as_millis() as u64;
        let response = AssistResponse {
            conversation_id: req.conversation_id,
            context: plan.context.clone(),
            escalation: view.escalation,
            mood: view.mood,
            suggestions: Vec::new(),
            context_ms,
            total_ms: context_ms,
        };
        let events = self.answerer.clone().suggest(&plan)?;
        Ok((response, events))
    }
}

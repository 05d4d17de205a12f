//! Agent-assist tools: for a live conversation, suggested replies grounded in the cards, the
//! cards that matter now, coaching notes and the escalation state.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Staff;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::conversation::escalation::{Escalation, MoodTrend};
use crate::error::Error;
use crate::knowledge::assist::{
    AssistContext, AssistRequest, MoodSignal, SuggestEvent, Suggestion,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestBody {
    pub conversation_id: String,
    /// When given, a conversation of another customer is refused (409).
    pub customer_id: Option<String>,
    /// Suggested replies wanted, 1 to 3 (default 2).
    pub n: Option<usize>,
    /// `en`, `zh`, ...; detected from the customer's last turn when absent.
    pub language: Option<String>,
    /// Server-Sent Events: one `context` event at once (everything but the suggestions), then
    /// `delta` events `{"index", "text"}` as suggestions are written, a `suggestion` event
    /// `{"index", "text", "citations"}` as each is complete, and a `done` event with the whole
    /// response.
    #[serde(default)]
    pub stream: bool,
    /// Seeds the sampling of the suggestions, for reproducible output.
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
    fn finish(&mut self, mut done: Vec<(usize, Suggestion)>, started: Instant) {
        done.sort_by_key(|(i, _)| *i);
        self.suggestions = done.into_iter().map(|(_, sg)| sg).collect();
        self.total_ms = started.elapsed().as_millis() as u64;
    }
}

#[derive(Serialize)]
struct Indexed<'a> {
    index: usize,
    #[serde(flatten)]
    suggestion: &'a Suggestion,
}

/// Suggested replies for the agent, with the cards that matter now and coaching.
#[utoipa::path(post, path = "/v1/assist/suggest", tag = "assist", request_body = SuggestBody,
    responses((status = 200, description = "The suggestions (or an SSE stream when `stream` is true)", body = AssistResponse),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 503, description = "Model queue full; retry after the Retry-After seconds", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn suggest(
    State(s): State<AppState>,
    _staff: Staff,
    ApiJson(b): ApiJson<SuggestBody>,
) -> ApiResult<Response> {
    let started = Instant::now();
    let view = s
        .conversations
        .get(&b.conversation_id, b.customer_id.as_deref())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {}", b.conversation_id)))?;
    let turns = s
        .conversations
        .context_turns(&view, s.config.answer.history_turns)
        .await?;
    let mood = MoodSignal {
        last: turns
            .iter()
            .rev()
            .filter(|t| t.role == "customer")
            .find_map(|t| t.sentiment.clone()),
        worsening: view.mood.direction == "worsening",
        flags: view
            .escalation
            .reasons
            .iter()
            .map(|f| (f.reason.to_string(), f.turn, f.detail.clone()))
            .collect(),
    };
    let plan = s
        .answerer
        .assist_plan(AssistRequest {
            turns,
            language: b.language,
            n: b.n.unwrap_or(2),
            seed: b.seed,
            mood,
        })
        .await?;
    let context_ms = started.elapsed().as_millis() as u64;
    let mut response = AssistResponse {
        conversation_id: b.conversation_id,
        context: plan.context.clone(),
        escalation: view.escalation,
        mood: view.mood,
        suggestions: Vec::new(),
        context_ms,
        total_ms: context_ms,
    };
    let events = s.answerer.clone().suggest(&plan)?;
    if !b.stream {
        let mut done: Vec<(usize, Suggestion)> = Vec::new();
        let mut events = std::pin::pin!(events);
        while let Some(e) = events.next().await {
            if let SuggestEvent::Done {
                index,
                suggestion: Some(sg),
            } = e?
            {
                done.push((index, sg));
            }
        }
        response.finish(done, started);
        return Ok(Json(response).into_response());
    }
    let stream = async_stream::stream! {
        yield Ok::<_, Infallible>(Event::default().event("context").json_data(&response).unwrap_or_default());
        let mut done: Vec<(usize, Suggestion)> = Vec::new();
        let mut events = std::pin::pin!(events);
        while let Some(e) = events.next().await {
            match e {
                Ok(SuggestEvent::Delta { index, text }) => {
                    yield Ok(Event::default().event("delta").json_data(serde_json::json!({"index": index, "text": text})).unwrap_or_default());
                }
                Ok(SuggestEvent::Done { index, suggestion: Some(sg) }) => {
                    yield Ok(Event::default().event("suggestion").json_data(Indexed { index, suggestion: &sg }).unwrap_or_default());
                    done.push((index, sg));
                }
                Ok(SuggestEvent::Done { suggestion: None, .. }) => {}
                Err(e) => {
                    let e = ApiError::from(e);
                    yield Ok(Event::default().event("error").json_data(e.body()).unwrap_or_default());
                    return;
                }
            }
        }
        response.finish(done, started);
        yield Ok(Event::default().event("done").json_data(&response).unwrap_or_default());
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

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
use crate::desk::assist::{AssistResponse, SuggestRequest};
use crate::knowledge::assist::{SuggestEvent, Suggestion};

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
    let req = SuggestRequest {
        conversation_id: b.conversation_id,
        customer_id: b.customer_id,
        n: b.n.unwrap_or(2),
        language: b.language,
        seed: b.seed,
    };
    let (mut response, events) = s.desk.assist(req, started).await?;
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

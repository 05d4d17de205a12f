//! Chatbots and channel frontends: grounded answers (JSON or Server-Sent Events), feedback on
//! answers, and the admin's prompt reload.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::desk::answer::{Answer, AnswerEvent, AnswerRequest};
use crate::error::ErrorCode;
use crate::knowledge::prompts::PromptsInfo;
use crate::vocab::{Channel, Rating};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    pub question: String,
    pub channel: Channel,
    /// Continue this conversation (its recent turns are given to the model); a new one is
    /// started when absent.
    pub conversation_id: Option<String>,
    /// The customer asking. A channel key must name one (or send the `X-Kefu-Customer` header)
    /// and continues only that customer's conversations.
    pub customer_id: Option<String>,
    /// `en`, `zh`, ...; detected from the question when absent.
    pub language: Option<String>,
    /// Answer as Server-Sent Events: `delta` events with `{"text"}`, then one `done` event with
    /// the whole answer (the same JSON as without streaming).
    #[serde(default)]
    pub stream: bool,
    /// Sample instead of greedy decoding, reproducibly with this seed.
    pub seed: Option<u64>,
}

/// A grounded answer from the published cards, with citations, or a hand-off to a person.
#[utoipa::path(post, path = "/v1/answer", tag = "answer", request_body = AnswerBody,
    responses((status = 200, description = "The answer (or an SSE stream when `stream` is true)", body = Answer),
              (status = 409, description = "The conversation belongs to another customer", body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 503, description = "Model queue full; retry after the Retry-After seconds", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn answer(
    State(s): State<AppState>,
    caller: Caller,
    ApiJson(b): ApiJson<AnswerBody>,
) -> ApiResult<Response> {
    let req = AnswerRequest {
        question: b.question,
        channel: b.channel,
        conversation_id: b.conversation_id,
        party: caller.party(b.customer_id)?,
        language: b.language,
        seed: b.seed,
        actor: caller.actor().0,
    };
    if !b.stream {
        return Ok(Json(s.desk.answer(req).await?).into_response());
    }
    let stream = s.desk.clone().answer_stream(req).await?;
    let events = stream.map(|ev| {
        Ok::<_, Infallible>(match ev {
            Ok(AnswerEvent::Delta(text)) => Event::default()
                .event("delta")
                .json_data(serde_json::json!({ "text": text }))
                .unwrap_or_default(),
            Ok(AnswerEvent::Done(a)) => Event::default()
                .event("done")
                .json_data(&*a)
                .unwrap_or_default(),
            Err(e) => {
                let e = ApiError::from(e);
                Event::default()
                    .event("error")
                    .json_data(e.body())
                    .unwrap_or_default()
            }
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    pub rating: Rating,
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedbackResponse {
    pub answer_id: String,
    pub rating: Rating,
    /// Ratings this answer has received so far.
    pub feedback_count: usize,
}

const MAX_COMMENT_CHARS: usize = 4000;

/// Rates an answer (thumbs up or down, with an optional comment). A channel key rates only the
/// answers of the customer it acts for (`X-Kefu-Customer`); another's is not found.
#[utoipa::path(post, path = "/v1/answers/{id}/feedback", tag = "answer", request_body = FeedbackBody,
    params(("id" = String, Path, description = "answer_id from the answer")),
    responses((status = 201, body = FeedbackResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn feedback(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<FeedbackBody>,
) -> ApiResult<(StatusCode, Json<FeedbackResponse>)> {
    if b.comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("comment is longer than {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let n = s
        .conversations
        .feedback(
            &id,
            &caller.party(None)?,
            b.rating,
            b.comment,
            &caller.actor().0,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(FeedbackResponse {
            answer_id: id,
            rating: b.rating,
            feedback_count: n,
        }),
    ))
}

/// Re-reads the prompt templates (also on SIGHUP). A template that does not parse is refused
/// with 422 and the ones in use stay in use.
#[utoipa::path(post, path = "/v1/prompts/reload", tag = "answer",
    responses((status = 200, body = PromptsInfo), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reload_prompts(
    State(s): State<AppState>,
    Admin(_admin): Admin,
) -> ApiResult<Json<PromptsInfo>> {
    Ok(Json(s.desk.answerer.prompts().reload()?))
}

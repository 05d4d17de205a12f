//! Conversations for channel frontends and agent tools: append turns (customer turns are scored
//! for sentiment as they arrive) and read a conversation with its mood and escalation state.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiJson, ApiResult, ErrorBody};
use crate::conversation::handoff::HandoffSummary;
use crate::conversation::{ConversationView, CustomerView, NewTurn};
use crate::error::Error;
use crate::vocab::{Channel, Role};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnBody {
    /// The customer this conversation belongs to; another customer's id is refused (409).
    pub customer_id: Option<String>,
    pub channel: Channel,
    pub role: Role,
    pub text: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// When given, a conversation of another customer is refused (409).
    pub customer_id: Option<String>,
}

/// Appends a turn and returns the conversation after it.
#[utoipa::path(post, path = "/v1/conversations/{id}/turns", tag = "conversation", request_body = TurnBody,
    params(("id" = String, Path, description = "Conversation id (created on first turn)")),
    responses((status = 200, body = ConversationView),
              (status = 409, description = "The conversation belongs to another customer", body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_turn(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<TurnBody>,
) -> ApiResult<Json<ConversationView>> {
    let turn = NewTurn {
        customer_id: b.customer_id,
        channel: b.channel,
        role: b.role,
        text: b.text,
    };
    Ok(Json(s.conversations.add_turn(&id, turn).await?))
}

/// A conversation: its turns with their sentiment, the mood trend and the escalation state.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversation",
    params(("id" = String, Path, description = "Conversation id"), ConversationQuery),
    responses((status = 200, body = ConversationView),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_conversation(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ConversationQuery>,
) -> ApiResult<Json<ConversationView>> {
    let view = s
        .conversations
        .get(&id, q.customer_id.as_deref())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id}")))?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// `false` reopens the conversation. Default `true`.
    #[serde(default = "yes")]
    pub resolved: bool,
}

fn yes() -> bool {
    true
}

/// Marks the conversation's issue resolved (or reopens it). Resolved contacts no longer count
/// as repeated contacts; the customer's next turn reopens the conversation.
#[utoipa::path(post, path = "/v1/conversations/{id}/resolve", tag = "conversation", request_body = ResolveBody,
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationView), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resolve(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ResolveBody>,
) -> ApiResult<Json<ConversationView>> {
    Ok(Json(s.conversations.resolve(&id, b.resolved).await?))
}

/// For the person taking a conversation over: what was asked, what was answered (with the
/// cards), what is still open, how the customer feels, the escalation state and the customer's
/// other recent contacts, with a few sentences to read first.
#[utoipa::path(get, path = "/v1/conversations/{id}/handoff", tag = "conversation",
    params(("id" = String, Path, description = "Conversation id"), ConversationQuery),
    responses((status = 200, body = HandoffSummary),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn handoff(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ConversationQuery>,
) -> ApiResult<Json<HandoffSummary>> {
    let summary = s
        .conversations
        .handoff(&id, q.customer_id.as_deref())
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id}")))?;
    Ok(Json(summary))
}

/// One customer across channels: their conversations, most recent first, and a one-line summary
/// for whoever takes over.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "conversation",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = CustomerView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_customer(
    State(s): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerView>> {
    let view = s
        .conversations
        .customer(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversations for customer {id}")))?;
    Ok(Json(view))
}

//! Conversations for channel frontends and agent tools: append turns (customer turns are scored
//! for sentiment as they arrive) and read a conversation with its mood and escalation state.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Caller, Staff};
use super::error::{ApiError, ApiJson, ApiQuery, ApiResult, ErrorBody};
use crate::conversation::handoff::HandoffSummary;
use crate::conversation::routing::Route;
use crate::conversation::{
    ConversationFilter, ConversationListItem, ConversationView, CustomerView, ListWants, NewTurn,
};
use crate::error::Error;
use crate::error::ErrorCode;
use crate::vocab::{Channel, Priority, Role};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnBody {
    /// The customer this conversation belongs to. A channel key must name one (or send the
    /// `X-Kefu-Customer` header) and reaches only that customer's conversations; for staff,
    /// another customer's id than the conversation's is refused (409).
    pub customer_id: Option<String>,
    pub channel: Channel,
    /// Whose turn: a channel key writes `customer` turns, an agent key `agent` turns, an admin
    /// key either (importing conversations kept elsewhere). `bot` turns are written by kefu
    /// itself when it answers. Default: the key's own kind of turn.
    pub role: Option<Role>,
    pub text: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// The customer the caller acts for. A channel key reaches only that customer's
    /// conversations (another's is not found); for staff, another customer's conversation is
    /// refused (409).
    pub customer_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The channel it started on.
    pub channel: Option<Channel>,
    pub resolved: Option<bool>,
    pub escalated: Option<bool>,
    /// The routed priority: low, normal, high, urgent.
    pub priority: Option<Priority>,
    /// The routed queue.
    pub queue: Option<String>,
    /// A customer turn was read as this intent.
    pub intent: Option<String>,
    /// At most 200; 50 by default.
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationListItem>,
    /// How many of the most recent conversations were read for the escalation, priority and
    /// queue filters (older ones are not listed by those filters).
    pub scanned_at_most: usize,
}

/// Conversations for staff, most recently updated first, with their escalation and route.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversation", params(ListQuery),
    responses((status = 200, body = ConversationList), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_conversations(
    State(s): State<AppState>,
    Staff(_staff): Staff,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ConversationList>> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 200 {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 200",
        ));
    }
    // The state filters read each conversation; a bound keeps one request's cost known.
    const SCAN: usize = 500;
    let filter = ConversationFilter {
        channel: q.channel,
        resolved: q.resolved,
        intent: q.intent.filter(|i| !i.is_empty()),
    };
    let wants = ListWants {
        escalated: q.escalated,
        priority: q.priority,
        queue: q.queue.filter(|i| !i.is_empty()),
        scan: SCAN,
    };
    let conversations = s.conversations.list(filter, wants, limit).await?;
    Ok(Json(ConversationList {
        conversations,
        scanned_at_most: SCAN,
    }))
}

/// Appends a turn and returns the conversation after it.
#[utoipa::path(post, path = "/v1/conversations/{id}/turns", tag = "conversation", request_body = TurnBody,
    params(("id" = String, Path, description = "Conversation id (created on first turn)")),
    responses((status = 200, body = ConversationView),
              (status = 403, description = "This key may not write that kind of turn", body = ErrorBody),
              (status = 404, description = "A channel's customer has no such conversation", body = ErrorBody),
              (status = 409, description = "The conversation belongs to another customer", body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_turn(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<TurnBody>,
) -> ApiResult<Json<ConversationView>> {
    let turn = NewTurn {
        role: caller.turn_role(b.role)?,
        party: caller.party(b.customer_id)?,
        channel: b.channel,
        text: b.text,
    };
    let view = s.conversations.add_turn(&id, turn).await?;
    Ok(Json(shown_to(&caller, view)))
}

/// The conversation as the caller may see it: how a customer is queued is for staff.
fn shown_to(caller: &Caller, mut view: ConversationView) -> ConversationView {
    if caller.role < crate::config::Role::Agent {
        view.route = None;
    }
    view
}

/// A conversation: its turns with their sentiment, the mood trend and the escalation state.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversation",
    params(("id" = String, Path, description = "Conversation id"), ConversationQuery),
    responses((status = 200, body = ConversationView),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_conversation(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ConversationQuery>,
) -> ApiResult<Json<ConversationView>> {
    let party = caller.party(q.customer_id)?;
    let view = s
        .conversations
        .get(&id, &party)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id}")))?;
    Ok(Json(shown_to(&caller, view)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// As for turns: a channel key resolves only its customer's conversations.
    pub customer_id: Option<String>,
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
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ResolveBody>,
) -> ApiResult<Json<ConversationView>> {
    let party = caller.party(b.customer_id)?;
    let view = s.desk.resolve(&id, &party, b.resolved).await?;
    Ok(Json(shown_to(&caller, view)))
}

/// For the person taking a conversation over: what was asked, what was answered (with the
/// cards), what is still open, how the customer feels, the escalation state and the customer's
/// other recent contacts, with a few sentences to read first. For staff only: it carries the
/// escalation notes a customer is not shown.
#[utoipa::path(get, path = "/v1/conversations/{id}/handoff", tag = "conversation",
    params(("id" = String, Path, description = "Conversation id"), ConversationQuery),
    responses((status = 200, body = HandoffSummary),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn handoff(
    State(s): State<AppState>,
    Staff(staff): Staff,
    Path(id): Path<String>,
    Query(q): Query<ConversationQuery>,
) -> ApiResult<Json<HandoffSummary>> {
    let party = staff.party(q.customer_id)?;
    let summary = s
        .conversations
        .handoff(&id, &party)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {id}")))?;
    Ok(Json(summary))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteRequest {
    pub conversation_id: String,
    /// The customer's tags in your CRM (`vip`, `business`, ...), for rules that read them.
    #[serde(default)]
    pub customer_tags: Vec<String>,
}

/// Where a conversation belongs and how soon, by the `[routing]` rules, with every rule that
/// matched. The same route (without tags) is on `GET /v1/conversations/{id}` and in the hand-off
/// summary.
#[utoipa::path(post, path = "/v1/route", tag = "conversation", request_body = RouteRequest,
    responses((status = 200, body = Route), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn route(
    State(s): State<AppState>,
    Staff(staff): Staff,
    ApiJson(req): ApiJson<RouteRequest>,
) -> ApiResult<Json<Route>> {
    let party = staff.party(None)?;
    let route = s
        .conversations
        .route(&req.conversation_id, &party, &req.customer_tags)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversation {}", req.conversation_id)))?;
    Ok(Json(route))
}

/// One customer across channels: their conversations, most recent first, and a one-line summary
/// for whoever takes over. A channel key reads only the customer it acts for.
#[utoipa::path(get, path = "/v1/customers/{id}", tag = "conversation",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = CustomerView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_customer(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerView>> {
    let party = caller.party(Some(id.clone()))?;
    let mut view = s
        .conversations
        .customer(&id, &party)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no conversations for customer {id}")))?;
    view.latest = view.latest.map(|v| shown_to(&caller, v));
    Ok(Json(view))
}

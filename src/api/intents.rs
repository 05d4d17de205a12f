//! The intent taxonomy: staff read it; admins add their own intents with a few examples each,
//! and the next turns are labelled with them (no restart, no training run by hand).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Admin, Staff};
use super::error::{ApiResult, ErrorBody};
use crate::conversation::intents::{IntentInfo, NewIntent};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntentList {
    /// The built-in taxonomy first, then an admin's intents by name.
    pub intents: Vec<IntentInfo>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineIntent {
    /// 2 to 40 characters: lowercase letters, digits and `_`, starting with a letter; not a
    /// built-in intent's name.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 3 to 100 example utterances, in any language (five is a good start).
    pub examples: Vec<String>,
}

#[utoipa::path(get, path = "/v1/intents", tag = "conversation",
    responses((status = 200, body = IntentList)),
    security(("bearer" = [])))]
pub async fn list_intents(State(s): State<AppState>, _staff: Staff) -> ApiResult<Json<IntentList>> {
    Ok(Json(IntentList {
        intents: s.conversations.intents().await?,
    }))
}

/// Creates an intent, or replaces an admin's intent of that name; turns read after this answer
/// are labelled with it.
#[utoipa::path(post, path = "/v1/intents", tag = "conversation", request_body = DefineIntent,
    responses((status = 201, body = IntentInfo),
              (status = 409, description = "A built-in intent's name, or too many intents", body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn define_intent(
    State(s): State<AppState>,
    Admin(admin): Admin,
    super::error::ApiJson(req): super::error::ApiJson<DefineIntent>,
) -> ApiResult<(StatusCode, Json<IntentInfo>)> {
    let new = NewIntent {
        name: req.name,
        description: req.description,
        examples: req.examples,
    };
    let info = s.conversations.define_intent(new, &admin.actor().0).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(delete, path = "/v1/intents/{name}", tag = "conversation",
    params(("name" = String, Path, description = "An admin's intent")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "A built-in intent", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_intent(
    State(s): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.conversations
        .remove_intent(&name, &admin.actor().0)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

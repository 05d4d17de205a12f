//! Data-protection requests, for admins: erase a customer, and hand a customer everything kefu
//! holds about them (README "Privacy").

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiResult, ErrorBody};
use crate::error::Error;
use crate::store::customers::{CustomerExport, Removed};

/// What an erasure removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub customer_id: String,
    pub removed: Removed,
}

/// Erases a customer: every conversation, turn, voice transcript, answer and feedback row, at
/// once and for good. The audit log keeps that an erasure happened, by whom, and the counts;
/// not the customer's id. 404 when nothing is held about them.
#[utoipa::path(delete, path = "/v1/customers/{id}", tag = "privacy",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = Erased), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn erase_customer(
    State(s): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Erased>> {
    let removed = s.conversations.erase(&id, &admin.actor().0).await?;
    if removed == Removed::default() {
        return Err(Error::NotFound(format!("nothing is held about customer {id}")).into());
    }
    Ok(Json(Erased {
        customer_id: id,
        removed,
    }))
}

/// Everything kefu holds about a customer, as one JSON document: their conversations with every
/// turn, the answers given with their citations, and the feedback on them.
#[utoipa::path(get, path = "/v1/customers/{id}/export", tag = "privacy",
    params(("id" = String, Path, description = "Customer id")),
    responses((status = 200, body = CustomerExport), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_customer(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerExport>> {
    let export = s
        .conversations
        .export(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("nothing is held about customer {id}")))?;
    Ok(Json(export))
}

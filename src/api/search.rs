//! Hit testing for admins and agents: which published cards, and which passage of each, a
//! question retrieves.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Staff;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::error::ErrorCode;
use crate::knowledge::retrieval::{Filters, Hit};
use crate::knowledge::translate::merge;

/// Longest query accepted, in characters: a question, not a document.
const MAX_QUERY_CHARS: usize = 2000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    /// How many cards to return (default 5, at most `search.max_top_k`).
    pub top_k: Option<usize>,
    #[serde(default)]
    pub filters: Filters,
    /// Also search the cards of the other languages with the query translated into each by the
    /// chat model (a generation per language; no effect without a chat model). A hit found
    /// that way carries `translated_query`.
    #[serde(default)]
    pub translate: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub took_ms: f64,
}

#[utoipa::path(post, path = "/v1/search", tag = "search", request_body = SearchRequest,
    responses((status = 200, description = "Published cards, best first", body = SearchResponse),
              (status = 422, body = ErrorBody), (status = 503, description = "Model queue full; retry", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(s): State<AppState>,
    Staff(_staff): Staff,
    ApiJson(req): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResponse>> {
    let cfg = &s.config.search;
    let top_k = req.top_k.unwrap_or(cfg.default_top_k);
    if top_k == 0 || top_k > cfg.max_top_k {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("top_k must be between 1 and {}", cfg.max_top_k),
        ));
    }
    if req.query.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("query is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let started = Instant::now();
    let mut hits = s
        .knowledge
        .search(&req.query, top_k, req.filters.clone())
        .await?;
    if req.translate {
        let across = s
            .desk
            .answerer
            .search_across(&req.query, top_k, &req.filters)
            .await?;
        hits = merge(hits, across, top_k);
    }
    Ok(Json(SearchResponse {
        hits,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

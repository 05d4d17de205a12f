//! Admins: what mining did. The background jobs with their state and result, and the
//! conversations a card was mined from (its evidence).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, ApiQuery, ApiResult, ErrorBody};
use crate::error::ErrorCode;
use crate::store::jobs::{Job, JobCounts};
use crate::store::mined::Evidence;
use crate::vocab::JobState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobParams {
    /// queued, running, done or failed.
    state: Option<String>,
    /// At most 500; 50 by default.
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    jobs: Vec<Job>,
    counts: JobCounts,
}

/// Background jobs, newest first, with how many are in each state.
#[utoipa::path(get, path = "/v1/jobs", tag = "mining", params(JobParams),
    responses((status = 200, body = JobList), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn jobs(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    ApiQuery(p): ApiQuery<JobParams>,
) -> ApiResult<Json<JobList>> {
    let state = p
        .state
        .map(|v| {
            v.parse::<JobState>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("state must be one of {}", JobState::list()),
                )
            })
        })
        .transpose()?;
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    Ok(Json(JobList {
        jobs: s.desk.miner.jobs(state, limit).await?,
        counts: s.desk.miner.counts().await?,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EvidenceList {
    /// How many resolved conversations taught this card.
    count: usize,
    evidence: Vec<Evidence>,
}

/// The resolved conversations a card was mined from or merged with, oldest first: the turns
/// read, the question as the customer asked it and the drafted wording, personal data removed.
#[utoipa::path(get, path = "/v1/cards/{id}/evidence", tag = "mining",
    params(("id" = String, Path, description = "Card id")),
    responses((status = 200, body = EvidenceList), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn evidence(
    State(s): State<AppState>,
    Admin(_admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<EvidenceList>> {
    let evidence = s.desk.miner.evidence(&id).await?;
    Ok(Json(EvidenceList {
        count: evidence.len(),
        evidence,
    }))
}

//! Sentiment of texts, for any caller: the same classifier that scores every customer turn.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::conversation::sentiment::Sentiment;
use crate::error::{Error, ErrorCode};

/// Texts per request: one embedding batch, not a bulk job.
const MAX_TEXTS: usize = 64;
/// Characters per text: a turn, not a document.
const MAX_CHARS: usize = 2000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SentimentRequest {
    /// One text, or:
    pub text: Option<String>,
    /// several (at most 64). Exactly one of `text` and `texts`.
    pub texts: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SentimentResult {
    /// negative | neutral | positive
    pub label: String,
    /// Probability of `label`.
    pub score: f32,
    /// Probability of each label.
    #[schema(value_type = Object)]
    pub scores: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SentimentResponse {
    /// One result per text, in order.
    pub results: Vec<SentimentResult>,
}

impl From<Sentiment> for SentimentResult {
    fn from(s: Sentiment) -> Self {
        SentimentResult {
            label: s.label.to_string(),
            score: s.score,
            scores: serde_json::to_value(s.scores).unwrap_or_default(),
        }
    }
}

#[utoipa::path(post, path = "/v1/sentiment", tag = "conversation", request_body = SentimentRequest,
    responses((status = 200, body = SentimentResponse),
              (status = 422, body = ErrorBody),
              (status = 503, description = "Sentiment disabled, or the model queue is full", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sentiment(
    State(s): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<SentimentRequest>,
) -> ApiResult<Json<SentimentResponse>> {
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidRequest, m);
    let texts = match (req.text, req.texts) {
        (Some(t), None) => vec![t],
        (None, Some(ts)) => ts,
        _ => return Err(invalid("give exactly one of `text` and `texts`".into())),
    };
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(invalid(format!("`texts` must hold 1 to {MAX_TEXTS} texts")));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(invalid(format!("text {i} is empty")));
        }
        if t.chars().count() > MAX_CHARS {
            return Err(invalid(format!(
                "text {i} is longer than {MAX_CHARS} characters"
            )));
        }
    }
    let model = s.conversations.sentiment().ok_or_else(|| {
        Error::Unavailable(
            "sentiment is not available on this server: models.sentiment is \"none\", or the head could not be trained at start (see the log; run `kefu train sentiment`)".into(),
        )
    })?;
    let results = model.classify(texts).await.map_err(Error::Model)?;
    Ok(Json(SentimentResponse {
        results: results.into_iter().map(Into::into).collect(),
    }))
}

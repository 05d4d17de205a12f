//! What texts say besides their words, for any caller: the same models that read every customer
//! turn. `/v1/sentiment` answers the sentiment alone; `/v1/signals` everything (language,
//! sentiment, emotions, intent).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::conversation::signals::Sentiment;
use crate::error::ErrorCode;
use crate::store::conversations::{TurnEmotions, TurnIntent};
use crate::text::LanguageGuess;

/// Texts per request: one embedding batch, not a bulk job.
const MAX_TEXTS: usize = 64;
/// Characters per text: a turn, not a document.
const MAX_CHARS: usize = 2000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextsRequest {
    /// One text, or:
    pub text: Option<String>,
    /// several (at most 64). Exactly one of `text` and `texts`.
    pub texts: Option<Vec<String>>,
}

impl TextsRequest {
    fn texts(self) -> Result<Vec<String>, ApiError> {
        let invalid = |m: String| ApiError::new(ErrorCode::InvalidRequest, m);
        let texts = match (self.text, self.texts) {
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
        Ok(texts)
    }
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalsResult {
    /// `None` for a text with no letters.
    pub language: Option<LanguageGuess>,
    pub sentiment: SentimentResult,
    pub emotions: TurnEmotions,
    pub intent: TurnIntent,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalsResponse {
    /// One result per text, in order.
    pub results: Vec<SignalsResult>,
}

#[utoipa::path(post, path = "/v1/sentiment", tag = "conversation", request_body = TextsRequest,
    responses((status = 200, body = SentimentResponse),
              (status = 422, body = ErrorBody),
              (status = 503, description = "Sentiment disabled, or the model queue is full", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn sentiment(
    State(s): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<TextsRequest>,
) -> ApiResult<Json<SentimentResponse>> {
    let readings = s.conversations.read_texts(req.texts()?).await?;
    Ok(Json(SentimentResponse {
        results: readings.into_iter().map(|r| r.sentiment.into()).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/signals", tag = "conversation", request_body = TextsRequest,
    responses((status = 200, body = SignalsResponse),
              (status = 422, body = ErrorBody),
              (status = 503, description = "Signals disabled, or the model queue is full", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn signals(
    State(s): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<TextsRequest>,
) -> ApiResult<Json<SignalsResponse>> {
    let readings = s.conversations.read_texts(req.texts()?).await?;
    Ok(Json(SignalsResponse {
        results: readings
            .into_iter()
            .map(|r| SignalsResult {
                language: r.language,
                sentiment: r.sentiment.into(),
                emotions: r.emotions,
                intent: r.intent,
            })
            .collect(),
    }))
}

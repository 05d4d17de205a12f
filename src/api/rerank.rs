//! `POST /v1/rerank`: the second stage on its own, for callers that retrieve elsewhere. The shape
//! is the one text-embeddings-inference, Cohere and Jina share, so their clients work unchanged:
//! `{query, texts | documents, top_n?, return_text? | return_documents?}` in, the passages ranked
//! best first out, each with its `index` in the request and its score under both names
//! (`relevance_score`: Cohere, Jina; `score`: text-embeddings-inference).

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Staff;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::error::ErrorCode;
use crate::knowledge::rerank::Scorer;

/// Longest query, in characters: a question, not a document.
const MAX_QUERY_CHARS: usize = 2000;
/// Most passages in one request (text-embeddings-inference's default batch limit): each costs
/// one reading of a prompt by the chat model.
const MAX_PASSAGES: usize = 32;
/// Longest passage, in characters.
const MAX_PASSAGE_CHARS: usize = 8000;

/// Cohere and Jina send documents as strings or as `{"text": ...}` objects.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Document {
    Text(String),
    Object { text: String },
}

/// Unknown fields are ignored rather than refused: each of the three APIs has options of its own
/// (`truncate`, `rank_fields`, `max_chunks_per_doc`) that do not change what is asked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RerankRequest {
    /// The question.
    pub query: String,
    /// The passages to rank (text-embeddings-inference). Give these or `documents`.
    pub texts: Option<Vec<String>>,
    /// The passages to rank (Cohere, Jina): strings or `{"text": ...}` objects.
    pub documents: Option<Vec<Document>>,
    /// Return only the best `top_n` (default: all).
    pub top_n: Option<usize>,
    /// Include each passage's text as `text` (text-embeddings-inference).
    #[serde(default)]
    pub return_text: bool,
    /// Include each passage as `document: {text}` (Cohere, Jina).
    #[serde(default)]
    pub return_documents: bool,
    /// Accepted for compatibility; the configured model scores.
    pub model: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentText {
    pub text: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RerankResult {
    /// Position of the passage in the request.
    pub index: usize,
    /// How well the passage answers the query (see `scorer`).
    pub relevance_score: f32,
    /// The same score under text-embeddings-inference's name.
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RerankResponse {
    pub id: String,
    /// The model that scored.
    pub model: String,
    /// `judge`: the chat model's probability that the passage answers the query, in [0, 1];
    /// `embedder`: the cosine between them (no chat model is loaded), which ranks but is no
    /// probability.
    pub scorer: Scorer,
    /// Best first.
    pub results: Vec<RerankResult>,
    pub took_ms: f64,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

#[utoipa::path(post, path = "/v1/rerank", tag = "search", request_body = RerankRequest,
    responses((status = 200, description = "The passages, best first", body = RerankResponse),
              (status = 422, body = ErrorBody), (status = 503, description = "Model queue full; retry", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rerank(
    State(s): State<AppState>,
    Staff(_staff): Staff,
    ApiJson(req): ApiJson<RerankRequest>,
) -> ApiResult<Json<RerankResponse>> {
    let query = req.query.trim();
    if query.is_empty() {
        return Err(invalid("query must not be empty"));
    }
    if query.chars().count() > MAX_QUERY_CHARS {
        return Err(invalid(format!(
            "query is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let passages: Vec<String> = match (req.texts, req.documents) {
        (Some(t), None) => t,
        (None, Some(d)) => d
            .into_iter()
            .map(|d| match d {
                Document::Text(t) | Document::Object { text: t } => t,
            })
            .collect(),
        (Some(_), Some(_)) => return Err(invalid("give texts or documents, not both")),
        (None, None) => return Err(invalid("texts (or documents) is required")),
    };
    if passages.is_empty() || passages.len() > MAX_PASSAGES {
        return Err(invalid(format!(
            "between 1 and {MAX_PASSAGES} passages can be ranked at once, not {}",
            passages.len()
        )));
    }
    for (i, p) in passages.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(invalid(format!("passage {i} is empty")));
        }
        if p.chars().count() > MAX_PASSAGE_CHARS {
            return Err(invalid(format!(
                "passage {i} is longer than {MAX_PASSAGE_CHARS} characters"
            )));
        }
    }
    if req.top_n == Some(0) {
        return Err(invalid("top_n must be at least 1"));
    }
    let started = Instant::now();
    let reranker = s.desk.answerer.reranker();
    let (scores, scorer) = reranker.score(query, &passages).await?;
    let mut order: Vec<usize> = (0..passages.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(req.top_n.unwrap_or(passages.len()));
    let results = order
        .into_iter()
        .map(|i| RerankResult {
            index: i,
            relevance_score: scores[i],
            score: scores[i],
            text: req.return_text.then(|| passages[i].clone()),
            document: req.return_documents.then(|| DocumentText {
                text: passages[i].clone(),
            }),
        })
        .collect();
    Ok(Json(RerankResponse {
        id: uuid::Uuid::now_v7().to_string(),
        model: reranker.model(),
        scorer,
        results,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
    }))
}

//! OpenAI-compatible endpoints, so existing clients and SDKs work unchanged: chat completions
//! (plain and streamed), embeddings and the model list. Fields the service does not use
//! (`presence_penalty`, `logit_bias`, `user`, ...) are accepted and ignored, as OpenAI's own
//! clients send them.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiResult, ErrorBody};
use crate::error::{Error, ErrorCode};
use crate::runtime::embed::TextKind;
use crate::runtime::generate::{ChatMessage, FinishReason, GenEvent, SamplingParams, collect};

/// Message content: a string, or OpenAI's list of parts (only text parts are understood).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InMessage {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; llama.cpp and vLLM accept it too.
    pub top_k: Option<usize>,
    /// Not in OpenAI's API; 1.0 is off.
    pub repeat_penalty: Option<f32>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub stop: Option<Stop>,
    pub seed: Option<u64>,
    pub n: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Choice {
    pub index: usize,
    pub message: OutMessage,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize, Clone, Copy, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatResponse {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

const MAX_STOP: usize = 4;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

fn messages(req: &ChatRequest) -> Result<Vec<ChatMessage>, ApiError> {
    if req.messages.is_empty() {
        return Err(invalid("messages must not be empty"));
    }
    req.messages
        .iter()
        .map(|m| {
            if !matches!(
                m.role.as_str(),
                "system" | "developer" | "user" | "assistant"
            ) {
                return Err(invalid(format!(
                    "message role {:?} is not supported (system, developer, user, assistant)",
                    m.role
                )));
            }
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(invalid(format!(
                                "content part type {:?} is not supported (text only)",
                                p.kind
                            )));
                        }
                        s.push_str(p.text.as_deref().unwrap_or(""));
                    }
                    s
                }
            };
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

fn params(req: &ChatRequest) -> Result<SamplingParams, ApiError> {
    let defaults = SamplingParams::default();
    let temperature = req.temperature.unwrap_or(0.7);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(invalid("temperature must be between 0 and 2"));
    }
    if let Some(p) = req.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(invalid("top_p must be in (0, 1]"));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("only n = 1 is supported"));
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(512);
    if max_tokens == 0 {
        return Err(invalid("max_tokens must be at least 1"));
    }
    let stop = match &req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > MAX_STOP {
        return Err(invalid(format!("at most {MAX_STOP} stop sequences")));
    }
    let penalty = req.repeat_penalty.unwrap_or(1.0);
    if !(penalty > 0.0 && penalty <= 2.0) {
        return Err(invalid("repeat_penalty must be in (0, 2]"));
    }
    Ok(SamplingParams {
        temperature,
        top_p: req.top_p.filter(|p| *p < 1.0),
        top_k: req.top_k,
        repeat_penalty: penalty,
        repeat_last_n: defaults.repeat_last_n,
        max_tokens,
        stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
        seed: req.seed.unwrap_or_else(rand_seed),
    })
}

/// OpenAI's default is a different sample each call; without a seed, so is ours. A v7 UUID's
/// low half is random bits.
fn rand_seed() -> u64 {
    uuid::Uuid::now_v7().as_u64_pair().1
}

fn model_not_found(model: &str, known: &[String]) -> ApiError {
    ApiError::new(
        ErrorCode::ModelNotFound,
        format!(
            "model {model:?} is not served here (available: {})",
            known.join(", ")
        ),
    )
}

/// Chat completions with the configured generator (`model` is its manifest id).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatRequest,
    responses((status = 200, description = "A completion, or an SSE stream of chunks when `stream` is true", body = ChatResponse),
              (status = 400, description = "Prompt plus max_tokens exceed the context", body = ErrorBody),
              (status = 404, description = "Unknown model", body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn chat_completions(
    State(s): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<ChatRequest>,
) -> ApiResult<Response> {
    let Some(g) = s.desk.answerer.generator().cloned() else {
        return Err(
            Error::Unavailable("no generator is configured (models.generator)".into()).into(),
        );
    };
    if req.model != g.id() {
        return Err(model_not_found(&req.model, &[g.id().to_string()]));
    }
    let msgs = messages(&req)?;
    let params = params(&req)?;
    let prompt = g.render_chat(&msgs).map_err(Error::Model)?;
    let rx = g.generate(prompt, params).map_err(Error::Model)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    let created = unix_now();
    let model = g.id().to_string();
    if !req.stream {
        let (text, reason, p, c) = collect(rx).await.map_err(Error::Model)?;
        return Ok(Json(ChatResponse {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: OutMessage {
                    role: "assistant",
                    content: text,
                },
                finish_reason: finish_reason(reason),
            }],
            usage: Usage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: p + c,
            },
        })
        .into_response());
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let chunk = move |delta: serde_json::Value, finish: Option<&str>, usage: Option<Usage>| {
        let mut v = serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": if usage.is_some() && delta.is_null() { serde_json::json!([]) } else {
                serde_json::json!([{ "index": 0, "delta": delta, "finish_reason": finish }])
            },
        });
        if let Some(u) = usage {
            v["usage"] = serde_json::to_value(u).unwrap_or_default();
        }
        Event::default().data(v.to_string())
    };
    let stream = async_stream::stream! {
        let mut rx = rx;
        yield Ok::<_, Infallible>(chunk(serde_json::json!({"role": "assistant", "content": ""}), None, None));
        loop {
            match rx.recv().await {
                Some(GenEvent::Delta(d)) => yield Ok(chunk(serde_json::json!({"content": d}), None, None)),
                Some(GenEvent::Done { reason, prompt_tokens, completion_tokens, .. }) => {
                    yield Ok(chunk(serde_json::json!({}), Some(finish_reason(reason)), None));
                    if include_usage {
                        let u = Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
                        yield Ok(chunk(serde_json::Value::Null, None, Some(u)));
                    }
                    break;
                }
                Some(GenEvent::Failed(e)) => {
                    let e = ApiError::from(Error::Model(e));
                    yield Ok(Event::default().data(serde_json::to_string(&e.body()).unwrap_or_default()));
                    break;
                }
                None => break,
            }
        }
        yield Ok(Event::default().data("[DONE]"));
    };
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32, what the official clients ask for).
    pub encoding_format: Option<String>,
    /// Not in OpenAI's API: `query` (default) or `passage`, the prefix e5-style models were
    /// trained with. Queries and short symmetric texts: `query`; documents to search: `passage`.
    pub input_type: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmbeddingItem {
    pub object: &'static str,
    pub index: usize,
    #[schema(value_type = Object)]
    pub embedding: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: EmbeddingsUsage,
}

const MAX_EMBED_INPUTS: usize = 256;
const MAX_EMBED_CHARS: usize = 32_000;

/// Sentence embeddings with the retrieval embedder (`model` is its manifest id).
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn embeddings(
    State(s): State<AppState>,
    _caller: Caller,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> ApiResult<Json<EmbeddingsResponse>> {
    let e = s.knowledge.embedder();
    if req.model != e.id() {
        return Err(model_not_found(&req.model, &[e.id().to_string()]));
    }
    let texts = match req.input {
        EmbeddingInput::One(t) => vec![t],
        EmbeddingInput::Many(v) => v,
    };
    if texts.is_empty() || texts.len() > MAX_EMBED_INPUTS {
        return Err(invalid(format!(
            "input must hold 1 to {MAX_EMBED_INPUTS} texts"
        )));
    }
    if let Some(i) = texts
        .iter()
        .position(|t| t.trim().is_empty() || t.chars().count() > MAX_EMBED_CHARS)
    {
        return Err(invalid(format!(
            "input[{i}] must be non-empty and at most {MAX_EMBED_CHARS} characters"
        )));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(format!(
                "encoding_format {other:?}: use float or base64"
            )));
        }
    };
    let kind = match req.input_type.as_deref() {
        None | Some("query") => TextKind::Query,
        Some("passage") => TextKind::Passage,
        Some(other) => {
            return Err(invalid(format!(
                "input_type {other:?}: use query or passage"
            )));
        }
    };
    let tokens: usize = texts.iter().map(|t| crate::text::estimate_tokens(t)).sum();
    let vecs = e.embed(texts, kind).await.map_err(Error::Model)?;
    let data = vecs
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::json!(v)
            },
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: e.id().to_string(),
        usage: EmbeddingsUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

/// The models this server runs: the generator (chat completions) and the embedder.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList)), security(("bearer" = [])))]
pub async fn models(State(s): State<AppState>, _caller: Caller) -> Json<ModelList> {
    let mut ids = Vec::new();
    if let Some(g) = s.desk.answerer.generator() {
        ids.push(g.id().to_string());
    }
    ids.push(s.knowledge.embedder().id().to_string());
    if let Some(a) = &s.desk.asr {
        ids.push(a.id().to_string());
    }
    Json(ModelList {
        object: "list",
        data: ids
            .into_iter()
            .map(|id| ModelCard {
                id,
                object: "model",
                created: 0,
                owned_by: "kefu",
            })
            .collect(),
    })
}

//! The one mapping from error kinds to HTTP statuses, and extractors whose rejections speak the
//! same `{ "error": { "code", "message" } }` shape as everything else.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::runtime::ModelError;
use crate::store::vector::VectorError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// The error body every failing route returns.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// Stable machine-readable code, e.g. `invalid_json`, `compliance_failed`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        use StatusCode as S;
        match e {
            Error::Invalid { code, message } => {
                let status = if matches!(code, "invalid_json" | "invalid_utf8" | "bad_request") {
                    S::BAD_REQUEST
                } else {
                    S::UNPROCESSABLE_ENTITY
                };
                ApiError::new(status, code, message)
            }
            Error::NotFound(m) => ApiError::new(S::NOT_FOUND, "not_found", m),
            Error::Conflict(m) => ApiError::new(S::CONFLICT, "conflict", m),
            Error::Compliance(ref findings) => ApiError {
                status: S::UNPROCESSABLE_ENTITY,
                code: "compliance_failed",
                message: e.to_string(),
                details: Some(serde_json::to_value(findings).unwrap_or_default()),
            },
            Error::Model(m @ ModelError::Overloaded(_)) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "overloaded", m.to_string())
            }
            Error::Model(m @ ModelError::ContextExceeded { .. }) => {
                ApiError::new(S::BAD_REQUEST, "context_length_exceeded", m.to_string())
            }
            Error::Model(m @ ModelError::WorkerGone(_)) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "unavailable", m.to_string())
            }
            Error::Unavailable(m) => ApiError::new(S::SERVICE_UNAVAILABLE, "unavailable", m),
            Error::Vector(v @ (VectorError::Unavailable { .. } | VectorError::Unusable(_))) => {
                ApiError::new(S::SERVICE_UNAVAILABLE, "unavailable", v.to_string())
            }
            Error::Model(m) => {
                tracing::error!(error = %m, "model error");
                ApiError::new(S::INTERNAL_SERVER_ERROR, "model_error", m.to_string())
            }
            Error::Store(s) => {
                // The detail goes to the log; the caller learns only that it was not their fault.
                tracing::error!(error = %s, "store error");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the store failed; nothing was changed. Retry, and see the server log if it persists",
                )
            }
            Error::Vector(v) => {
                tracing::error!(error = %v, "vector index error");
                ApiError::new(S::INTERNAL_SERVER_ERROR, "internal", v.to_string())
            }
        }
    }
}

impl ApiError {
    /// The `{ "error": { "code", "message" } }` body, for errors sent inside a stream.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code.to_string(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut res = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

fn bytes_rejection(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is too large: {}", e.body_text()),
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
    }
}

/// `axum::Json` with our error shape: bad syntax 400, right syntax but wrong fields 422, not
/// JSON at all 415, too large 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                e.body_text(),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                e.body_text(),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(bytes_rejection(&e)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )),
        }
    }
}

/// `axum::extract::Query` with our error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
            })
    }
}

/// A raw body, size-limited, with our error shape.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> ApiResult<bytes::Bytes> {
    bytes::Bytes::from_request(req, state)
        .await
        .map_err(|e| bytes_rejection(&e))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; GET /openapi.json lists them",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; GET /openapi.json lists them",
    )
}

/// A panic in a handler is a bug; the client still gets the error shape, and the server lives on.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log",
    )
    .into_response()
}

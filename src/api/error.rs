//! The one mapping from error kinds to HTTP statuses, and extractors whose rejections speak the
//! same `{ "error": { "code", "message" } }` shape as everything else.

use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorCode};

/// An error on its way to the client. Its status follows from its code ([`status`]): handlers
/// never name a status.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// The error body every failing route returns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong and what to do about it.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// The one mapping from error codes to HTTP statuses.
pub fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    use StatusCode as S;
    match code {
        C::InvalidJson
        | C::InvalidUtf8
        | C::BadRequest
        | C::InvalidQuery
        | C::InvalidMultipart
        | C::InvalidAudio
        | C::AudioTooLong
        | C::ContextLengthExceeded => S::BAD_REQUEST,
        C::InvalidRequest
        | C::InvalidCard
        | C::CardTooLarge
        | C::EmptyImport
        | C::InvalidPrompts
        | C::ComplianceFailed => S::UNPROCESSABLE_ENTITY,
        C::Unauthorized => S::UNAUTHORIZED,
        C::Forbidden => S::FORBIDDEN,
        C::NotFound | C::ModelNotFound => S::NOT_FOUND,
        C::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
        C::Conflict => S::CONFLICT,
        C::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
        C::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
        C::Overloaded | C::Unavailable => S::SERVICE_UNAVAILABLE,
        C::RateLimited => S::TOO_MANY_REQUESTS,
        C::StorageFull => S::INSUFFICIENT_STORAGE,
        C::ModelError | C::Internal => S::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        status(self.code)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = e.code();
        match e {
            Error::Compliance(ref findings) => ApiError {
                code,
                message: e.to_string(),
                details: Some(serde_json::to_value(findings).unwrap_or_default()),
            },
            Error::Store(ref s) => {
                // The detail goes to the log; the caller learns only that it was not their fault.
                tracing::error!(error = %s, "store error");
                ApiError::new(code, e.public_message())
            }
            e => {
                if matches!(code, ErrorCode::ModelError | ErrorCode::Internal) {
                    tracing::error!(error = %e, "request failed");
                }
                ApiError::new(code, e.to_string())
            }
        }
    }
}

impl ApiError {
    /// The `{ "error": { "code", "message" } }` body, for errors sent inside a stream.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let status = self.status();
        let mut res = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// An error answered to a request that carried a body says `Connection: close`. Most such
/// answers come before the body is read (no key, past the rate, a full upload queue, too
/// large), and the server then drops the connection with the body unread; without the header a
/// client would put the connection back in its pool and lose its next request on it ("broken
/// pipe", found by `kefu bench load`). An error is rare enough that its keep-alive costs nothing.
pub async fn close_after_refused_body(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|n| n.trim() != "0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut res = next.run(req).await;
    let status = res.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// A body that could not be read: too large (413), or broken off (400).
pub fn rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is too large: {text}"),
        )
    } else {
        ApiError::new(ErrorCode::BadRequest, text)
    }
}

fn bytes_rejection(e: &BytesRejection) -> ApiError {
    rejection(e.status(), e.body_text())
}

/// `axum::Json` with our error shape: bad syntax 400, right syntax but wrong fields 422, not
/// JSON at all 415, too large 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                Err(ApiError::new(ErrorCode::InvalidRequest, e.body_text()))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::new(ErrorCode::InvalidJson, e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(bytes_rejection(&e)),
            Err(e) => Err(ApiError::new(ErrorCode::BadRequest, e.body_text())),
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
            .map_err(|e: QueryRejection| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
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
        ErrorCode::NotFound,
        "no such route; GET /openapi.json lists them",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method; GET /openapi.json lists them",
    )
}

/// A panic in a handler is a bug; the client still gets the error shape, and the server lives on.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(ErrorCode::Internal, "internal error; see the server log").into_response()
}

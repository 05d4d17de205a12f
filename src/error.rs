//! The library's error type. Each variant says whose fault it is (the caller's or the system's)
//! and carries a stable [`ErrorCode`]; `api::error` maps each code to its HTTP status in one
//! place, and nothing below `api` knows about HTTP.

use serde::Serialize;

use crate::store::StoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One compliance check that failed on a card, with where it failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// Which check failed: `phone_number`, `email_address`, `national_id`, `payment_card`.
    pub check: String,
    /// The card field the text is in: `title` or `body`.
    pub field: String,
    /// Character offsets `[start, end)` in that field.
    pub start: usize,
    pub end: usize,
    /// The offending text with its middle masked, so the error itself does not leak it.
    pub excerpt: String,
}

/// The machine-readable `code` of every error body. Clients branch on these, so they are stable:
/// add new ones, never rename.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON.
    InvalidJson,
    /// The body is not UTF-8 text.
    InvalidUtf8,
    /// The request could not be read (another malformed part than the ones below).
    BadRequest,
    /// The query string does not parse.
    InvalidQuery,
    /// The multipart form does not parse.
    InvalidMultipart,
    /// The upload is not audio this server decodes, or is damaged.
    InvalidAudio,
    /// The recording is longer than `voice.max_audio_seconds`.
    AudioTooLong,
    /// Prompt and answer would not fit the model's context window.
    ContextLengthExceeded,
    /// Well-formed, but a field is missing, out of range or of the wrong kind.
    InvalidRequest,
    /// A card field is invalid.
    InvalidCard,
    /// A card body is over `limits.max_card_bytes`.
    CardTooLarge,
    /// An import holds no cards.
    EmptyImport,
    /// A prompt template does not read or render.
    InvalidPrompts,
    /// The card holds personal data and cannot be published; `details` says where.
    ComplianceFailed,
    /// No API key, or an unknown one.
    Unauthorized,
    /// The key's role may not do this.
    Forbidden,
    NotFound,
    /// The named model is not loaded.
    ModelNotFound,
    MethodNotAllowed,
    /// The request conflicts with the current state (lifecycle step, stale version, another
    /// customer's conversation).
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// A queue is full: retry after the `Retry-After` seconds.
    Overloaded,
    /// The key sent more requests than `limits.rate_per_minute`: retry after `Retry-After`.
    RateLimited,
    /// A model or backend is not available now (or not configured).
    Unavailable,
    /// A model failed on this request.
    ModelError,
    /// The data directory's disk is full: nothing of this request was written. Retry after
    /// space is freed.
    StorageFull,
    /// Something failed on the server's side; the log says what.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something malformed or out of range; the message says what to fix.
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },

    /// The caller asked for something that does not exist.
    #[error("{0}")]
    NotFound(String),

    /// The request conflicts with the current state (wrong lifecycle step, stale version).
    #[error("{0}")]
    Conflict(String),

    /// The card's content fails compliance checks and cannot be published as it is.
    #[error("the card fails {} compliance check(s): remove the personal data and publish again", .0.len())]
    Compliance(Vec<Finding>),

    /// A dependency (a model worker, a vector backend) is not available right now.
    #[error("{0}")]
    Unavailable(String),

    /// A model could not be found, fetched, verified or run.
    #[error(transparent)]
    Model(#[from] crate::runtime::ModelError),

    /// The store failed. Always the system's fault; the message is logged, not shown in full.
    /// (A store's not-found and conflict are the caller's: they become those kinds.)
    #[error(transparent)]
    Store(crate::store::StoreError),

    /// A vector backend failed.
    #[error(transparent)]
    Vector(#[from] crate::store::vector::VectorError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Error::NotFound(m),
            StoreError::Conflict(m) => Error::Conflict(m),
            other => Error::Store(other),
        }
    }
}

/// Runs a store call (or other short synchronous work) on the blocking pool, off the async
/// reactor: SQLite with `synchronous=FULL` waits for the disk.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Unavailable(format!("store task failed: {e}")))?
        .map_err(Error::from)
}

impl Error {
    /// A request that is well-formed but wrong (`invalid_request`).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::bad(ErrorCode::InvalidRequest, message)
    }

    /// The caller's mistake, of the given kind.
    pub fn bad(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The message a caller may see: a store failure's detail (paths, SQL) stays in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Store(_) if self.code() == ErrorCode::StorageFull => {
                "the server's disk is full; nothing was changed. Retry once space is freed".into()
            }
            Error::Store(_) => {
                "the store failed; nothing was changed. Retry, and see the server log if it persists"
                    .into()
            }
            e => e.to_string(),
        }
    }

    /// The stable code clients see for this error.
    pub fn code(&self) -> ErrorCode {
        use crate::runtime::ModelError as M;
        use crate::store::vector::VectorError as V;
        match self {
            Error::Invalid { code, .. } => *code,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Compliance(_) => ErrorCode::ComplianceFailed,
            Error::Model(M::Overloaded(_)) => ErrorCode::Overloaded,
            Error::Model(M::ContextExceeded { .. }) => ErrorCode::ContextLengthExceeded,
            Error::Model(M::WorkerGone(_)) => ErrorCode::Unavailable,
            Error::Model(_) => ErrorCode::ModelError,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Vector(V::Unavailable { .. } | V::Unusable(_)) => ErrorCode::Unavailable,
            Error::Store(s) if s.is_disk_full() => ErrorCode::StorageFull,
            Error::Vector(_) | Error::Store(_) => ErrorCode::Internal,
        }
    }
}

//! The library's error type. Each variant says whose fault it is (the caller's or the system's),
//! which decides its HTTP status in `api::error`; nothing below `api` knows about HTTP.

use serde::Serialize;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something malformed or out of range; the message says what to fix.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },

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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),

    /// A vector backend failed.
    #[error(transparent)]
    Vector(#[from] crate::store::vector::VectorError),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }
}

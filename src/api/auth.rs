//! API keys with roles. A request carries `Authorization: Bearer KEY`; the middleware resolves
//! it to a [`Caller`], and handlers state the role they need with the [`Admin`] and [`Staff`]
//! extractors, so a route's requirement is visible in its signature.
//!
//! With no keys configured every caller is an anonymous admin; the server refuses to bind a
//! non-loopback address in that case (see `server`).

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::config::{ApiKey, Role};
use crate::error::ErrorCode;
use crate::knowledge::Actor;

#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    pub name: String,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor(format!("{}:{}", self.role.as_str(), self.name))
    }
}

pub struct Keys {
    /// sha256(key) -> caller. Keys are looked up by digest, never compared as plain strings.
    by_digest: HashMap<[u8; 32], Caller>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    pub fn new(keys: &[ApiKey]) -> Self {
        let by_digest = keys
            .iter()
            .map(|k| {
                let d = digest(&k.key);
                let name = k
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", k.role.as_str(), &hex::encode(d)[..8]));
                (d, Caller { role: k.role, name })
            })
            .collect();
        Keys { by_digest }
    }

    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    fn resolve(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller {
                role: Role::Admin,
                name: "anonymous".into(),
            });
        }
        let unauthorized = |m: &str| ApiError::new(ErrorCode::Unauthorized, m);
        let h = header
            .ok_or_else(|| unauthorized("missing API key: send `Authorization: Bearer <key>`"))?;
        let key = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
        self.by_digest
            .get(&digest(key.trim()))
            .cloned()
            .ok_or_else(|| unauthorized("unknown API key"))
    }
}

/// Resolves the caller of every `/v1` request, or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.keys.resolve(header) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn caller(parts: &Parts) -> Result<Caller, ApiError> {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "route is missing the auth layer"))
}

fn forbidden(c: &Caller, need: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "this route needs {need}; the key presented has the {} role",
            c.role.as_str()
        ),
    )
}

/// The caller holds the admin role.
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let c = caller(parts)?;
        if c.role == Role::Admin {
            Ok(Admin(c))
        } else {
            Err(forbidden(&c, "the admin role"))
        }
    }
}

/// The caller is staff: an agent or an admin.
pub struct Staff(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Staff {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let c = caller(parts)?;
        if c.role >= Role::Agent {
            Ok(Staff(c))
        } else {
            Err(forbidden(&c, "the agent or admin role"))
        }
    }
}

/// Any authenticated caller (channel, agent or admin).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        caller(parts)
    }
}

//! API keys with roles. A request carries `Authorization: Bearer KEY`; the middleware resolves
//! it to a [`Caller`], and handlers state the role they need with the [`Admin`] and [`Staff`]
//! extractors, so a route's requirement is visible in its signature.
//!
//! With no keys configured every caller is an anonymous admin; the server refuses to bind a
//! non-loopback address in that case (see `server`).
//!
//! Staff (agents and admins) read every conversation. A channel acts for one customer per
//! request ([`Caller::party`]): the customer named by the `X-Kefu-Customer` header or the body's
//! `customer_id`. A channel key used from a browser widget carries an identity secret, and then
//! the customer id must come signed (`X-Kefu-Customer-Signature`, HMAC-SHA256 of the id, as
//! support widgets verify identity), so a key copied out of the page reaches no one else's data.
//!
//! The console signs in with a staff key once and then carries a session cookie instead
//! ([`Sessions`]): the key never sits in the page, where a script could read it. A cookie is sent
//! by the browser on its own, so every request that changes something must also carry the
//! session's CSRF token in a header, which another site's page cannot read or set.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::config::{ApiKey, Role};
use crate::conversation::{Party, validate_id};
use crate::error::ErrorCode;
use crate::knowledge::Actor;
use crate::vocab::Role as TurnRole;

/// The customer a request acts for, as a channel frontend names it.
pub const CUSTOMER_HEADER: &str = "x-kefu-customer";
/// hex(HMAC-SHA256(identity secret, customer id)), required with a widget key.
pub const SIGNATURE_HEADER: &str = "x-kefu-customer-signature";

#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    pub name: String,
    /// The customer named by the `X-Kefu-Customer` header (its signature checked when the key
    /// needs one).
    pub customer: Option<String>,
    /// The key is a widget key: a customer id only counts when signed.
    signed_only: bool,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor(format!("{}:{}", self.role.as_str(), self.name))
    }

    /// Who the request acts as, given the `customer_id` its body or query names. Staff act as
    /// staff; a channel acts for exactly one customer, and must name one.
    pub fn party(&self, stated: Option<String>) -> Result<Party, ApiError> {
        if self.role >= Role::Agent {
            return Ok(Party::Staff(stated.or_else(|| self.customer.clone())));
        }
        match (&self.customer, stated) {
            (Some(signed), Some(stated)) if *signed != stated => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "customer_id {stated:?} is not the customer this request acts for ({CUSTOMER_HEADER})"
                ),
            )),
            (Some(c), _) => Ok(Party::Customer(c.clone())),
            (None, _) if self.signed_only => Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "this channel key needs a signed customer id: send {CUSTOMER_HEADER} and \
                     {SIGNATURE_HEADER} (hex HMAC-SHA256 of the id with the key's identity secret)"
                ),
            )),
            (None, Some(c)) => Ok(Party::Customer(c)),
            (None, None) => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "a channel key acts for one customer: send customer_id (or the X-Kefu-Customer header)",
            )),
        }
    }

    /// The turn a caller may write: a forged bot or customer turn would put words in kefu's or the
    /// customer's mouth, which the model then reads as history.
    pub fn turn_role(&self, asked: Option<TurnRole>) -> Result<TurnRole, ApiError> {
        let allowed: &[TurnRole] = match self.role {
            Role::Channel => &[TurnRole::Customer],
            Role::Agent => &[TurnRole::Agent],
            Role::Admin => &[TurnRole::Agent, TurnRole::Customer],
        };
        let role = asked.unwrap_or(allowed[0]);
        if allowed.contains(&role) {
            return Ok(role);
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a {} key may not write {} turns: {}",
                self.role.as_str(),
                role.as_str(),
                if role == TurnRole::Bot {
                    "bot turns are written by kefu when it answers"
                } else {
                    "channel keys write customer turns, agent keys agent turns"
                }
            ),
        ))
    }
}

/// One configured key.
struct KeyEntry {
    role: Role,
    name: String,
    identity: Option<Hmac<sha2::Sha256>>,
    /// `requests_per_day`, when the key has a quota.
    quota: Option<governor::DefaultDirectRateLimiter>,
}

/// Why a request was not admitted, and when to try again.
enum Refusal {
    Rate(std::time::Duration),
    Quota(std::time::Duration),
}

pub struct Keys {
    /// sha256(key) -> key. Keys are looked up by digest, never compared as plain strings.
    by_digest: HashMap<[u8; 32], KeyEntry>,
    /// Requests per key name (`limits.rate_per_minute`), when limited.
    rate: Option<governor::DefaultKeyedRateLimiter<String>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Keys {
    pub fn new(keys: &[ApiKey], rate_per_minute: u32) -> Self {
        let by_digest = keys
            .iter()
            .map(|k| {
                let d = digest(&k.key);
                let name = k
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", k.role.as_str(), &hex::encode(d)[..8]));
                let identity = k.identity_secret.as_ref().map(|s| {
                    Hmac::<sha2::Sha256>::new_from_slice(s.as_bytes())
                        .expect("HMAC takes a key of any length")
                });
                let quota = k
                    .requests_per_day
                    .and_then(std::num::NonZeroU32::new)
                    .map(|n| {
                        let period = std::time::Duration::from_secs(86_400) / n.get();
                        let quota = governor::Quota::with_period(period)
                            .expect("a day divided by a u32 is never zero")
                            .allow_burst(n);
                        governor::RateLimiter::direct(quota)
                    });
                let entry = KeyEntry {
                    role: k.role,
                    name,
                    identity,
                    quota,
                };
                (d, entry)
            })
            .collect();
        let rate = std::num::NonZeroU32::new(rate_per_minute)
            .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n)));
        Keys { by_digest, rate }
    }

    /// Whether the caller may make one more request now; how long to wait if not. Keyed by
    /// the key's name: the configured keys are few, so the table stays small.
    fn admit(&self, caller: &Caller, key: Option<&KeyEntry>) -> Result<(), Refusal> {
        use governor::clock::{Clock, DefaultClock};
        // Keyless (local) mode has no limits.
        let Some(key) = key else { return Ok(()) };
        let wait =
            |until: governor::NotUntil<_>| until.wait_time_from(DefaultClock::default().now());
        if let Some(limiter) = &self.rate {
            limiter
                .check_key(&caller.name)
                .map_err(|u| Refusal::Rate(wait(u)))?;
        }
        if let Some(quota) = &key.quota {
            quota.check().map_err(|u| Refusal::Quota(wait(u)))?;
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// The configured key `key` is, with its digest.
    fn entry(&self, key: &str) -> Result<(&KeyEntry, [u8; 32]), ApiError> {
        let d = digest(key.trim());
        let entry = self
            .by_digest
            .get(&d)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown API key"))?;
        Ok((entry, d))
    }

    /// The staff key's role and name, for a console sign-in.
    pub fn staff(&self, key: &str) -> Result<(Role, String, [u8; 32]), ApiError> {
        let (entry, d) = self.entry(key)?;
        if entry.role < Role::Agent {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the console is for admin and agent keys; a channel key cannot sign in",
            ));
        }
        Ok((entry.role, entry.name.clone(), d))
    }

    /// A session's caller, with the key it signed in with (its limits apply).
    fn by_session(
        &self,
        session: Session,
        customer: Option<String>,
    ) -> Result<(Caller, Option<&KeyEntry>), ApiError> {
        let caller = Caller {
            role: session.role,
            name: session.name,
            customer,
            signed_only: false,
        };
        Ok((caller, self.by_digest.get(&session.key)))
    }

    /// The caller, and its key's entry (none in keyless mode). A caller by session cookie must
    /// come from this server's pages, and a change (`changes`) must carry the CSRF token.
    fn resolve(
        &self,
        headers: &HeaderMap,
        changes: bool,
        sessions: &Sessions,
    ) -> Result<(Caller, Option<&KeyEntry>), ApiError> {
        let text = |name| header_text(headers, name);
        let customer = text(CUSTOMER_HEADER).map(str::to_string);
        if let Some(c) = &customer {
            validate_id(CUSTOMER_HEADER, c)?;
        }
        if !self.enabled() {
            local_only(headers)?;
            let caller = Caller {
                role: Role::Admin,
                name: "anonymous".into(),
                customer,
                signed_only: false,
            };
            return Ok((caller, None));
        }
        let unauthorized = |m: &str| ApiError::new(ErrorCode::Unauthorized, m);
        let Some(h) = text(header::AUTHORIZATION.as_str()) else {
            return match session_cookie(headers) {
                Some(id) => {
                    same_origin(headers)?;
                    let session = sessions.get(id)?;
                    if changes {
                        // The cookie rides along on its own; the token only the page has.
                        session.check_csrf(headers)?;
                    }
                    self.by_session(session, customer)
                }
                None => Err(unauthorized(
                    "missing API key: send `Authorization: Bearer <key>`",
                )),
            };
        };
        let key = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
        let (entry, _) = self.entry(key)?;
        if let (Some(mac), Some(c)) = (&entry.identity, &customer) {
            let signature = text(SIGNATURE_HEADER).and_then(|s| hex::decode(s.trim()).ok());
            let mut mac = mac.clone();
            mac.update(c.as_bytes());
            // verify_slice compares in constant time.
            if signature.is_none_or(|sig| mac.verify_slice(&sig).is_err()) {
                return Err(unauthorized(&format!(
                    "{SIGNATURE_HEADER} is missing or is not the signature of {CUSTOMER_HEADER}"
                )));
            }
        }
        let caller = Caller {
            role: entry.role,
            name: entry.name.clone(),
            customer,
            signed_only: entry.identity.is_some(),
        };
        Ok((caller, Some(entry)))
    }
}

/// A header's value, when it is text.
fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Without keys every caller is an admin, which is safe only for callers on this machine: the
/// server binds loopback, but a web page the operator opens could still reach it, either by
/// sending a form across origins (CSRF) or by pointing its own name at 127.0.0.1 (DNS
/// rebinding). Both show in the headers: a Host that is not a loopback name, an Origin of
/// another site.
pub(super) fn local_only(headers: &HeaderMap) -> Result<(), ApiError> {
    fn loopback(host: &str) -> bool {
        // host[:port], [v6][:port]
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost"
            || name.ends_with(".localhost")
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
    let refuse = |what: &str| {
        ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{what}: without API keys kefu serves only callers on this machine; configure \
                 keys (KEFU_API_KEYS) to serve others"
            ),
        )
    };
    let text = |name| header_text(headers, name);
    if let Some(host) = text(header::HOST)
        && !loopback(host)
    {
        return Err(refuse(&format!("the Host {host:?} is not this machine")));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !loopback(host.split('/').next().unwrap_or("")) {
            return Err(refuse(&format!(
                "a page of {origin:?} may not call this server"
            )));
        }
    }
    Ok(())
}

/// Resolves the caller of every `/v1` request, or answers 401.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let resolved = state
        .keys
        .resolve(req.headers(), !req.method().is_safe(), &state.sessions);
    let (caller, entry) = match resolved {
        Ok(resolved) => resolved,
        Err(e) => return e.into_response(),
    };
    if let Err(refusal) = state.keys.admit(&caller, entry) {
        let (wait, what) = match refusal {
            Refusal::Rate(w) => (w, "more than limits.rate_per_minute requests"),
            Refusal::Quota(w) => (w, "its requests_per_day"),
        };
        let secs = wait.as_secs() + 1;
        return rate_limited(secs, format!("this key sent {what}; retry after {secs} s"));
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
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

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "kefu_session";
/// Sign-in attempts per minute, all callers together.
pub const SIGN_INS_PER_MINUTE: u32 = 30;
/// The header that carries a session's CSRF token on every change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session id in the request's cookies, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// A request carrying the session cookie comes from the console's own pages: a browser names
/// the page's origin on every cross-origin request (and on WebSocket handshakes, which no CSRF
/// header protects), and it must be this server. SameSite=Strict already keeps the cookie off
/// other sites' requests; this holds where a browser's SameSite does not.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = header_text(headers, header::ORIGIN) else {
        return Ok(());
    };
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    // Behind a proxy that rewrites Host, the name the browser used is in X-Forwarded-Host.
    let served_as = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|h| header_text(headers, h));
    if served_as
        .flat_map(|h| h.split(','))
        .any(|h| h.trim().eq_ignore_ascii_case(origin_host))
    {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!("a page of {origin:?} may not use the console's session"),
    ))
}

/// A signed-in console user.
#[derive(Clone)]
pub struct Session {
    pub role: Role,
    pub name: String,
    /// sha256 of the key it signed in with.
    key: [u8; 32],
    pub csrf_token: String,
    expires: Instant,
}

/// Console sessions, in memory: a restart signs everyone out, which for a few admins is a
/// small cost next to keeping session secrets out of the data directory. Ids and tokens are
/// 256 random bits; the table holds ids by digest, like keys.
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
    /// Sign-in attempts across all callers: guessing keys through the sign-in form goes no
    /// faster than this, whatever the key's length. (A crowd of guesses can delay a real
    /// sign-in by a minute; signed-in sessions and API keys are not affected.)
    sign_ins: governor::DefaultDirectRateLimiter,
    lifetime: Duration,
    /// Beyond this many live sessions the oldest go first, so sign-ins cannot grow memory.
    max: usize,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source is readable");
    hex::encode(bytes)
}

impl Sessions {
    pub fn new(lifetime: Duration, max: usize) -> Self {
        Sessions {
            by_digest: Mutex::new(HashMap::new()),
            sign_ins: governor::RateLimiter::direct(governor::Quota::per_minute(
                std::num::NonZeroU32::new(SIGN_INS_PER_MINUTE).expect("not zero"),
            )),
            lifetime,
            max: max.max(1),
        }
    }

    /// Whether one more sign-in may be tried now; how many seconds to wait if not.
    pub fn admit_sign_in(&self) -> Result<(), u64> {
        use governor::clock::{Clock, DefaultClock};
        self.sign_ins.check().map_err(|until| {
            until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                + 1
        })
    }

    /// A new session for a staff key: its id (the cookie's value) and the session.
    pub fn open(&self, role: Role, name: String, key: [u8; 32]) -> (String, Session) {
        let id = random_token();
        let session = Session {
            role,
            name,
            key,
            csrf_token: random_token(),
            expires: Instant::now() + self.lifetime,
        };
        let mut map = self.by_digest.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        while map.len() >= self.max {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(d, _)| *d) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The live session with this id, or 401.
    pub fn get(&self, id: &str) -> Result<Session, ApiError> {
        let mut map = self.by_digest.lock();
        let d = digest(id);
        match map.get(&d) {
            Some(s) if s.expires > Instant::now() => Ok(s.clone()),
            Some(_) => {
                map.remove(&d);
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "the console session has expired: sign in again",
                ))
            }
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "no such console session (signed out, or the server restarted): sign in again",
            )),
        }
    }

    /// How long a sign-in lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Ends the session with this id.
    pub fn close(&self, id: &str) {
        self.by_digest.lock().remove(&digest(id));
    }
}

impl Session {
    /// Refuses a change made with this session's cookie but without its CSRF token.
    pub fn check_csrf(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let sent = header_text(headers, CSRF_HEADER).unwrap_or("");
        // Compared as digests: equal digests only for equal tokens, and no early exit on the
        // token's own bytes.
        if digest(sent) != digest(&self.csrf_token) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "a change made with the console's session needs its CSRF token in {CSRF_HEADER}"
                ),
            ));
        }
        Ok(())
    }
}

/// 429 with Retry-After: a caller over a limit, and when to try again.
pub(super) fn rate_limited(secs: u64, message: String) -> Response {
    let mut res = ApiError::new(ErrorCode::RateLimited, message).into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; kefu_session=abc; b=2")]);
        assert_eq!(session_cookie(&h), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "kefu_session=def")]);
        assert_eq!(session_cookie(&h), Some("def"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "xkefu_session=1")])),
            None
        );
    }

    #[test]
    fn a_session_is_used_only_from_this_servers_pages() {
        let h = |pairs: &[(&'static str, &str)]| same_origin(&headers(pairs)).is_ok();
        assert!(
            h(&[("host", "127.0.0.1:8080")]),
            "no Origin: same-origin GET"
        );
        assert!(h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example")
        ]));
        assert!(h(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "support.example.com"),
            ("origin", "https://support.example.com")
        ]));
    }

    #[test]
    fn sessions_check_the_token_expire_and_stay_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let (id, _) = s.open(Role::Admin, "a".into(), [0; 32]);
        let with = |token: &str| {
            headers(&[
                ("cookie", &format!("{SESSION_COOKIE}={id}")),
                (CSRF_HEADER, token),
            ])
        };
        let session = s.get(&id).unwrap();
        assert!(session.check_csrf(&with(&session.csrf_token)).is_ok());
        assert!(session.check_csrf(&with("wrong")).is_err());
        assert!(session.check_csrf(&with("")).is_err());
        // The third session pushes out the oldest.
        s.open(Role::Agent, "b".into(), [1; 32]);
        s.open(Role::Agent, "c".into(), [2; 32]);
        assert!(s.get(&id).is_err());
        let gone = Sessions::new(Duration::ZERO, 10);
        let (id, _) = gone.open(Role::Admin, "a".into(), [0; 32]);
        assert!(gone.get(&id).is_err(), "an expired session is refused");
        s.close("no-such-id");
    }
}

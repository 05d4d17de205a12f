//! The browser console (README "The console"): its files, built into the binary so that the one
//! binary is the whole deployment, and sign-in. The page calls the same `/v1` API as every other
//! client; signing in trades a staff key for a session cookie, so the key does not stay in the
//! page (see [`super::auth::Sessions`]).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{self, SESSION_COOKIE, Session};
use super::error::{ApiError, ApiJson, ApiResult};
use crate::config::Role;
use crate::error::ErrorCode;

/// name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "i18n.json",
        "application/json",
        include_str!("../../console/i18n.json"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../console/app.css"),
    ),
];

/// The page loads only its own files and talks only to this server; no other site may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn file(name: &str) -> Option<Response> {
    let (_, kind, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    let mut res = (*body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary; a new kefu must not run an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(res)
}

/// `/console`: the page's address has a slash, so its files resolve under it.
pub async fn root() -> Redirect {
    Redirect::permanent("/console/")
}

pub async fn page() -> Response {
    file("index.html").expect("index.html is built in")
}

pub async fn asset(Path(name): Path<String>) -> ApiResult<Response> {
    file(&name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("the console has no file {name:?}"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    key: String,
}

/// Who is signed in, and the token the page sends with every change.
#[derive(Debug, Serialize)]
pub struct SessionView {
    role: Role,
    name: String,
    csrf_token: String,
    /// No keys are configured: every caller on this machine is an admin, no sign-in needed.
    keyless: bool,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        SessionView {
            role: s.role,
            name: s.name,
            csrf_token: s.csrf_token,
            keyless: false,
        }
    }
}

fn keyless(s: &AppState, headers: &HeaderMap) -> ApiResult<Option<SessionView>> {
    if s.keys.enabled() {
        return Ok(None);
    }
    auth::local_only(headers)?;
    Ok(Some(SessionView {
        role: Role::Admin,
        name: "anonymous".into(),
        csrf_token: String::new(),
        keyless: true,
    }))
}

/// `GET /console/session`: the session the cookie names, or 401 (the page then asks for a key).
pub async fn current(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(view) = keyless(&s, &headers)? {
        return Ok(Json(view).into_response());
    }
    let (_, session) = signed_in(&s, &headers)?;
    Ok(Json(SessionView::from(session)).into_response())
}

/// The session the request's cookie names, with its id.
fn signed_in<'h>(s: &AppState, headers: &'h HeaderMap) -> ApiResult<(&'h str, Session)> {
    let id = auth::session_cookie(headers)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "not signed in"))?;
    Ok((id, s.sessions.get(id)?))
}

/// The session cookie; `Secure` whenever the page was reached over TLS (kefu behind a TLS
/// proxy says so in X-Forwarded-Proto): on plain http://localhost a browser drops a Secure one.
fn cookie(headers: &HeaderMap, value: &str, max_age: Duration) -> HeaderValue {
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if tls { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).expect("a hex id and digits make a valid header")
}

/// `POST /console/session {key}`: signs in with an admin or agent key.
pub async fn sign_in(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SignIn>,
) -> ApiResult<Response> {
    if let Some(view) = keyless(&s, &headers)? {
        return Ok(Json(view).into_response());
    }
    if let Err(secs) = s.sessions.admit_sign_in() {
        let limit = auth::SIGN_INS_PER_MINUTE;
        return Ok(auth::rate_limited(
            secs,
            format!("more than {limit} sign-ins a minute; retry after {secs} s"),
        ));
    }
    let (role, name, key) = s.keys.staff(&b.key)?;
    let (id, session) = s.sessions.open(role, name, key);
    let mut res = (StatusCode::CREATED, Json(SessionView::from(session))).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&headers, &id, s.sessions.lifetime()),
    );
    Ok(res)
}

/// `DELETE /console/session`: signs out (with the CSRF token, like every change).
pub async fn sign_out(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let (id, session) = signed_in(&s, &headers)?;
    session.check_csrf(&headers)?;
    s.sessions.close(id);
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie(&headers, "", Duration::ZERO));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::FILES;

    fn text(name: &str) -> &'static str {
        FILES.iter().find(|(n, _, _)| *n == name).unwrap().2
    }

    /// Every string the page shows has both languages: a key the script or the page names is in
    /// both tables, with text, and the tables have the same keys.
    #[test]
    fn every_string_is_translated() {
        let tables: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_str(text("i18n.json")).unwrap();
        let (en, zh) = (&tables["en"], &tables["zh"]);
        assert_eq!(
            en.keys().collect::<Vec<_>>(),
            zh.keys().collect::<Vec<_>>(),
            "en and zh have other keys"
        );
        for (k, v) in en.iter().chain(zh) {
            assert!(!v.trim().is_empty(), "{k} is empty");
        }
        let used = regex::Regex::new(
            r#"(?:\bt|field|page)\("([a-z_.]+)"|key: "([a-z_.]+)"|data-i18n="([a-z_.]+)""#,
        )
        .unwrap();
        let mut n = 0;
        for file in ["app.js", "index.html"] {
            for c in used.captures_iter(text(file)) {
                let key = c.iter().skip(1).flatten().next().unwrap().as_str();
                assert!(en.contains_key(key), "{file} uses {key}, which has no text");
                n += 1;
            }
        }
        assert!(
            n > 150,
            "only {n} strings found: the pattern no longer matches the script"
        );
        // Keys the script builds from a value (`t(`report.${name}`)` and the like).
        let built = [
            ("editor.done.", &["submit", "publish", "archive"][..]),
            ("granularity.", &["hour", "day", "week"]),
            (
                "report.",
                &[
                    "volume",
                    "deflection",
                    "handoffs",
                    "satisfaction",
                    "sentiment",
                    "topics",
                    "gaps",
                ],
            ),
            (
                "health.",
                &["store", "embedder", "generator", "asr", "index"],
            ),
            ("editor.", &["new", "heading"]),
        ];
        for (prefix, values) in built {
            for v in values {
                assert!(en.contains_key(&format!("{prefix}{v}")), "{prefix}{v}");
            }
        }
        // Chinese text is Chinese, not the English left in place.
        let same = en.iter().filter(|(k, v)| zh[*k] == **v).count();
        assert!(same * 20 < en.len(), "{same} strings are the same in both");
    }
}

//! Auth, malformed input, and the operator endpoints.

mod common;

use common::{ADMIN, AGENT, CHANNEL, Server, error_code, kefu, multipart_file, parts, raw_request};
use serde_json::{Value, json};

#[test]
fn keys_and_roles() {
    let s = Server::start();
    let (st, r) = parts(s.req("GET", "/v1/cards", None).send().unwrap());
    assert_eq!((st, error_code(&r).as_str()), (401, "unauthorized"));
    let (st, r) = s.call_as("not-a-key-at-all", "GET", "/v1/cards", None);
    assert_eq!((st, error_code(&r).as_str()), (401, "unauthorized"));
    for key in [CHANNEL, AGENT] {
        let (st, r) = s.call_as(
            key,
            "POST",
            "/v1/cards",
            Some(json!({ "title": "t", "body": "b" })),
        );
        assert_eq!((st, error_code(&r).as_str()), (403, "forbidden"), "{r}");
        let (st, _) = s.call_as(key, "GET", "/v1/cards", None);
        assert_eq!(st, 403);
        let (st, _) = s.call_as(key, "GET", "/v1/audit", None);
        assert_eq!(st, 403);
    }
    let (st, r) = s.call_as(CHANNEL, "POST", "/v1/search", Some(json!({ "query": "x" })));
    assert_eq!((st, error_code(&r).as_str()), (403, "forbidden"));
    let (st, _) = s.call_as(ADMIN, "GET", "/v1/cards", None);
    assert_eq!(st, 200);
    // Nothing a refused caller sent was stored.
    let (_, r) = s.call("GET", "/v1/cards", None);
    assert_eq!(r["total"], 0);
}

#[test]
fn refuses_to_listen_openly_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("KEFU_API_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without API keys") && err.contains("KEFU_API_KEYS"),
        "{err}"
    );
}

/// The least role each route needs: `None` for the operator endpoints anyone may read.
const LEAST_ROLE: &[(&str, &str, Option<&str>)] = &[
    ("/v1/cards", "post", Some("admin")),
    ("/v1/cards", "get", Some("admin")),
    ("/v1/cards/import", "post", Some("admin")),
    ("/v1/cards/{id}", "get", Some("admin")),
    ("/v1/cards/{id}", "patch", Some("admin")),
    ("/v1/cards/{id}/versions", "get", Some("admin")),
    ("/v1/cards/{id}/diff", "get", Some("admin")),
    ("/v1/cards/check", "post", Some("admin")),
    ("/v1/conversations", "get", Some("agent")),
    ("/v1/cards/{id}/submit", "post", Some("admin")),
    ("/v1/cards/{id}/publish", "post", Some("admin")),
    ("/v1/cards/{id}/archive", "post", Some("admin")),
    ("/v1/cards/{id}/evidence", "get", Some("admin")),
    ("/v1/jobs", "get", Some("admin")),
    ("/v1/cards/{id}/record", "get", Some("admin")),
    ("/v1/review", "get", Some("admin")),
    ("/v1/analytics/{report}", "get", Some("admin")),
    ("/v1/gaps/draft", "post", Some("admin")),
    ("/v1/audit", "get", Some("admin")),
    ("/v1/index/status", "get", Some("admin")),
    ("/v1/prompts/reload", "post", Some("admin")),
    ("/v1/search", "post", Some("agent")),
    ("/v1/rerank", "post", Some("agent")),
    ("/v1/assist/suggest", "post", Some("agent")),
    ("/v1/conversations/{id}/handoff", "get", Some("agent")),
    ("/v1/sentiment", "post", Some("channel")),
    ("/v1/signals", "post", Some("channel")),
    ("/v1/intents", "get", Some("agent")),
    ("/v1/intents", "post", Some("admin")),
    ("/v1/intents/{name}", "delete", Some("admin")),
    ("/v1/route", "post", Some("agent")),
    ("/v1/conversations/{id}", "get", Some("channel")),
    ("/v1/conversations/{id}/turns", "post", Some("channel")),
    ("/v1/conversations/{id}/resolve", "post", Some("channel")),
    ("/v1/customers/{id}", "get", Some("channel")),
    ("/v1/customers/{id}", "delete", Some("admin")),
    ("/v1/customers/{id}/export", "get", Some("admin")),
    ("/v1/answer", "post", Some("channel")),
    ("/v1/answers/{id}/feedback", "post", Some("channel")),
    ("/v1/chat/completions", "post", Some("channel")),
    ("/v1/embeddings", "post", Some("channel")),
    ("/v1/models", "get", Some("channel")),
    ("/v1/audio/transcriptions", "post", Some("channel")),
    ("/v1/voice/stream", "get", Some("channel")),
    ("/healthz", "get", None),
    ("/readyz", "get", None),
    ("/metrics", "get", None),
    ("/openapi.json", "get", None),
];

/// Every route the OpenAPI document lists, called with no key, an unknown key and each role's
/// key: 401 without a valid key, 403 below the route's least role, and past auth at or above it.
/// Then the same routes on a server without keys, where every local caller gets past auth. A
/// route added without an entry in [`LEAST_ROLE`] fails here.
#[test]
fn every_route_answers_each_role_as_documented() {
    let s = Server::start();
    let (_, doc) = parts(s.req("GET", "/openapi.json", None).send().unwrap());
    let rank = |r: &str| {
        ["channel", "agent", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    let mut ops = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let least = LEAST_ROLE
                .iter()
                .find(|(p, m, _)| p == path && m == method)
                .unwrap_or_else(|| panic!("{method} {path}: add it to LEAST_ROLE"))
                .2;
            let path = path
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{report}", "volume");
            ops.push((path, method.to_uppercase(), least));
        }
    }
    assert_eq!(
        ops.len(),
        LEAST_ROLE.len(),
        "LEAST_ROLE lists a route the document does not"
    );
    let call = |s: &Server, method: &str, path: &str, key: Option<&str>| {
        let mut r = s.req(method, path, key);
        if method != "GET" {
            r = r.json(&json!({}));
        }
        parts(r.send().unwrap()).0
    };
    let mut checked = 0;
    for (path, method, least) in &ops {
        let Some(least) = least else {
            assert_eq!(call(&s, method, path, None), 200, "{method} {path}");
            continue;
        };
        for key in [None, Some("not-a-key-at-all")] {
            assert_eq!(
                call(&s, method, path, key),
                401,
                "{method} {path} with {key:?}"
            );
        }
        for (role, key) in [("channel", CHANNEL), ("agent", AGENT), ("admin", ADMIN)] {
            let st = call(&s, method, path, Some(key));
            if rank(role) < rank(least) {
                assert_eq!(st, 403, "{method} {path} as {role}");
            } else {
                assert!(st != 401 && st != 403, "{method} {path} as {role}: {st}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 3 * 28, "{checked}");

    let open = Server::start_with(&[]);
    for (path, method, _) in &ops {
        let st = call(&open, method, path, None);
        assert!(st != 401 && st != 403, "keyless {method} {path}: {st}");
    }
}

/// Without keys every caller is an admin: only callers on this machine may be, not a web page
/// that rebinds its name to 127.0.0.1 or posts a form across origins (issue 16, finding 8).
#[test]
fn keyless_mode_serves_only_this_machine() {
    let s = Server::start_with(&[]);
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let with = |name: &str, value: &str| {
        parts(
            s.req("GET", "/v1/cards", None)
                .header(name, value)
                .send()
                .unwrap(),
        )
    };
    for (name, value) in [
        ("host", format!("evil.example:{port}")),
        ("host", "rebind.attacker.test".to_string()),
        ("origin", "http://evil.example".to_string()),
        ("origin", "null".to_string()),
    ] {
        let (st, e) = with(name, &value);
        assert_eq!(
            (st, error_code(&e).as_str()),
            (403, "forbidden"),
            "{name}: {value}: {e}"
        );
    }
    for (name, value) in [
        ("host", format!("localhost:{port}")),
        ("host", format!("127.0.0.1:{port}")),
        ("host", format!("[::1]:{port}")),
        ("origin", "http://localhost:3000".to_string()),
    ] {
        let (st, e) = with(name, &value);
        assert_eq!(st, 200, "{name}: {value}: {e}");
    }
    // A form posted across origins stores nothing.
    let (content_type, body) = multipart_file(
        "a",
        "cards.jsonl",
        br#"{"title": "Free money", "body": "Send your card number to win"}"#,
    );
    let (st, _, _) = raw_request(
        &s.base,
        "POST",
        "/v1/cards/import",
        &[
            ("content-type", &content_type),
            ("origin", "https://evil.example"),
        ],
        &body,
    );
    assert_eq!(st, 403);
    assert_eq!(s.call("GET", "/v1/cards", None).1["total"], 0);
}

#[test]
fn malformed_input_gets_a_clear_4xx_and_stores_nothing() {
    let s = Server::start_with(&[
        ("KEFU_API_KEYS", &format!("admin:{ADMIN}")),
        ("KEFU_MAX_BODY_BYTES", "4096"),
        ("KEFU_MAX_CARD_BYTES", "1000"),
    ]);
    let raw = |body: Vec<u8>, ctype: &str| {
        parts(
            s.req("POST", "/v1/cards", Some(ADMIN))
                .header("content-type", ctype)
                .body(body)
                .send()
                .unwrap(),
        )
    };
    let cases: Vec<(u16, &str, (u16, serde_json::Value))> = vec![
        (
            400,
            "invalid_json",
            raw(b"{\"title\": \"a\", ".to_vec(), "application/json"),
        ),
        (
            400,
            "invalid_json",
            raw(
                b"{\"title\": \"\xff\xfe\", \"body\": \"b\"}".to_vec(),
                "application/json",
            ),
        ),
        (
            415,
            "unsupported_media_type",
            raw(b"title=a".to_vec(), "application/x-www-form-urlencoded"),
        ),
        (
            413,
            "payload_too_large",
            raw(
                format!("{{\"title\":\"a\",\"body\":\"{}\"}}", "x".repeat(5000)).into_bytes(),
                "application/json",
            ),
        ),
        (
            422,
            "invalid_request",
            s.call(
                "POST",
                "/v1/cards",
                Some(json!({ "title": "a", "body": "b", "colour": "red" })),
            ),
        ),
        (
            422,
            "invalid_request",
            s.call("POST", "/v1/cards", Some(json!({ "title": "a" }))),
        ),
        (
            422,
            "invalid_request",
            s.call(
                "POST",
                "/v1/cards",
                Some(json!({ "title": 5, "body": "b" })),
            ),
        ),
        (
            422,
            "invalid_card",
            s.call(
                "POST",
                "/v1/cards",
                Some(json!({ "title": "   ", "body": "b" })),
            ),
        ),
        (
            422,
            "invalid_card",
            s.call(
                "POST",
                "/v1/cards",
                Some(json!({ "title": "a", "body": "b", "channels": ["fax"] })),
            ),
        ),
        (
            422,
            "card_too_large",
            s.call(
                "POST",
                "/v1/cards",
                Some(json!({ "title": "a", "body": "y".repeat(1500) })),
            ),
        ),
        (
            404,
            "not_found",
            s.call("GET", "/v1/cards/does-not-exist", None),
        ),
        (
            404,
            "not_found",
            s.call("POST", "/v1/cards/does-not-exist/publish", None),
        ),
        (404, "not_found", s.call("GET", "/v1/nothing-here", None)),
        (
            405,
            "method_not_allowed",
            s.call("DELETE", "/v1/cards", None),
        ),
        (
            400,
            "invalid_query",
            s.call("GET", "/v1/cards?limit=lots", None),
        ),
        (
            422,
            "invalid_request",
            s.call("PATCH", "/v1/cards/x", Some(json!({}))),
        ),
    ];
    for (want_status, want_code, (status, body)) in cases {
        assert_eq!(
            (status, error_code(&body).as_str()),
            (want_status, want_code),
            "{body}"
        );
    }
    let (_, r) = s.call("GET", "/v1/cards", None);
    assert_eq!(r["total"], 0, "no malformed request stored anything");
    // And the server is still fine.
    s.create(
        "Still alive",
        "The server answers after all of that.",
        json!({}),
    );
}

#[test]
fn ops_endpoints() {
    let s = Server::start();
    let (st, r) = parts(s.req("GET", "/healthz", None).send().unwrap());
    assert_eq!((st, r["status"].as_str()), (200, Some("ok")));
    let (st, r) = parts(s.req("GET", "/readyz", None).send().unwrap());
    assert_eq!((st, r["ready"].as_bool()), (200, Some(true)), "{r}");
    let id = s.card("Metrics card", "Counting requests.", json!({}));
    s.search("counting", json!({}));
    // Any token is a method in HTTP: made-up ones share one label instead of a series each.
    for m in ["PURGE", "BREW", "XYZZY"] {
        let res = s.req(m, "/healthz", None).send().unwrap();
        assert_eq!(res.status(), 405, "{m}");
    }
    let (st, text) = parts(s.req("GET", "/metrics", None).send().unwrap());
    let text = text.as_str().unwrap().to_string();
    assert_eq!(st, 200);
    assert!(text.contains(r#"kefu_http_requests_total{method="POST",route="/v1/cards/{id}/publish",status="200"} 1"#), "{text}");
    assert!(text.contains("kefu_http_request_duration_seconds_bucket"));
    assert!(text.contains("kefu_model_queue_depth{model=\"e5-small\",role=\"embedder\"} 0"));
    assert!(text.contains("kefu_model_inference_seconds_total"));
    assert!(text.contains("kefu_cards{status=\"published\"} 1"));
    assert!(!text.contains(&id), "ids must not become labels");
    assert!(
        text.contains(
            r#"kefu_http_requests_total{method="other",route="/healthz",status="405"} 3"#
        ),
        "{text}"
    );
    assert!(!text.contains("XYZZY"), "{text}");
    let (st, doc) = parts(s.req("GET", "/openapi.json", None).send().unwrap());
    assert_eq!(st, 200);
    for path in [
        "/v1/cards",
        "/v1/cards/{id}",
        "/v1/cards/{id}/publish",
        "/v1/cards/import",
        "/v1/search",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// `/v1/embeddings` with the admin key: status, Retry-After, body.
fn embed_as_admin(s: &Server, texts: &[String]) -> (u16, Option<String>, Value) {
    let res = s
        .req("POST", "/v1/embeddings", Some(ADMIN))
        .json(&json!({ "model": "e5-small", "input": texts }))
        .send()
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (st, body) = parts(res);
    (st, retry, body)
}

/// `n` passages of about 150 tokens: seconds of embedding work on two cores.
fn long_passages(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "Passage {i}: {}",
                "the router restarts when the power light blinks. ".repeat(15)
            )
        })
        .collect()
}

#[test]
fn a_full_model_queue_answers_503_with_retry_after() {
    // Room for 2 batches of 8 texts. The queue counts texts, not requests: while one long
    // request is embedded, one of 16 texts waits and fills it, and the next is refused at once,
    // although only one request waits (counting requests, a queue of 2 would take it).
    let s = Server::start_with(&[
        ("KEFU_API_KEYS", &format!("admin:{ADMIN}")),
        ("KEFU_EMBED_QUEUE", "2"),
        ("KEFU__LIMITS__EMBED_BATCH", "8"),
        // The count alone: the time bound is the next test's.
        ("KEFU__LIMITS__MAX_QUEUE_WAIT_MS", "600000"),
    ]);
    let embed = |texts: Vec<String>| embed_as_admin(&s, &texts);
    let long = long_passages(32);
    let sixteen: Vec<String> = (0..16).map(|i| format!("question {i}")).collect();
    std::thread::scope(|scope| {
        // Seconds of work on two cores (32 passages of 150 tokens); the other two requests are
        // sent well inside them.
        let running = scope.spawn(|| embed(long.clone()));
        std::thread::sleep(std::time::Duration::from_millis(700));
        let waiting = scope.spawn(|| embed(sixteen.clone()));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (st, retry, body) = embed(sixteen.clone());
        assert_eq!((st, retry.as_deref()), (503, Some("1")), "{body}");
        assert_eq!(error_code(&body), "overloaded");
        assert_eq!(running.join().unwrap().0, 200);
        assert_eq!(waiting.join().unwrap().0, 200);
    });
    // After the burst the service is healthy again.
    assert_eq!(embed(sixteen).0, 200);
}

/// A queue short in count but long in time refuses too: with `max_queue_wait_ms` at 200, a
/// request that the recent rate says would wait longer is refused at once (although the queue
/// has room for thousands of texts), and one that did wait longer is refused when its turn
/// comes instead of answered late.
#[test]
fn a_request_that_would_wait_too_long_answers_503_at_once() {
    let s = Server::start_with(&[
        ("KEFU_API_KEYS", &format!("admin:{ADMIN}")),
        ("KEFU__LIMITS__MAX_QUEUE_WAIT_MS", "200"),
    ]);
    let embed = |texts: &[String]| embed_as_admin(&s, texts);
    let passages = long_passages;
    // The worker learns its rate on passages like these.
    assert_eq!(embed(&passages(8)).0, 200);
    std::thread::scope(|scope| {
        let running = scope.spawn(|| embed(&passages(32)));
        std::thread::sleep(std::time::Duration::from_millis(700));
        // Nothing waits yet: admitted, and then waits for the 32 passages, past 200 ms.
        let waiting = scope.spawn(|| embed(&passages(16)));
        std::thread::sleep(std::time::Duration::from_millis(300));
        // 16 long passages wait ahead: seconds at the learnt rate.
        let (st, retry, body) = embed(&passages(1));
        assert_eq!((st, retry.as_deref()), (503, Some("1")), "{body}");
        assert_eq!(error_code(&body), "overloaded");
        assert_eq!(running.join().unwrap().0, 200);
        let (st, retry, body) = waiting.join().unwrap();
        assert_eq!((st, retry.as_deref()), (503, Some("1")), "{body}");
    });
    assert_eq!(embed(&passages(1)).0, 200);
}

/// The served document is valid OpenAPI (checked by openapi-spec-validator, what client
/// generators rely on), describes every route the router serves, the voice WebSocket included,
/// and lists the error codes.
#[test]
fn the_openapi_document_validates_and_describes_every_route() {
    let s = Server::start_with(&[("KEFU_GENERATOR", "none"), ("KEFU_ASR", "none")]);
    let (st, doc) = parts(s.req("GET", "/openapi.json", None).send().unwrap());
    assert_eq!(st, 200);
    let routes = [
        ("/v1/cards", &["post", "get"][..]),
        ("/v1/cards/import", &["post"]),
        ("/v1/cards/{id}", &["get", "patch"]),
        ("/v1/cards/{id}/versions", &["get"]),
        ("/v1/cards/{id}/submit", &["post"]),
        ("/v1/cards/{id}/publish", &["post"]),
        ("/v1/cards/{id}/archive", &["post"]),
        ("/v1/audit", &["get"]),
        ("/v1/index/status", &["get"]),
        ("/v1/search", &["post"]),
        ("/v1/sentiment", &["post"]),
        ("/v1/signals", &["post"]),
        ("/v1/intents", &["get", "post"]),
        ("/v1/intents/{name}", &["delete"]),
        ("/v1/route", &["post"]),
        ("/v1/conversations/{id}", &["get"]),
        ("/v1/conversations/{id}/turns", &["post"]),
        ("/v1/conversations/{id}/resolve", &["post"]),
        ("/v1/conversations/{id}/handoff", &["get"]),
        ("/v1/customers/{id}", &["get", "delete"]),
        ("/v1/customers/{id}/export", &["get"]),
        ("/v1/rerank", &["post"]),
        ("/v1/answer", &["post"]),
        ("/v1/assist/suggest", &["post"]),
        ("/v1/answers/{id}/feedback", &["post"]),
        ("/v1/prompts/reload", &["post"]),
        ("/v1/chat/completions", &["post"]),
        ("/v1/embeddings", &["post"]),
        ("/v1/models", &["get"]),
        ("/v1/audio/transcriptions", &["post"]),
        ("/v1/voice/stream", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/v1/jobs", &["get"]),
        ("/v1/cards/{id}/evidence", &["get"]),
        ("/v1/cards/{id}/record", &["get"]),
        ("/v1/review", &["get"]),
        ("/v1/analytics/{report}", &["get"]),
        ("/v1/gaps/draft", &["post"]),
        ("/v1/cards/{id}/diff", &["get"]),
        ("/v1/cards/check", &["post"]),
        ("/v1/conversations", &["get"]),
    ];
    for (path, methods) in routes {
        for m in methods {
            let op = &doc["paths"][path][m];
            assert!(
                op.is_object(),
                "{m} {path} missing from the OpenAPI document"
            );
            for (status, r) in op["responses"].as_object().unwrap() {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{m} {path} {status} has no description"
                );
            }
        }
    }
    let documented = doc["paths"].as_object().unwrap().len();
    assert_eq!(
        documented,
        routes.len(),
        "a documented path the router does not serve"
    );
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the error codes are listed");
    for code in [
        "invalid_request",
        "not_found",
        "overloaded",
        "compliance_failed",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} not listed");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let mut cmd = std::process::Command::new("python3");
    cmd.args([
        "-c",
        "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
    ])
    .arg(&file);
    if let Some(p) = common::python_package(
        "openapi_spec_validator",
        "openapi-spec-validator==0.9.0",
        "pylib-openapi",
    ) {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each key has its own request budget per minute: past it, 429 with Retry-After, and other
/// keys are not affected (issue 16).
#[test]
fn a_key_past_its_rate_gets_429_with_retry_after() {
    let s = Server::start_with(&[
        (
            "KEFU_API_KEYS",
            &format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}"),
        ),
        ("KEFU__LIMITS__RATE_PER_MINUTE", "3"),
    ]);
    for _ in 0..3 {
        assert_eq!(s.call_as(CHANNEL, "GET", "/v1/models", None).0, 200);
    }
    let res = s.req("GET", "/v1/models", Some(CHANNEL)).send().unwrap();
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let (st, e) = parts(res);
    assert_eq!((st, error_code(&e).as_str()), (429, "rate_limited"), "{e}");
    assert_eq!(s.call_as(AGENT, "GET", "/v1/models", None).0, 200);
}

/// A key with `requests_per_day` may make that many requests, then gets 429 with a Retry-After
/// of the time until its quota refills (a day's share), while its per-minute rate is far from
/// spent; a key without a quota is not affected.
#[test]
fn a_key_past_its_daily_quota_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kefu.toml");
    std::fs::write(
        &file,
        format!(
            "[[auth.keys]]\nrole = \"admin\"\nkey = \"{ADMIN}\"\n\
             [[auth.keys]]\nname = \"trial\"\nrole = \"channel\"\nkey = \"{CHANNEL}\"\nrequests_per_day = 4\n"
        ),
    )
    .unwrap();
    let s = Server::start_with(&[("KEFU_CONFIG", file.to_str().unwrap())]);
    for _ in 0..4 {
        assert_eq!(s.call_as(CHANNEL, "GET", "/v1/models", None).0, 200);
    }
    let res = s.req("GET", "/v1/models", Some(CHANNEL)).send().unwrap();
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // One request's share of the day is 6 hours.
    assert!((6 * 3600 - 60..=6 * 3600 + 1).contains(&wait), "{wait}");
    let (st, e) = parts(res);
    assert_eq!((st, error_code(&e).as_str()), (429, "rate_limited"), "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requests_per_day"),
        "{e}"
    );
    for _ in 0..10 {
        assert_eq!(s.call_as(ADMIN, "GET", "/v1/models", None).0, 200);
    }
}

/// An error answered to a request with a body says `Connection: close`, so that a client does
/// not reuse a connection the server drops with the body unread; answers that succeed, and
/// errors to requests without a body, keep the connection.
#[test]
fn an_error_to_a_request_with_a_body_closes_the_connection() {
    let s = Server::start();
    let search = json!({"query": "delivery times"});
    // No key: refused before the body is read.
    let res = s
        .req("POST", "/v1/search", None)
        .json(&search)
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["connection"], "close");
    let res = s
        .req("POST", "/v1/search", Some(AGENT))
        .json(&search)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("connection").is_none_or(|v| v != "close"));
    let res = s
        .req("GET", "/v1/cards/nothing", Some(ADMIN))
        .send()
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("connection").is_none_or(|v| v != "close"));
}

//! What only an external vector backend has to get right, against a real Qdrant server (see
//! `common::backends`; skipped, and said so, when there is none): the same results as the
//! embedded index on the same cards, a clear start-up error for a collection made for another
//! embedding model, and no lost writes when Qdrant goes away and comes back.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const CARDS: [(&str, &str); 6] = [
    (
        "Reset your account password",
        "Open Settings > Account > Security and choose Forgot password. We e-mail a reset link that is valid for 30 minutes.",
    ),
    (
        "Refund timeline",
        "After we receive the returned item, the refund goes back to your original payment method within 7 to 10 working days.",
    ),
    (
        "Router factory reset",
        "Hold the RESET button of the RT-AX58U for 10 seconds until the power LED blinks.",
    ),
    (
        "退货政策",
        "自签收之日起七天内，商品未使用且包装完好，可以申请无理由退货。",
    ),
    (
        "Delivery times",
        "Standard delivery takes 3 to 5 working days; express delivery arrives the next working day.",
    ),
    (
        "发票开具",
        "订单完成后，可在“我的订单”中申请电子发票，一般一个工作日内发送到您的邮箱。",
    ),
];

const QUERIES: [&str; 6] = [
    "I forgot my password",
    "when will I get my money back",
    "how do I reset the router",
    "可以退货吗",
    "how long does shipping take",
    "怎么开发票",
];

fn qdrant() -> Option<QdrantServer> {
    qdrant_or_skip("this Qdrant test")
}

#[test]
fn qdrant_and_the_embedded_index_agree_on_the_same_cards() {
    let Some(q) = qdrant() else { return };
    let embedded = Backend::Embedded.start(&[]);
    let backend = Backend::Qdrant(q);
    let remote = backend.start(&[]);
    for (t, b) in CARDS {
        embedded.card(t, b, json!({}));
        remote.card(t, b, json!({}));
    }
    for query in QUERIES {
        let a: Vec<_> = embedded
            .search(query, json!({"top_k": 3}))
            .iter()
            .map(|h| (h["title"].clone(), h["score"].as_f64().unwrap()))
            .collect();
        let b: Vec<_> = remote
            .search(query, json!({"top_k": 3}))
            .iter()
            .map(|h| (h["title"].clone(), h["score"].as_f64().unwrap()))
            .collect();
        assert_eq!(a.len(), b.len(), "{query}: {a:?} vs {b:?}");
        for ((ta, sa), (tb, sb)) in a.iter().zip(&b) {
            assert_eq!(ta, tb, "{query}: {a:?} vs {b:?}");
            assert!((sa - sb).abs() < 1e-4, "{query}: {a:?} vs {b:?}");
        }
    }
    let (_, st) = remote.call("GET", "/v1/index/status", None);
    assert_eq!(st["backend"], "qdrant");
    assert_eq!(st["consistent"], true, "{st}");
    assert_eq!(st["indexed_cards"], 6, "{st}");
}

#[test]
fn a_collection_made_for_another_model_stops_the_start_with_a_clear_error() {
    let Some(q) = qdrant() else { return };
    let name = "made_for_another_model";
    let res = reqwest::blocking::Client::new()
        .put(format!("{}/collections/{name}", q.http))
        .json(&json!({"vectors": {"size": 8, "distance": "Cosine"}}))
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{:?}", res.text());
    let dir = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("KEFU_GENERATOR", "none")
        .env("KEFU_SENTIMENT", "none")
        .env("KEFU_VECTOR_BACKEND", "qdrant")
        .env("KEFU_VECTOR_URL", &q.grpc)
        .env("KEFU_VECTOR_COLLECTION", name)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("8-dimensional") && err.contains("another embedding model"),
        "{err}"
    );
}

#[test]
fn qdrant_down_fails_fast_keeps_writes_and_catches_up_when_back() {
    let Some(mut q) = qdrant() else { return };
    if !q.is_local() {
        eprintln!("SKIPPED: the outage test stops and restarts Qdrant, which needs a local binary");
        return;
    }
    let env = Backend::Qdrant(QdrantServer::placeholder(&q)).env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let keys = format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}");
    let mut all = env.clone();
    all.push(("KEFU_API_KEYS", &keys));
    let s = Server::start_with(&all);
    let first = s.card(CARDS[0].0, CARDS[0].1, json!({}));
    assert_eq!(s.top("I forgot my password"), Some(first.clone()));

    q.stop();
    // Retrieval fails fast with a clear 503, and readiness says why.
    let started = Instant::now();
    let (status, e) = s.call_as(
        AGENT,
        "POST",
        "/v1/search",
        Some(json!({"query": "password"})),
    );
    assert_eq!(status, 503, "{e}");
    assert_eq!(error_code(&e), "unavailable");
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, _) = s.call_as(
        AGENT,
        "POST",
        "/v1/search",
        Some(json!({"query": "refund"})),
    );
    assert_eq!(status, 503);
    let (status, r) = s.call("GET", "/readyz", None);
    assert_eq!(status, 503, "{r}");
    assert!(r["index"].as_str().unwrap().contains("127.0.0.1"), "{r}");
    // Writes go on: SQLite is the source of truth.
    let second = s.card(CARDS[1].0, CARDS[1].1, json!({}));
    let (status, _) = s.call("POST", &format!("/v1/cards/{first}/archive"), None);
    assert_eq!(status, 200);

    q.run();
    let back = Instant::now();
    loop {
        let (status, st) = s.call("GET", "/v1/index/status", None);
        if status == 200 && st["consistent"] == true && st["pending"] == 0 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "never caught up: {st}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (status, _) = s.call("GET", "/readyz", None);
    assert_eq!(status, 200);
    assert_eq!(s.top("when will I get my money back"), Some(second));
    assert!(
        s.search("I forgot my password", json!({"top_k": 5}))
            .iter()
            .all(|h| h["card_id"] != json!(first)),
        "the card archived while Qdrant was down is gone from it"
    );
}

//! `POST /v1/rerank`: the second stage, in the shape text-embeddings-inference, Cohere and Jina
//! share, driven by the official `cohere` Python client (installed from PyPI on first use) and
//! by plain HTTP in text-embeddings-inference's form.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

const REFUND: &str = "Refunds reach your original payment method within 7 to 10 working days.";
const DELIVERY: &str = "Standard delivery takes 3 to 5 business days after dispatch.";
const PASSWORD: &str =
    "Click Forgot password on the sign-in page and we email a reset link valid for 30 minutes.";

fn cohere_client(s: &Server, ask: &Value) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rerank_client.py"
    ))
    .args([s.base.as_str(), AGENT])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(p) = python_package("cohere", "cohere==5.13.0", "pylib-cohere") {
        cmd.env("PYTHONPATH", p);
    }
    let mut child = cmd.spawn().expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(ask.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client output is JSON")
}

#[test]
fn the_cohere_client_reranks_with_the_chat_model_as_judge() {
    let s = keys_and("qwen2.5-0.5b", &[]);
    // A Chinese question; the passage that answers it is English, and the others are about
    // neighbouring matters of the same shop.
    let r = cohere_client(
        &s,
        &json!({"query": "退款多久能到账？", "documents": [DELIVERY, REFUND, {"text": PASSWORD}]}),
    );
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "top_n=2: {r}");
    assert_eq!(results[0]["index"], 1, "the refund passage first: {r}");
    assert_eq!(results[0]["text"], REFUND, "{r}");
    let (a, b) = (
        results[0]["relevance_score"].as_f64().unwrap(),
        results[1]["relevance_score"].as_f64().unwrap(),
    );
    assert!(
        (0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b) && a >= b,
        "{r}"
    );
    assert!(!r["id"].as_str().unwrap().is_empty(), "{r}");

    // text-embeddings-inference's form: `texts`, `return_text`, the score as `score`.
    let (status, v) = s.call_as(
        AGENT,
        "POST",
        "/v1/rerank",
        Some(json!({"query": "How long until my refund arrives?", "texts": [PASSWORD, REFUND], "return_text": true})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["scorer"], "judge", "{v}");
    assert_eq!(v["model"], "qwen2.5-0.5b", "{v}");
    assert_eq!(v["results"][0]["index"], 1, "{v}");
    assert_eq!(v["results"][0]["text"], REFUND, "{v}");
    assert_eq!(
        v["results"][0]["score"], v["results"][0]["relevance_score"],
        "{v}"
    );
    assert!(v["results"][0].get("document").is_none(), "{v}");
}

#[test]
fn without_a_chat_model_the_embedder_ranks_and_bad_requests_are_refused() {
    let s = keys_and("none", &[]);
    let (status, v) = s.call_as(
        AGENT,
        "POST",
        "/v1/rerank",
        Some(json!({"query": "I forgot my password", "documents": [REFUND, {"text": PASSWORD}, DELIVERY], "return_documents": true, "top_n": 5})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["scorer"], "embedder", "{v}");
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        3,
        "top_n above the count: all: {v}"
    );
    assert_eq!(v["results"][0]["index"], 1, "{v}");
    assert_eq!(v["results"][0]["document"]["text"], PASSWORD, "{v}");

    let many: Vec<&str> = vec![REFUND; 33];
    let long = "x".repeat(8001);
    for (body, why) in [
        (json!({"query": " ", "texts": [REFUND]}), "empty query"),
        (json!({"query": "refund"}), "no passages"),
        (json!({"query": "refund", "texts": []}), "zero passages"),
        (json!({"query": "refund", "texts": many}), "33 passages"),
        (
            json!({"query": "refund", "texts": [REFUND], "documents": [REFUND]}),
            "both names",
        ),
        (
            json!({"query": "refund", "texts": [REFUND, "  "]}),
            "an empty passage",
        ),
        (
            json!({"query": "refund", "texts": [long]}),
            "a passage over 8,000 characters",
        ),
        (
            json!({"query": "refund", "texts": [REFUND], "top_n": 0}),
            "top_n 0",
        ),
        (
            json!({"query": "refund", "texts": [REFUND, 3]}),
            "a number as a passage",
        ),
    ] {
        let (status, v) = s.call_as(AGENT, "POST", "/v1/rerank", Some(body));
        assert_eq!(status, 422, "{why}: {v}");
        assert!(!error_code(&v).is_empty(), "{why}: {v}");
    }
    // Staff only, as search: a channel key cannot use the service as a free reranker.
    let (status, v) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/rerank",
        Some(json!({"query": "refund", "texts": [REFUND]})),
    );
    assert_eq!(status, 403, "{v}");
}

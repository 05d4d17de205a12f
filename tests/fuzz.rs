//! Property tests through HTTP: random JSON bodies, and random files to the import, against a
//! running server. Every answer is a 4xx with the error shape or a success, never a 5xx, and the
//! server is still up afterwards. The number of cases is printed.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// JSON values of every kind, nested a little, with strings that include control characters,
/// CJK and the field names the routes use.
fn json_value() -> impl Strategy<Value = Value> {
    let names = proptest::sample::select(vec![
        "question",
        "channel",
        "customer_id",
        "conversation_id",
        "language",
        "stream",
        "seed",
        "text",
        "texts",
        "role",
        "title",
        "body",
        "tags",
        "channels",
        "query",
        "top_k",
        "filters",
        "rating",
        "comment",
        "resolved",
        "n",
        "model",
        "input",
        "messages",
        "max_tokens",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[\\u{0}-\\u{7f}\\u{4e00}-\\u{4e10}]{0,40}".prop_map(Value::from),
        proptest::sample::select(vec![
            "chat", "voice", "email", "customer", "agent", "bot", "up", "en", "zh"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(names.clone(), inner, 0..6).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

#[test]
fn random_json_bodies_never_get_a_5xx() {
    let s = Server::start();
    s.card(
        "Delivery",
        "Parcels arrive within 3 working days.",
        json!({}),
    );
    let routes = [
        (ADMIN, "POST", "/v1/cards"),
        (ADMIN, "PATCH", "/v1/cards/x"),
        (AGENT, "POST", "/v1/search"),
        (AGENT, "POST", "/v1/rerank"),
        (CHANNEL, "POST", "/v1/sentiment"),
        (CHANNEL, "POST", "/v1/answer"),
        (CHANNEL, "POST", "/v1/conversations/fuzz/turns"),
        (CHANNEL, "POST", "/v1/conversations/fuzz/resolve"),
        (CHANNEL, "POST", "/v1/answers/x/feedback"),
        (AGENT, "POST", "/v1/assist/suggest"),
        (CHANNEL, "POST", "/v1/chat/completions"),
        (CHANNEL, "POST", "/v1/embeddings"),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 40,
        ..Config::default()
    });
    let mut cases = 0;
    for (key, method, path) in routes {
        runner
            .run(&json_value(), |body| {
                let res = s
                    .req(method, path, Some(key))
                    .header("x-kefu-customer", "fuzz-customer")
                    .json(&body)
                    .send()
                    .unwrap();
                let (st, v) = parts(res);
                prop_assert!(st < 500, "{method} {path} {body} -> {st} {v}");
                if st >= 400 {
                    prop_assert!(
                        v["error"]["code"].is_string(),
                        "{method} {path} {body} -> {v}"
                    );
                }
                Ok(())
            })
            .unwrap();
        cases += 40;
    }
    eprintln!("{cases} random bodies over {} routes, no 5xx", routes.len());
    assert_eq!(s.call("GET", "/healthz", None).0, 200);
}

#[test]
fn random_import_files_never_get_a_5xx() {
    let s = Server::start();
    let mut runner = TestRunner::new(Config {
        cases: 120,
        ..Config::default()
    });
    let file = (
        proptest::sample::select(vec!["a.md", "b.jsonl", "c.txt", "d.markdown", ""]),
        "(---\\n(title|tags|language|channels): [ -~\\u{4e00}-\\u{4e10}]{0,30}\\n---\\n)?[ -~\\n\\u{4e00}-\\u{4e10}]{0,300}",
    );
    runner
        .run(&file, |(name, text)| {
            let part = reqwest::blocking::multipart::Part::text(text.clone()).file_name(name);
            let res = s
                .req("POST", "/v1/cards/import", Some(ADMIN))
                .multipart(reqwest::blocking::multipart::Form::new().part("f", part))
                .send()
                .unwrap();
            let (st, v) = parts(res);
            prop_assert!(st < 500, "{name}: {text:?} -> {st} {v}");
            let res = s
                .req("POST", "/v1/cards/import", Some(ADMIN))
                .header("content-type", "application/x-ndjson")
                .body(text.clone())
                .send()
                .unwrap();
            let (st, v) = parts(res);
            prop_assert!(st < 500, "ndjson {text:?} -> {st} {v}");
            Ok(())
        })
        .unwrap();
    eprintln!("120 random files, twice each (multipart and JSON Lines), no 5xx");
    assert_eq!(s.call("GET", "/healthz", None).0, 200);
}

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

/// One thing a client sends on a voice stream.
#[derive(Debug, Clone)]
enum WsSend {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

/// How a fuzzed session ends.
#[derive(Debug, Clone, Copy)]
enum WsEnd {
    /// `{"type":"stop"}`, then reads to `done`.
    Stop,
    /// A close frame.
    Close,
    /// The TCP connection dropped without a close frame.
    Drop,
}

/// Start messages with every field at ordinary, edge and hostile values, and other text: stop,
/// random JSON, not JSON at all.
fn ws_text() -> impl Strategy<Value = String> {
    let rate = prop_oneof![
        proptest::sample::select(vec![
            0u64, 1, 7999, 8000, 16000, 44100, 48000, 96000, 192000, 4294967295, 4294967296
        ])
        .prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        Just(Value::from("16000")),
        Just(Value::from(-1)),
        Just(Value::from(16000.5)),
    ];
    let encoding = proptest::sample::select(vec![
        "pcm_s16le",
        "pcm_f32le",
        "PCM_S16LE",
        "mp3",
        "",
        "pcm_s16le\u{0}",
    ]);
    let text = "[\\u{0}-\\u{7f}\\u{4e00}-\\u{4e10}\\u{200b}\\u{202e}]{0,40}";
    let language = prop_oneof![
        proptest::sample::select(vec!["en", "zh", "ja", "auto", "", "en\u{0}", "xx"])
            .prop_map(String::from),
        text.prop_map(String::from),
    ];
    let start = (
        rate,
        encoding,
        proptest::option::of(language),
        proptest::option::of(text),
        proptest::option::of(proptest::sample::select(vec![
            "fuzz-customer",
            "someone-else",
            "",
        ])),
        proptest::option::of(json_value()),
    )
        .prop_map(|(rate, enc, lang, conv, cust, extra)| {
            let mut m = json!({"type": "start", "sample_rate": rate, "encoding": enc});
            if let Some(l) = lang {
                m["language"] = json!(l);
            }
            if let Some(c) = conv {
                m["conversation_id"] = json!(c);
            }
            if let Some(c) = cust {
                m["customer_id"] = json!(c);
            }
            if let Some(e) = extra {
                m["extra"] = e;
            }
            m.to_string()
        });
    prop_oneof![
        4 => start,
        2 => Just(r#"{"type":"stop"}"#.to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => "[ -~\\u{0}\\u{4e00}-\\u{4e10}]{0,60}",
    ]
}

/// Audio frames: empty, odd lengths, silence, noise (up to 3 s), and f32 words that are NaN or
/// infinite.
fn ws_binary() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        proptest::collection::vec(any::<u8>(), 1..7),
        (1usize..6400).prop_map(|n| vec![0u8; n]),
        proptest::collection::vec(any::<u8>(), 1..6400),
        // Long enough loud noise to make an utterance that reaches the model.
        proptest::collection::vec(any::<u8>(), 32000..96000),
        (1usize..800).prop_map(|n| [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30]
            .iter()
            .cycle()
            .take(n)
            .flat_map(|f| f.to_le_bytes())
            .collect()),
    ]
}

/// A session: most begin with a valid start, so that the audio path behind it is exercised.
fn ws_session() -> impl Strategy<Value = (Vec<WsSend>, WsEnd)> {
    let valid_start = (
        proptest::sample::select(vec![8000u32, 16000, 22050, 48000]),
        proptest::sample::select(vec!["pcm_s16le", "pcm_f32le"]),
        proptest::option::of(Just("fuzz-conv")),
    )
        .prop_map(|(rate, enc, conv)| {
            let mut m = json!({"type": "start", "sample_rate": rate, "encoding": enc});
            if let Some(c) = conv {
                m["conversation_id"] = json!(c);
            }
            WsSend::Text(m.to_string())
        });
    let send = prop_oneof![
        3 => ws_text().prop_map(WsSend::Text),
        4 => ws_binary().prop_map(WsSend::Binary),
        1 => proptest::collection::vec(any::<u8>(), 0..125).prop_map(WsSend::Ping),
    ];
    (
        proptest::option::weighted(0.7, valid_start),
        proptest::collection::vec(send, 1..12),
        proptest::sample::select(vec![WsEnd::Stop, WsEnd::Close, WsEnd::Drop]),
    )
        .prop_map(|(start, mut sends, end)| {
            if let Some(start) = start {
                sends.insert(0, start);
            }
            (sends, end)
        })
}

/// Random voice-stream sessions (start messages with hostile fields, audio frames of any length
/// and content, pings, stops, closes and dropped connections) against a server with the real
/// Whisper model: every message the server sends is JSON with a `type`, no error is a server
/// fault, no model panics, and the speech model still transcribes afterwards.
#[test]
fn random_voice_stream_messages_never_break_the_server() {
    use std::net::TcpStream;
    use std::time::Duration;
    use tungstenite::Message;
    use tungstenite::client::IntoClientRequest;
    use tungstenite::stream::MaybeTlsStream;

    let keys = format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}");
    let s = Server::start_with(&[
        ("KEFU_API_KEYS", &keys),
        ("KEFU_ASR", "whisper-base"),
        ("KEFU_VOICE_THREADS", "1"),
    ]);
    let url = format!("{}/v1/voice/stream", s.base.replacen("http", "ws", 1));
    let connect = || {
        let mut req = url.clone().into_client_request().unwrap();
        let h = req.headers_mut();
        h.insert(
            "authorization",
            format!("Bearer {CHANNEL}").parse().unwrap(),
        );
        h.insert("x-kefu-customer", "fuzz-customer".parse().unwrap());
        let (ws, _) = tungstenite::connect(req).expect("handshake");
        if let MaybeTlsStream::Plain(t) = ws.get_ref() {
            t.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        }
        ws
    };
    // Sessions the server started, and transcripts (partial or final) it sent.
    let started = std::cell::Cell::new(0usize);
    let transcripts = std::cell::Cell::new(0usize);
    // Whatever the server says must be well-formed and never a fault of its own.
    let check = |m: &Message| -> Result<(), TestCaseError> {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t)
                .map_err(|e| TestCaseError::fail(format!("not JSON: {t:?}: {e}")))?;
            prop_assert!(v["type"].is_string(), "{v}");
            match v["type"].as_str() {
                Some("started") => started.set(started.get() + 1),
                Some("partial" | "final") => transcripts.set(transcripts.get() + 1),
                _ => {}
            }
            if v["type"] == "error" {
                let code = v["code"].as_str().unwrap_or("");
                prop_assert!(!code.is_empty(), "{v}");
                prop_assert!(!["internal", "model_error"].contains(&code), "{v}");
            }
        }
        Ok(())
    };
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let messages = std::cell::Cell::new(0usize);
    runner
        .run(&ws_session(), |(sends, end)| {
            let mut ws: tungstenite::WebSocket<MaybeTlsStream<TcpStream>> = connect();
            for m in &sends {
                let frame = match m {
                    WsSend::Text(t) => Message::Text(t.clone().into()),
                    WsSend::Binary(b) => Message::Binary(b.clone().into()),
                    WsSend::Ping(p) => Message::Ping(p.clone().into()),
                };
                // The server may have closed the stream (an error it reported): stop sending.
                if ws.send(frame).is_err() {
                    break;
                }
            }
            messages.set(messages.get() + sends.len());
            match end {
                WsEnd::Stop => {
                    let _ = ws.send(Message::Text(r#"{"type":"stop"}"#.into()));
                    // Read to `done`, or to the close that follows an error before start.
                    while let Ok(m) = ws.read() {
                        check(&m)?;
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                        if let Message::Text(t) = &m
                            && t.contains(r#""type":"done""#)
                        {
                            break;
                        }
                        // Before start, `stop` is answered with an error and the stream waits
                        // for a start: that is the end of this session too.
                        if let Message::Text(t) = &m
                            && t.contains("stop before start")
                        {
                            break;
                        }
                    }
                }
                WsEnd::Close => {
                    let _ = ws.close(None);
                    while let Ok(m) = ws.read() {
                        check(&m)?;
                    }
                }
                WsEnd::Drop => {}
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "48 random voice sessions ({} started, {} transcripts), {} messages, no server fault",
        started.get(),
        transcripts.get(),
        messages.get()
    );
    // Most sessions reached the audio path (a start is counted where the session's end read it).
    assert!(started.get() >= 10, "{} started", started.get());

    // Nothing panicked in the model, and speech is still transcribed.
    let metrics = s.metrics();
    let panics: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kefu_model_panics_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(panics, 0.0, "{metrics}");
    let (_, ready) = s.call("GET", "/readyz", None);
    assert_eq!(ready["asr"], "ok (whisper-base)", "{ready}");
    let mut ws = connect();
    ws.send(Message::Text(
        r#"{"type":"start","sample_rate":16000,"encoding":"pcm_s16le"}"#.into(),
    ))
    .unwrap();
    let started = ws.read().unwrap();
    assert!(started.to_text().unwrap().contains("started"), "{started}");
}

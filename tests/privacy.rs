//! Privacy against the real server and the real store (issue 22): personal data masked before
//! it is stored, a customer's export, erasure that leaves nothing in the database file or the
//! log, and retention that lets old data go and keeps new data.

mod common;

use common::voice::*;
use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

const ERASED: &str = "cust-erase-7f3a9";
const KEPT: &str = "cust-keep-2b8c1";
/// Words only the erased customer ever wrote: found nowhere afterwards.
const MARKERS: [&str; 3] = ["zebracorn", "quillfeather", "marmaladeowl"];
const PHONE: &str = "138 0013 8000";
const EMAIL: &str = "li.wei.private@example.org";

/// The data directory's files as bytes, the write-ahead log included.
fn raw_files(s: &Server) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(&s.data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn holds(files: &[(String, Vec<u8>)], needle: &str) -> Option<String> {
    files
        .iter()
        .find(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(p, _)| p.clone())
}

fn turn(s: &Server, conv: &str, customer: &str, channel: &str, text: &str) -> Value {
    let (st, v) = s.call_channel(
        "POST",
        &format!("/v1/conversations/{conv}/turns"),
        Some(
            json!({"customer_id": customer, "channel": channel, "role": "customer", "text": text}),
        ),
    );
    assert_eq!(st, 200, "{v}");
    v
}

#[test]
fn an_erased_customer_leaves_nothing_in_the_database_file_or_the_log() {
    // The log at the default level, as an operator runs it; Whisper for the phone call (one
    // thread: see `voice_server`).
    let s = keys_and(
        "none",
        &[
            ("KEFU_LOG", "info"),
            ("KEFU_ASR", "whisper-base"),
            ("KEFU_VOICE_THREADS", "1"),
        ],
    );
    s.card(
        "Refunds for returned items",
        "Refunds are paid to the original card within 5 business days of the return arriving.",
        json!({}),
    );

    // One customer over chat (an answer, and feedback on it), e-mail and voice.
    let (st, a) = s.call_channel(
        "POST",
        "/v1/answer",
        Some(
            json!({"question": format!("When is my refund paid? {} call me on {PHONE}", MARKERS[0]),
                    "channel": "chat", "conversation_id": "erase-chat", "customer_id": ERASED}),
        ),
    );
    assert_eq!(st, 200, "{a}");
    let answer_id = a["answer_id"].as_str().unwrap().to_string();
    let (st, v) = parts(
        s.req(
            "POST",
            &format!("/v1/answers/{answer_id}/feedback"),
            Some(CHANNEL),
        )
        .header("x-kefu-customer", ERASED)
        .json(&json!({"rating": "down", "comment": format!("{} write to {EMAIL}", MARKERS[1])}))
        .send()
        .unwrap(),
    );
    assert_eq!(st, 201, "{v}");
    let v = turn(
        &s,
        "erase-email",
        ERASED,
        "email",
        &format!(
            "Dear team, {} my card 4111 1111 1111 1111 was charged twice. Reach me at {EMAIL}.",
            MARKERS[2]
        ),
    );
    // Masked before it was stored: what an agent reads later.
    let stored = v["turns"][0]["text"].as_str().unwrap();
    assert!(
        stored.contains("[card]") && stored.contains("[email]") && !stored.contains(EMAIL),
        "{stored}"
    );
    // A phone call: a live stream whose finals become the conversation's voice turns.
    let dir = tempfile::tempdir().unwrap();
    let wav = espeak(
        dir.path(),
        "call",
        "en-us",
        "Hello, I ordered a laptop last week and it still has not arrived.",
    );
    let bearer = format!("Bearer {CHANNEL}");
    let mut ws = connect_with(
        &s,
        &[("authorization", &bearer), ("x-kefu-customer", ERASED)],
    )
    .unwrap();
    send_json(
        &mut ws,
        json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "conversation_id": "erase-voice"}),
    );
    assert_eq!(next(&mut ws)["type"], "started");
    ws.send(Message::Binary(pcm_s16(&wav, 16000).into()))
        .unwrap();
    send_json(&mut ws, json!({"type": "stop"}));
    let mut heard = Vec::new();
    loop {
        let m = next(&mut ws);
        match m["type"].as_str() {
            Some("final") => {
                assert!(m["turn_error"].is_null(), "{m}");
                heard.push(m["text"].as_str().unwrap().trim().to_string());
            }
            Some("done") | Some("close") | Some("gone") => break,
            _ => {}
        }
    }
    assert!(!heard.is_empty(), "no final transcript");
    let (_, call) = s.call("GET", "/v1/conversations/erase-voice", None);
    let transcript = call["turns"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(call["turns"][0]["channel"], "voice", "{call}");
    assert!(transcript.to_lowercase().contains("laptop"), "{call}");
    // Another customer, who must keep everything.
    turn(
        &s,
        "keep-chat",
        KEPT,
        "chat",
        "Where is my parcel? kiwibanana",
    );

    // The export holds all of it, masked as stored.
    let (st, export) = s.call("GET", &format!("/v1/customers/{ERASED}/export"), None);
    assert_eq!(st, 200, "{export}");
    let text = export.to_string();
    assert_eq!(export["customer_id"], ERASED);
    assert_eq!(
        export["conversations"].as_array().unwrap().len(),
        3,
        "{export}"
    );
    for m in MARKERS.iter().chain([&transcript.as_str()]) {
        assert!(text.contains(m), "{m} missing from the export: {export}");
    }
    assert!(
        !text.contains(PHONE) && text.contains("[phone]"),
        "{export}"
    );
    let chat = export["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "erase-chat")
        .unwrap();
    assert_eq!(chat["answers"][0]["id"], json!(answer_id), "{chat}");
    assert_eq!(
        chat["answers"][0]["feedback"][0]["rating"], "down",
        "{chat}"
    );
    // Admins only: the export is everything about a customer.
    let (st, _) = s.call_as(
        AGENT,
        "GET",
        &format!("/v1/customers/{ERASED}/export"),
        None,
    );
    assert_eq!(st, 403);
    let (st, _) = s.call_as(CHANNEL, "DELETE", &format!("/v1/customers/{ERASED}"), None);
    assert_eq!(st, 403);

    // Before the erasure the file does hold them: the check below can fail.
    let files = raw_files(&s);
    assert!(holds(&files, ERASED).is_some());
    assert!(holds(&files, MARKERS[2]).is_some());
    assert!(holds(&files, &transcript).is_some());

    let (st, v) = s.call("DELETE", &format!("/v1/customers/{ERASED}"), None);
    assert_eq!(st, 200, "{v}");
    let removed = &v["removed"];
    assert_eq!(removed["conversations"], 3, "{v}");
    assert_eq!(removed["transcripts"], heard.len(), "{v}");
    assert_eq!(removed["turns"], 3, "{v}"); // question and reply, the e-mail
    assert_eq!(removed["answers"], 1, "{v}");
    assert_eq!(removed["feedback"], 1, "{v}");

    // Gone through the API...
    for path in [
        format!("/v1/customers/{ERASED}"),
        format!("/v1/customers/{ERASED}/export"),
        "/v1/conversations/erase-email".to_string(),
    ] {
        assert_eq!(s.call("GET", &path, None).0, 404, "{path}");
    }
    assert_eq!(
        s.call("DELETE", &format!("/v1/customers/{ERASED}"), None).0,
        404
    );
    // ...from every byte of the data directory (database and write-ahead log)...
    let files = raw_files(&s);
    for needle in [
        ERASED,
        "erase-chat",
        "erase-email",
        EMAIL,
        PHONE,
        "13800138000",
        "erase-voice",
        &transcript,
    ]
    .into_iter()
    .chain(MARKERS)
    {
        assert_eq!(holds(&files, needle), None, "{needle} is still on disk");
    }
    // ...and from the log.
    let log = s.log();
    assert!(log.contains("INFO"), "the log was captured at info: {log}");
    for needle in [
        ERASED,
        "erase-chat",
        "erase-email",
        "erase-voice",
        EMAIL,
        PHONE,
        &transcript,
    ]
    .into_iter()
    .chain(MARKERS)
    .chain(heard.iter().map(String::as_str))
    {
        assert!(!log.contains(needle), "{needle} reached the log:\n{log}");
    }
    // The audit log says an erasure happened, and not whose.
    let (_, audit) = s.call("GET", "/v1/audit", None);
    let entry = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .unwrap()
        .iter()
        .find(|e| e["action"] == "customer_erased")
        .cloned()
        .unwrap_or_else(|| panic!("no erasure in the audit log: {audit}"));
    assert_eq!(entry["detail"]["conversations"], 3, "{entry}");
    assert!(!entry.to_string().contains(ERASED), "{entry}");
    // The other customer is untouched.
    let (st, kept) = s.call("GET", &format!("/v1/customers/{KEPT}"), None);
    assert_eq!(st, 200, "{kept}");
    assert!(kept.to_string().contains("kiwibanana"), "{kept}");
    assert!(holds(&raw_files(&s), "kiwibanana").is_some());
    let m = s.metrics();
    assert_eq!(metric(&m, "kefu_privacy_erasures_total", ""), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "kefu_privacy_removed_rows_total",
            "by=\"erasure\",kind=\"transcripts\""
        ),
        Some(heard.len() as f64)
    );
}

/// With redaction off, turns are stored as given (an operator's choice, said in the README).
#[test]
fn redaction_can_be_turned_off() {
    let s = keys_and("none", &[("KEFU__PRIVACY__REDACT", "false")]);
    let v = turn(
        &s,
        "plain-1",
        "cust-plain",
        "chat",
        &format!("call {PHONE}"),
    );
    assert_eq!(v["turns"][0]["text"], format!("call {PHONE}"));
}

/// Retention as the server runs it: at start, and every `privacy.sweep_minutes`. A turn older
/// than `retain_days.turns` (0: any turn from before the sweep) is gone after a restart, and
/// `/metrics` counts it.
#[test]
fn the_server_sweeps_expired_turns() {
    let mut s = keys_and("none", &[]);
    turn(&s, "old-1", "cust-old", "chat", "an old question");
    s.set_env("KEFU__PRIVACY__RETAIN_DAYS__TURNS", "0");
    s.restart();
    let since = std::time::Instant::now();
    loop {
        let m = s.metrics();
        if metric(
            &m,
            "kefu_privacy_removed_rows_total",
            "by=\"retention\",kind=\"turns\"",
        ) == Some(1.0)
        {
            break;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(60),
            "no sweep:\n{m}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(s.call("GET", "/v1/conversations/old-1", None).0, 404);
}

/// Retention with the store's injectable clock: data older than its period goes, newer data
/// stays, each kind by its own period.
#[test]
fn retention_lets_old_data_go_and_keeps_new_data() {
    use kefu::store::conversations::Party;
    use kefu::store::customers::Retention;
    use kefu::store::{Clock, Store};
    use kefu::vocab::{Channel, Role};

    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    let store = Store::open_with_clock(dir.path(), clock.clone()).unwrap();
    let who = |c: &str| Party::Staff(Some(c.to_string()));
    let add = |conv: &str, cust: &str, channel: Channel, text: &str| {
        store
            .append_turn(
                conv,
                &who(cust),
                channel,
                Role::Customer,
                text,
                &Default::default(),
            )
            .unwrap();
    };
    add("old-chat", "c1", Channel::Chat, "old chat turn");
    add("old-voice", "c1", Channel::Voice, "old voice transcript");
    clock.advance(time::Duration::days(20));
    add("new-chat", "c2", Channel::Chat, "new chat turn");
    add("new-voice", "c2", Channel::Voice, "new voice transcript");
    clock.advance(time::Duration::days(15));
    // Old: 35 days. New: 15 days.
    let keep = Retention {
        turns: Some(30),
        transcripts: Some(10),
        answers: None,
        audit: None,
    };
    let removed = store.sweep(&keep).unwrap();
    assert_eq!(removed.turns, 1, "{removed:?}");
    assert_eq!(removed.transcripts, 2, "{removed:?}");
    assert_eq!(removed.conversations, 3, "{removed:?}");
    let c = store
        .conversation("new-chat", &who("c2"))
        .unwrap()
        .expect("kept");
    assert_eq!(c.turns[0].text, "new chat turn");
    assert!(
        store
            .conversation("old-chat", &who("c1"))
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .conversation("new-voice", &who("c2"))
            .unwrap()
            .is_none()
    );
    // Nothing more to do: a second sweep removes nothing.
    assert_eq!(store.sweep(&keep).unwrap(), Default::default());
}

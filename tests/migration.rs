//! A data directory written before the schema was versioned (tests/fixtures/kefu-unversioned,
//! made with the kefu of that day: cards in every state, an edit history, an audit log, a
//! conversation with scored turns, an answer with feedback) opens with today's kefu, is migrated
//! to the current schema version, and loses nothing.

mod common;

use common::Server;
use serde_json::json;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/kefu-unversioned.sqlite3"
);

#[test]
fn an_unversioned_database_migrates_without_loss() {
    let mut s = Server::start();
    s.kill9();
    for f in ["kefu.sqlite3", "kefu.sqlite3-wal", "kefu.sqlite3-shm"] {
        let _ = std::fs::remove_file(s.data.join(f));
    }
    std::fs::copy(FIXTURE, s.data.join("kefu.sqlite3")).unwrap();
    let version = |s: &Server| -> i64 {
        let c = rusqlite::Connection::open(s.data.join("kefu.sqlite3")).unwrap();
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&s), 0, "the fixture predates versioning");
    s.restart();

    // Every card, in its state, with its history.
    let (st, list) = s.call("GET", "/v1/cards?limit=100", None);
    assert_eq!(st, 200, "{list}");
    let cards = list["cards"].as_array().unwrap();
    let status = |title: &str| {
        cards
            .iter()
            .find(|c| c["title"] == title)
            .unwrap_or_else(|| panic!("{title} lost: {list}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(cards.len(), 4, "{list}");
    assert_eq!(status("Refund timeline"), "published");
    assert_eq!(status("Resetting the router"), "published");
    assert_eq!(status("Holiday opening hours"), "draft");
    assert_eq!(status("Old returns address"), "archived");
    let refund = cards
        .iter()
        .find(|c| c["title"] == "Refund timeline")
        .unwrap();
    let id = refund["id"].as_str().unwrap();
    assert_eq!(refund["version"], 3, "{refund}");
    let (_, versions) = s.call("GET", &format!("/v1/cards/{id}/versions"), None);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        3,
        "{versions}"
    );
    let (_, audit) = s.call("GET", &format!("/v1/audit?card_id={id}"), None);
    assert!(audit["entries"].as_array().unwrap().len() >= 3, "{audit}");

    // The published cards are searchable, by meaning and by keyword.
    assert_eq!(
        s.top("how long until I get my money back").as_deref(),
        Some(id)
    );
    let hits = s.search("RT-AX58U", json!({}));
    assert_eq!(hits[0]["title"], "Resetting the router", "{hits:?}");

    // The conversation, its scored turns and the answer with its feedback.
    let (st, c) = s.call(
        "GET",
        "/v1/conversations/conv-fixture?customer_id=cust-fixture",
        None,
    );
    assert_eq!(st, 200, "{c}");
    let turns = c["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 4, "{c}");
    assert_eq!(turns[0]["role"], "customer");
    assert!(turns[0]["sentiment"].is_string(), "{c}");
    assert_eq!(turns[1]["role"], "bot");
    // The fixture's server had no chat model: its answer was a hand-off, recorded as such.
    let (_, handoff) = s.call("GET", "/v1/conversations/conv-fixture/handoff", None);
    let open = handoff["unresolved"].as_array().unwrap();
    assert!(
        open.iter().any(|u| u["text"] == "How long do refunds take?"
            && u["why"] == "handed_off: generator_unavailable"),
        "{handoff}"
    );
    let answer_id = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kefu-unversioned.answer-id"
    ))
    .unwrap();
    let (st, fb) = s.call(
        "POST",
        &format!("/v1/answers/{}/feedback", answer_id.trim()),
        Some(json!({"rating": "down"})),
    );
    assert_eq!((st, fb["feedback_count"].as_u64()), (201, Some(2)), "{fb}");

    // Migrated once: the version is the current one (4: turns carry their language, emotions
    // and intent; background jobs and mined cards' evidence have tables), and opening again
    // changes nothing.
    s.kill9();
    assert_eq!(version(&s), 4);
    s.restart();
    let (_, again) = s.call("GET", "/v1/cards?limit=100", None);
    assert_eq!(again["cards"].as_array().unwrap().len(), 4);
    s.kill9();
    assert_eq!(version(&s), 4);
}

//! Knowledge that improves itself, over HTTP with the real models: conversations an agent
//! resolves become a card in review (drafted by the chat model from the agent's replies, personal
//! data removed, with its provenance); a second conversation about the same thing is merged into
//! it as evidence; nothing reaches customers until an admin publishes it, and then the same
//! question is answered from it with a citation.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn turn(s: &Server, conv: &str, customer: &str, role: &str, text: &str) {
    let channel = if role == "agent" { "agent" } else { "chat" };
    turn_on(s, conv, customer, channel, role, text);
}

fn resolve(s: &Server, conv: &str) {
    let (status, v) = s.call_as(
        AGENT,
        "POST",
        &format!("/v1/conversations/{conv}/resolve"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{v}");
}

/// The job list once nothing is queued or running.
fn settled_jobs(s: &Server) -> Value {
    let start = Instant::now();
    loop {
        let (status, v) = s.call_as(ADMIN, "GET", "/v1/jobs", None);
        assert_eq!(status, 200, "{v}");
        let c = &v["counts"];
        if c["queued"] == 0 && c["running"] == 0 {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "mining jobs never finished: {v}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn mined_cards(s: &Server) -> Vec<Value> {
    let (status, v) = s.call_as(ADMIN, "GET", "/v1/cards?tag=mined", None);
    assert_eq!(status, 200, "{v}");
    v["cards"].as_array().unwrap().clone()
}

const PERSONAL: [&str; 6] = [
    "Jane",
    "jane.doe",
    "4456789123",
    "Mark",
    "王",
    "2023110512345",
];

#[test]
fn resolved_conversations_become_a_reviewed_card_that_then_answers() {
    let s = keys_and("qwen2.5-0.5b", &[]);

    // Two customers ask the same thing in other words; an agent answers both.
    turn(
        &s,
        "refund-1",
        "cust-m1",
        "customer",
        "Hi, how long does a refund take to reach my card? My email is jane.doe@example.com and the order is 4456789123.",
    );
    turn(
        &s,
        "refund-1",
        "cust-m1",
        "agent",
        "Hi Jane, thanks for waiting. Once the warehouse receives the item, refunds reach your card within 5 to 7 business days. You can follow the refund under Orders > Refunds.",
    );
    turn(&s, "refund-1", "cust-m1", "customer", "Thanks, that helps!");
    resolve(&s, "refund-1");
    turn(
        &s,
        "refund-2",
        "cust-m2",
        "customer",
        "When will the money for my returned shoes be back on my credit card?",
    );
    turn(
        &s,
        "refund-2",
        "cust-m2",
        "agent",
        "Hello Mark! Refunds go back to your card within 5 to 7 business days after the warehouse receives the item. Track it under Orders > Refunds.",
    );
    resolve(&s, "refund-2");
    // A Chinese conversation about another subject, with a name and an order number.
    turn(
        &s,
        "invoice-zh",
        "cust-m3",
        "customer",
        "我是王先生，订单号2023110512345，怎么开发票？",
    );
    turn(
        &s,
        "invoice-zh",
        "cust-m3",
        "agent",
        "王先生您好，电子发票可以在订单完成后在“我的订单-申请发票”中申请，开具后会在2个工作日内发送到您的邮箱。",
    );
    resolve(&s, "invoice-zh");
    // No person answered in this one: nothing to learn, no job.
    turn(
        &s,
        "bot-only",
        "cust-m4",
        "customer",
        "What are your opening hours?",
    );
    resolve(&s, "bot-only");

    let jobs = settled_jobs(&s);
    assert_eq!(jobs["counts"]["done"], 3, "{jobs}");
    assert_eq!(jobs["counts"]["failed"], 0, "{jobs}");
    let subjects: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["subject"].as_str().unwrap())
        .collect();
    assert!(!subjects.contains(&"bot-only"), "{jobs}");

    // One card per subject, both waiting in review, without personal data.
    let cards = mined_cards(&s);
    assert_eq!(
        cards.len(),
        2,
        "the repeat was merged, not added: {cards:#?}"
    );
    for c in &cards {
        assert_eq!(c["status"], "in_review", "{c}");
        let text = format!("{} {}", c["title"], c["body"]);
        for p in PERSONAL {
            assert!(!text.contains(p), "{p} in the draft: {text}");
        }
    }
    let refund = cards
        .iter()
        .find(|c| c["language"] == "en")
        .expect("an English card");
    let invoice = cards
        .iter()
        .find(|c| c["language"] == "zh")
        .expect("a Chinese card");
    assert!(
        refund["body"]
            .as_str()
            .unwrap()
            .contains("5 to 7 business days"),
        "{refund}"
    );
    assert!(invoice["body"].as_str().unwrap().contains('2'), "{invoice}");

    // Its provenance: both conversations, the turns read, the questions as asked (scrubbed).
    let id = refund["id"].as_str().unwrap();
    let (status, ev) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{id}/evidence"), None);
    assert_eq!(status, 200, "{ev}");
    assert_eq!(ev["count"], 2, "{ev}");
    let convs: Vec<&str> = ev["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(convs, ["refund-1", "refund-2"], "{ev}");
    assert_eq!(ev["evidence"][0]["turns"], json!([1, 2]), "{ev}");
    assert!(
        ev["evidence"][1]["similarity"].as_f64().unwrap() >= 0.9,
        "{ev}"
    );
    let evidence_text = ev.to_string();
    for p in PERSONAL {
        assert!(
            !evidence_text.contains(p),
            "{p} in the evidence: {evidence_text}"
        );
    }

    // Not before an admin publishes it...
    let ask =
        json!({"question": "How long does a refund take to reach my card?", "channel": "chat"});
    let (status, a) = s.call_channel("POST", "/v1/answer", Some(ask.clone()));
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        a["handoff"], true,
        "a draft in review answered a customer: {a}"
    );
    // ... and from it once published.
    s.publish(id);
    let (status, a) = s.call_channel("POST", "/v1/answer", Some(ask));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["handoff"], false, "{a}");
    let cited: Vec<&str> = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["card_id"].as_str().unwrap())
        .collect();
    assert!(cited.contains(&id), "{a}");
    assert!(a["answer"].as_str().unwrap().contains("5 to 7"), "{a}");

    // A third conversation about refunds now merges into the published card.
    turn(
        &s,
        "refund-3",
        "cust-m5",
        "customer",
        "How many days until a refund shows on my card?",
    );
    turn(
        &s,
        "refund-3",
        "cust-m5",
        "agent",
        "Refunds reach your card within 5 to 7 business days once the warehouse has the item. You can follow it under Orders > Refunds.",
    );
    resolve(&s, "refund-3");
    let jobs = settled_jobs(&s);
    assert_eq!(jobs["counts"]["done"], 4, "{jobs}");
    assert_eq!(mined_cards(&s).len(), 2, "{jobs}");
    assert_eq!(jobs["jobs"][0]["result"]["merged_into"], id, "{jobs}");

    // Erasing a customer takes their question out of the evidence; the card stays.
    let (status, v) = s.call_as(ADMIN, "DELETE", "/v1/customers/cust-m2", None);
    assert_eq!(status, 200, "{v}");
    let (_, ev) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{id}/evidence"), None);
    assert_eq!(ev["count"], 2, "{ev}");
    assert!(!ev.to_string().contains("refund-2"), "{ev}");

    // The job table on /metrics.
    let m = s.metrics();
    assert_eq!(metric(&m, "kefu_jobs", r#"state="done""#), Some(4.0), "{m}");

    // Bad input is refused clearly.
    let (status, v) = s.call_as(ADMIN, "GET", "/v1/jobs?state=sideways", None);
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_code(&v), "invalid_request");
    let (status, v) = s.call_as(ADMIN, "GET", "/v1/cards/no-such-card/evidence", None);
    assert_eq!(status, 404, "{v}");
}

/// With mining switched off, resolving queues nothing.
#[test]
fn mining_can_be_switched_off_and_kefu_mine_catches_up() {
    let mut s = keys_and("none", &[("KEFU__MINING__ENABLED", "false")]);
    turn(
        &s,
        "off-1",
        "cust-off",
        "customer",
        "Can I change my delivery address?",
    );
    turn(
        &s,
        "off-1",
        "cust-off",
        "agent",
        "Yes, until the parcel ships: open the order and choose Change address.",
    );
    resolve(&s, "off-1");
    let (status, v) = s.call_as(ADMIN, "GET", "/v1/jobs", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["jobs"], json!([]), "{v}");
    assert!(mined_cards(&s).is_empty());

    // `kefu mine` finds the resolved conversation no job took up and drafts it now (no chat
    // model: the agent's own sentences); run twice, it queues nothing the second time.
    s.kill9();
    let mine = || {
        let out = kefu()
            .args(["mine", "--data-dir"])
            .arg(&s.data)
            .env("KEFU_GENERATOR", "none")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = mine();
    assert!(
        first.contains("1 resolved conversations queued")
            && first.contains("1 cards drafted into review"),
        "{first}"
    );
    let again = mine();
    assert!(
        again.contains("0 resolved conversations queued")
            && again.contains("0 cards drafted into review"),
        "{again}"
    );
    s.restart();
    let cards = mined_cards(&s);
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!(cards[0]["status"], "in_review");
    assert!(
        cards[0]["body"]
            .as_str()
            .unwrap()
            .contains("choose Change address"),
        "{}",
        cards[0]
    );
}

//! Agent assist against the real server: suggestions grounded in the right card and cited,
//! coaching that reads the customer's mood, the context before the suggestions when streaming,
//! and an honest "no card covers this" instead of invented replies.

mod common;

use common::*;
use serde_json::{Value, json};

const ROUTER: (&str, &str) = (
    "Resetting the RT-AX58U router",
    "To factory-reset the RT-AX58U router, hold the recessed RESET button on the back for 10 seconds with a paperclip until the power LED blinks. The router restarts in about 2 minutes. A reset does not fix a line fault: only a technician visit can, and visits cannot be booked for the same day.",
);
const REFUND: (&str, &str) = (
    "Refunds for returned items",
    "Refunds are paid to the original card within 5 business days of the return arriving at our warehouse. Give us your order number so we can track the return.",
);

/// A customer's turn comes from the channel, an agent's from the agent's tool.
fn turn(s: &Server, conv: &str, customer: &str, role: &str, text: &str) -> Value {
    let key = if role == "customer" { CHANNEL } else { AGENT };
    let (status, v) = s.call_as(
        key,
        "POST",
        &format!("/v1/conversations/{conv}/turns"),
        Some(json!({"customer_id": customer, "channel": "chat", "role": role, "text": text})),
    );
    assert_eq!(status, 200, "{v}");
    v
}

fn kinds(v: &Value) -> Vec<String> {
    v["coaching"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn suggestions_cite_the_right_card_and_coaching_notes_the_mood() {
    let s = keys_and("smollm2-135m", &[]);
    let router = s.card(ROUTER.0, ROUTER.1, json!({}));
    let refund = s.card(REFUND.0, REFUND.1, json!({}));
    let conv = "assist-1";
    turn(
        &s,
        conv,
        "cust-a",
        "customer",
        "How do I factory reset my RT-AX58U router?",
    );
    turn(&s, conv, "cust-a", "agent", "Let me check that for you.");
    let v = turn(
        &s,
        conv,
        "cust-a",
        "customer",
        "Please hurry, I have been offline all day and this is so frustrating! How do I reset the router?",
    );
    assert_eq!(v["turns"][2]["sentiment"], "negative", "{v}");

    let (status, a) = s.call_as(
        AGENT,
        "POST",
        "/v1/assist/suggest",
        Some(json!({"conversation_id": conv, "n": 2, "seed": 7})),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["cards"][0]["card_id"], json!(router), "{a}");
    assert_eq!(a["cards"][0]["covers"], true, "{a}");
    assert!(
        a["cards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["card_id"] != json!(refund) || c["covers"] == false),
        "the refund card does not cover a router question: {a}"
    );
    let suggestions = a["suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len(), 2, "{a}");
    for sg in suggestions {
        assert!(!sg["text"].as_str().unwrap().is_empty(), "{a}");
        assert_eq!(sg["citations"][0]["card_id"], json!(router), "{a}");
    }
    let k = kinds(&a);
    assert_eq!(k[0], "acknowledge_frustration", "{a}");
    assert!(
        a["coaching"][0]["note"]
            .as_str()
            .unwrap()
            .contains("last turn negative"),
        "{a}"
    );
    // The card's limit is quoted so the agent does not promise a same-day visit.
    assert!(
        a["coaching"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "do_not_promise"
                && c["note"].as_str().unwrap().contains("same day")),
        "{a}"
    );
    assert!(k.contains(&"confirm_steps".to_string()), "{a}");
    // The escalation state is the conversation's own.
    let (_, conv_view) = s.call_as(AGENT, "GET", &format!("/v1/conversations/{conv}"), None);
    assert_eq!(a["escalation"], conv_view["escalation"], "{a}");
    assert_eq!(a["mood"], conv_view["mood"], "{a}");

    // Streaming: the context comes first, then the suggestions as they are written; the final
    // event carries the same suggestions as the JSON answer (same seed).
    let mut res = s
        .req("POST", "/v1/assist/suggest", Some(AGENT))
        .json(&json!({"conversation_id": conv, "n": 2, "seed": 7, "stream": true}))
        .send()
        .unwrap();
    if res.status() != 200 {
        panic!("{}: {}", res.status(), res.text().unwrap_or_default());
    }
    let events = read_sse(&mut res, |e| e.event == "done");
    assert_eq!(events[0].event, "context", "{events:?}");
    let context: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(context["cards"][0]["card_id"], json!(router));
    assert_eq!(context["coaching"], a["coaching"]);
    assert_eq!(context["suggestions"], json!([]));
    assert!(events.iter().any(|e| e.event == "delta"), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e.event == "suggestion").count(),
        2,
        "{events:?}"
    );
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["suggestions"], a["suggestions"]);
    // Deltas of one suggestion add up to its text.
    let first: String = events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
        .filter(|d| d["index"] == 0)
        .map(|d| d["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.trim(), done["suggestions"][0]["text"]);
}

#[test]
fn an_uncovered_question_gets_coaching_and_no_invented_reply() {
    let s = keys_and("smollm2-135m", &[]);
    let refund = s.card(REFUND.0, REFUND.1, json!({}));
    turn(&s, "zh-assist", "cust-z", "customer", "你们卖礼品卡吗？");
    let (status, a) = s.call_as(
        AGENT,
        "POST",
        "/v1/assist/suggest",
        Some(json!({"conversation_id": "zh-assist"})),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["suggestions"], json!([]), "{a}");
    assert_eq!(a["no_suggestions"], "not_covered", "{a}");
    assert_eq!(a["language"], "zh");
    let k = kinds(&a);
    assert_eq!(k.last().unwrap(), "not_covered", "{a}");
    // Coaching for a Chinese conversation is in Chinese.
    assert!(
        a["coaching"].as_array().unwrap().last().unwrap()["note"]
            .as_str()
            .unwrap()
            .contains("知识卡片"),
        "{a}"
    );

    // A covered refund question whose card needs an order number the customer has not given.
    turn(
        &s,
        "refund-1",
        "cust-r",
        "customer",
        "When will I get my refund for the jacket I returned?",
    );
    let (status, a) = s.call_as(
        AGENT,
        "POST",
        "/v1/assist/suggest",
        Some(json!({"conversation_id": "refund-1", "n": 1})),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["cards"][0]["card_id"], json!(refund), "{a}");
    assert!(
        a["coaching"].as_array().unwrap().iter().any(|c| c["kind"]
            == "ask_for"
            && c["note"].as_str().unwrap().contains("order number")),
        "{a}"
    );
    assert_eq!(
        a["suggestions"][0]["citations"][0]["card_id"],
        json!(refund),
        "{a}"
    );
}

#[test]
fn assist_refuses_bad_requests_clearly() {
    let s = keys_and("smollm2-135m", &[]);
    turn(&s, "c1", "cust-b", "customer", "hello");
    turn(&s, "agent-only", "cust-q", "agent", "Hi, how can I help?");
    for (key, body, want) in [
        (AGENT, json!({"conversation_id": "nope"}), 404),
        (AGENT, json!({"conversation_id": "c1", "n": 0}), 422),
        (AGENT, json!({"conversation_id": "c1", "n": 4}), 422),
        (AGENT, json!({"conversation_id": "c1", "bogus": 1}), 422),
        (AGENT, json!({"conversation_id": "agent-only"}), 422),
        (
            AGENT,
            json!({"conversation_id": "c1", "customer_id": "someone-else"}),
            409,
        ),
        (CHANNEL, json!({"conversation_id": "c1"}), 403),
    ] {
        let (status, v) = s.call_as(key, "POST", "/v1/assist/suggest", Some(body.clone()));
        assert_eq!(status, want, "{body} -> {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
}

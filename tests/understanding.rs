//! Understanding the customer with the real heads over the real embedder: every customer turn
//! carries emotions and an intent, a conversation carries its emotion trend and route, an admin's
//! new intent labels the next turns without a restart, and routing reads tags.

mod common;

use common::*;
use serde_json::{Value, json};

fn customer_turn(s: &Server, conv: &str, text: &str) -> Value {
    let (status, v) = s.call_as(
        CHANNEL,
        "POST",
        &format!("/v1/conversations/{conv}/turns"),
        Some(json!({"customer_id": "cust-u", "channel": "chat", "role": "customer", "text": text})),
    );
    assert_eq!(status, 200, "{v}");
    v
}

fn intent_of(s: &Server, text: &str) -> String {
    let (status, v) = s.call_as(CHANNEL, "POST", "/v1/signals", Some(json!({"text": text})));
    assert_eq!(status, 200, "{v}");
    v["results"][0]["intent"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn staff_view(s: &Server, conv: &str) -> Value {
    let (status, v) = s.call_as(AGENT, "GET", &format!("/v1/conversations/{conv}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

const WARRANTY: &str =
    "My kettle stopped working after three months, is that covered by the guarantee?";

/// An admin adds an intent with five examples through the API and the next turns are labelled
/// with it; removing it takes it away again; the server never restarts.
#[test]
fn an_admin_adds_an_intent_and_the_next_turns_are_labelled_with_it() {
    let s = Server::start();
    assert_ne!(intent_of(&s, WARRANTY), "warranty_claim");

    let examples = json!([
        "Is my broken blender still under warranty?",
        "The washing machine failed within the warranty period, can you repair it for free?",
        "How do I make a warranty claim for my faulty headphones?",
        "My TV died after eight months, does the two-year guarantee cover it?",
        "保修期内坏了可以免费维修吗？",
    ]);
    let (status, v) = s.call_as(
        ADMIN,
        "POST",
        "/v1/intents",
        Some(json!({"name": "warranty_claim", "description": "repairs under warranty", "examples": examples})),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["builtin"].as_bool(), v["examples"].as_u64()),
        (Some(false), Some(5)),
        "{v}"
    );

    let (_, list) = s.call_as(AGENT, "GET", "/v1/intents", None);
    let names: Vec<&str> = list["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    for n in [
        "billing",
        "refund",
        "order_status",
        "human_request",
        "other",
        "warranty_claim",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    // The next customer turn is read with it.
    let v = customer_turn(&s, "warranty-1", WARRANTY);
    let intent = &v["turns"][0]["intent"];
    assert_eq!(intent["name"], "warranty_claim", "{v}");
    assert!(intent["confidence"].as_f64().unwrap() > 0.3, "{v}");
    assert_eq!(
        intent_of(&s, "我的吹风机用了半年就坏了，在保修范围内吗？"),
        "warranty_claim"
    );
    // The taxonomy it joined still holds.
    assert_eq!(
        intent_of(&s, "How do I cancel my subscription?"),
        "cancellation"
    );

    // Audited, and removable.
    let (_, audit) = s.call_as(ADMIN, "GET", "/v1/audit", None);
    assert!(audit.to_string().contains("intent_defined"), "{audit}");
    let (status, _) = s.call_as(ADMIN, "DELETE", "/v1/intents/warranty_claim", None);
    assert_eq!(status, 204);
    assert_ne!(intent_of(&s, WARRANTY), "warranty_claim");
    let (status, v) = s.call_as(ADMIN, "DELETE", "/v1/intents/warranty_claim", None);
    assert_eq!((status, error_code(&v).as_str()), (404, "not_found"), "{v}");

    // Kept across a restart, like every admin change.
    let (status, _) = s.call_as(
        ADMIN,
        "POST",
        "/v1/intents",
        Some(json!({"name": "warranty_claim", "examples": examples})),
    );
    assert_eq!(status, 201);
    let mut s = s;
    s.restart();
    assert_eq!(intent_of(&s, WARRANTY), "warranty_claim");
}

#[test]
fn a_bad_intent_is_refused_with_a_clear_error() {
    let s = Server::start();
    let five = json!(["a b c", "d e f", "g h i", "j k l", "m n o"]);
    for (body, status, code) in [
        (json!({"name": "refund", "examples": five}), 409, "conflict"),
        (
            json!({"name": "Bad Name", "examples": five}),
            422,
            "invalid_request",
        ),
        (
            json!({"name": "ok_name", "examples": ["only", "two"]}),
            422,
            "invalid_request",
        ),
        (
            json!({"name": "ok_name", "examples": ["same", "same", "same"]}),
            422,
            "invalid_request",
        ),
        (
            json!({"name": "ok_name", "examples": ["x".repeat(501), "b", "c"]}),
            422,
            "invalid_request",
        ),
        (json!({"name": "ok_name"}), 422, "invalid_request"),
    ] {
        let (st, v) = s.call_as(ADMIN, "POST", "/v1/intents", Some(body.clone()));
        assert_eq!((st, error_code(&v).as_str()), (status, code), "{body}: {v}");
    }
    let (st, _) = s.call_as(ADMIN, "DELETE", "/v1/intents/refund", None);
    assert_eq!(st, 409, "a built-in intent cannot be removed");
    let (st, _) = s.call_as(
        AGENT,
        "POST",
        "/v1/intents",
        Some(json!({"name": "x_y", "examples": five})),
    );
    assert_eq!(st, 403, "agents read the taxonomy, admins change it");
    let (_, list) = s.call_as(AGENT, "GET", "/v1/intents", None);
    assert_eq!(
        list["intents"].as_array().unwrap().len(),
        10,
        "nothing was added: {list}"
    );
}

/// Each customer turn carries its emotions and intent; the conversation its emotion trend and
/// route; the route reads the customer's tags; the hand-off summary carries the route.
#[test]
fn turns_carry_emotions_and_intent_and_the_conversation_a_route() {
    let s = Server::start();
    let conv = "route-1";
    let v = customer_turn(&s, conv, "I want to cancel my broadband contract.");
    assert_eq!(v["turns"][0]["intent"]["name"], "cancellation", "{v}");
    // How a customer is queued is for staff: the channel's view has no route.
    assert!(v.get("route").is_none(), "{v}");
    let v = staff_view(&s, conv);
    assert_eq!(v["route"]["queue"], "retention", "{v}");
    assert_eq!(v["route"]["priority"], "normal", "{v}");
    assert_eq!(v["route"]["skills"], json!(["en"]), "{v}");

    customer_turn(
        &s,
        conv,
        "I have asked you three times already and you keep charging me, this is outrageous!",
    );
    let v = staff_view(&s, conv);
    let turns = v["turns"].as_array().unwrap();
    for t in turns {
        let scores = t["emotions"]["scores"].as_object().unwrap();
        assert_eq!(scores.len(), 5, "{t}");
        assert!(t["intent"]["name"].is_string(), "{t}");
    }
    let last = &turns[1]["emotions"];
    assert!(
        last["present"]
            .as_array()
            .unwrap()
            .contains(&json!("anger")),
        "{v}"
    );
    // The trend: one score per customer turn for each emotion; anger is rising.
    assert_eq!(
        v["emotions"]["scores"]["anger"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    assert!(
        v["emotions"]["rising"]
            .as_array()
            .unwrap()
            .contains(&json!("anger")),
        "{v}"
    );
    // Strong anger flags the conversation, and an angry escalated customer is urgent.
    assert!(
        v["escalation"]["reasons"]
            .to_string()
            .contains("strong_emotion"),
        "{v}"
    );
    assert_eq!(v["route"]["priority"], "urgent", "{v}");
    assert!(
        v["route"]["reasons"]
            .to_string()
            .contains("angry_and_escalated"),
        "{v}"
    );
    let queue = v["route"]["queue"].clone();

    let (status, r) = s.call_as(
        AGENT,
        "POST",
        "/v1/route",
        Some(json!({"conversation_id": conv, "customer_tags": ["vip"]})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["queue"].as_str(), r["priority"].as_str()),
        (Some("vip"), Some("urgent")),
        "{r}"
    );
    assert!(r["reasons"].to_string().contains("tag vip"), "{r}");
    let (status, r) = s.call_as(
        AGENT,
        "POST",
        "/v1/route",
        Some(json!({"conversation_id": "nope"})),
    );
    assert_eq!((status, error_code(&r).as_str()), (404, "not_found"), "{r}");
    let (status, _) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/route",
        Some(json!({"conversation_id": conv})),
    );
    assert_eq!(status, 403, "queues are for staff");

    // The person taking over sees the same route.
    let (_, h) = s.call_as(
        AGENT,
        "GET",
        &format!("/v1/conversations/{conv}/handoff"),
        None,
    );
    assert_eq!(h["route"]["queue"], queue, "{h}");
    let said = format!("Routed to {} (urgent priority)", queue.as_str().unwrap());
    assert!(h["summary"].as_str().unwrap().contains(&said), "{h}");

    // The same reading for any text, in one call.
    let (status, v) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/signals",
        Some(
            json!({"texts": ["Thank you so much, that solved it!", "我的快递到底什么时候能到？"]}),
        ),
    );
    assert_eq!(status, 200, "{v}");
    let thanks = &v["results"][0];
    assert_eq!(thanks["sentiment"]["label"], "positive", "{v}");
    assert!(
        thanks["emotions"]["present"]
            .as_array()
            .unwrap()
            .contains(&json!("gratitude")),
        "{v}"
    );
    assert_eq!(thanks["language"]["language"], "en", "{v}");
    assert_eq!(v["results"][1]["intent"]["name"], "order_status", "{v}");
}

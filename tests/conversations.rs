//! Conversations with the real sentiment head: every customer turn is scored, a conversation
//! that turns sour is flagged at the right turns and for the right reasons, a calm one is not, and
//! a flagged conversation's next question is handed to a person instead of the model.

mod common;

use common::*;
use serde_json::{Value, json};

fn turn(s: &Server, conv: &str, role: &str, text: &str) -> Value {
    turn_on(s, conv, "cust-7", "chat", role, text)
}

fn reasons(v: &Value) -> Vec<String> {
    v["escalation"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect()
}

/// A customer who comes back about one unresolved issue on three channels is flagged and made
/// priority; another issue is not; resolving an earlier contact takes it out of the count.
#[test]
fn repeated_contacts_about_one_issue_across_channels_are_priority() {
    let s = Server::start();
    let c = "cust-repeat";
    let v = turn_on(
        &s,
        "r-chat",
        c,
        "chat",
        "customer",
        "My internet keeps cutting out every few minutes",
    );
    assert!(!reasons(&v).contains(&"repeated_contacts".into()), "{v}");
    let v = turn_on(
        &s,
        "r-email",
        c,
        "email",
        "customer",
        "Following up on my email: my internet connection still keeps dropping",
    );
    assert!(
        !reasons(&v).contains(&"repeated_contacts".into()),
        "two contacts are not yet a pattern: {v}"
    );
    // A different question of the same customer is not a repeat.
    let v = turn_on(
        &s,
        "r-billing",
        c,
        "chat",
        "customer",
        "How do I update my billing address?",
    );
    assert!(!reasons(&v).contains(&"repeated_contacts".into()), "{v}");
    let v = turn_on(
        &s,
        "r-voice",
        c,
        "voice",
        "customer",
        "I'm calling a third time because the internet still cuts out",
    );
    let flag = v["escalation"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "repeated_contacts")
        .unwrap_or_else(|| panic!("not flagged: {v}"));
    assert_eq!(flag["turn"], 1);
    assert!(
        flag["detail"].as_str().unwrap().starts_with("3 contacts"),
        "{v}"
    );
    assert!(
        flag["detail"]
            .as_str()
            .unwrap()
            .contains("chat, email, voice"),
        "{v}"
    );
    assert_eq!(v["escalation"]["flagged"], true);
    assert_eq!(v["escalation"]["priority"], true, "{v}");
    let (_, cust) = s.call_as(AGENT, "GET", &format!("/v1/customers/{c}"), None);
    assert!(
        cust["summary"].as_str().unwrap().contains("PRIORITY"),
        "{cust}"
    );

    // The chat contact is resolved: two unresolved contacts remain, below the policy's three.
    let (status, r) = s.call_as(
        AGENT,
        "POST",
        "/v1/conversations/r-chat/resolve",
        Some(json!({})),
    );
    assert_eq!(status, 200, "{r}");
    assert!(r["resolved_at"].is_string(), "{r}");
    let (_, v) = s.call_as(AGENT, "GET", "/v1/conversations/r-voice", None);
    assert!(!reasons(&v).contains(&"repeated_contacts".into()), "{v}");
    assert_eq!(v["escalation"]["priority"], false);
    // The customer writes on the chat again: it is open again, and counts again.
    turn_on(&s, "r-chat", c, "chat", "customer", "It is dropping again.");
    let (_, v) = s.call_as(AGENT, "GET", "/v1/conversations/r-voice", None);
    assert!(reasons(&v).contains(&"repeated_contacts".into()), "{v}");

    let (status, e) = s.call_as(
        AGENT,
        "POST",
        "/v1/conversations/nobody/resolve",
        Some(json!({})),
    );
    assert_eq!(status, 404, "{e}");
    let (status, e) = s.call_as(
        AGENT,
        "POST",
        "/v1/conversations/r-chat/resolve",
        Some(json!({"resolved": "yes"})),
    );
    assert_eq!(status, 422, "{e}");
}

#[test]
fn a_conversation_that_turns_sour_is_flagged_at_the_right_turn() {
    let s = Server::start();
    let conv = "sour-1";
    let v = turn(
        &s,
        conv,
        "customer",
        "Can you tell me how to change my Wi-Fi password?",
    );
    assert_eq!(v["escalation"]["flagged"], false, "{v}");
    turn(
        &s,
        conv,
        "agent",
        "Open the app, go to Wi-Fi settings and choose a new password.",
    );
    let v = turn(
        &s,
        conv,
        "customer",
        "I restarted the router as you said and it is still dropping. This is so frustrating.",
    );
    assert_eq!(v["turns"][2]["sentiment"], "negative", "{v}");
    // From a neutral question to one exasperated report: not yet a pattern, so not flagged
    // (a single complaint is the commonest turn in customer service).
    assert_eq!(v["escalation"]["flagged"], false, "{v}");
    turn(
        &s,
        conv,
        "agent",
        "Sorry about that. Please check that the cable is firmly in.",
    );
    let v = turn(
        &s,
        conv,
        "customer",
        "This is ridiculous, I have been without internet for three days and nobody cares!",
    );
    // The second negative turn in a row flags it, at turn 5.
    let reasons = v["escalation"]["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r["reason"] == "negative_streak" && r["turn"] == 5),
        "{v}"
    );
    // Bot turns are not scored; every customer turn is.
    assert!(v["turns"][1].get("sentiment").is_none(), "{v}");
    assert!(
        v["turns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["role"] == "customer")
            .all(|t| t["valence"].is_number())
    );

    // Read back: the same state, and a worsening mood.
    let (status, got) = s.call_as(AGENT, "GET", &format!("/v1/conversations/{conv}"), None);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["escalation"], v["escalation"]);
    assert_eq!(got["mood"]["direction"], "worsening", "{got}");

    // The answer endpoint now hands off instead of calling a model.
    let (status, a) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/answer",
        Some(json!({"question": "So what now?", "channel": "chat", "conversation_id": conv, "customer_id": "cust-7"})),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["handoff"], true, "{a}");
    assert_eq!(a["handoff_reason"], "escalated", "{a}");
    // The question became a scored customer turn of the same conversation.
    let (_, got) = s.call_as(AGENT, "GET", &format!("/v1/conversations/{conv}"), None);
    let turns = got["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 7, "{got}");
    assert_eq!(turns[5]["text"], "So what now?");
    assert!(turns[5]["sentiment"].is_string(), "{got}");
}

#[test]
fn a_calm_conversation_is_not_flagged_and_asking_for_a_person_is() {
    let s = Server::start();
    let conv = "calm-1";
    turn(
        &s,
        conv,
        "customer",
        "Can you tell me how to change my Wi-Fi password?",
    );
    turn(
        &s,
        conv,
        "agent",
        "Open the app, go to Wi-Fi settings and choose a new password.",
    );
    let v = turn(&s, conv, "customer", "OK, I will try that now.");
    assert_eq!(v["escalation"]["flagged"], false, "{v}");
    assert_eq!(v["escalation"]["reasons"], json!([]), "{v}");

    let v = turn(&s, "zh-1", "customer", "我要转人工");
    assert_eq!(v["escalation"]["flagged"], true, "{v}");
    assert_eq!(
        v["escalation"]["reasons"][0]["reason"], "human_requested",
        "{v}"
    );
    // Every turn carries its language with a confidence, and a mixed one says so.
    assert_eq!(v["turns"][0]["language"]["language"], "zh", "{v}");
    let (_, calm) = s.call("GET", "/v1/conversations/calm-1", None);
    for t in calm["turns"].as_array().unwrap() {
        assert_eq!(t["language"]["language"], "en", "{t}");
        assert!(t["language"]["confidence"].as_f64().unwrap() > 0.5, "{t}");
    }
    let v = turn(
        &s,
        "mixed-1",
        "customer",
        "我的order还没到，tracking number查不到",
    );
    let lang = &v["turns"][0]["language"];
    assert_eq!(
        (&lang["language"], &lang["mixed_with"]),
        (&json!("zh"), &json!("en")),
        "{v}"
    );
}

#[test]
fn sentiment_scores_english_and_chinese() {
    let s = Server::start();
    let (status, v) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/sentiment",
        Some(json!({"texts": [
            "This is ridiculous, I have been without internet for three days and nobody cares!",
            "三天都没网了，你们根本不管，太差劲了！",
            "OK, I will try that now.",
        ]})),
    );
    assert_eq!(status, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["label"], "negative", "{v}");
    assert_eq!(r[1]["label"], "negative", "{v}");
    assert_ne!(r[2]["label"], "negative", "{v}");
    for x in r {
        let sum: f64 = ["negative", "neutral", "positive"]
            .iter()
            .map(|k| x["scores"][k].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-3, "{x}");
    }
    // One text alone, with a label of its own to get right.
    let (status, one) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/sentiment",
        Some(json!({"text": "谢谢，问题已经解决了，非常满意。"})),
    );
    assert_eq!(status, 200);
    assert_eq!(one["results"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["results"][0]["label"], "positive", "{one}");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = Server::start();
    for body in [
        json!({}),
        json!({"text": "a", "texts": ["b"]}),
        json!({"texts": []}),
        json!({"text": "   "}),
        json!({"text": "x".repeat(2001)}),
        json!({"texts": vec!["a"; 65]}),
    ] {
        let (status, v) = s.call_as(CHANNEL, "POST", "/v1/sentiment", Some(body.clone()));
        assert_eq!(status, 422, "{body} -> {v}");
        assert_eq!(error_code(&v), "invalid_request");
    }
    turn(&s, "owned", "customer", "hello");
    for (body, want) in [
        (
            json!({"customer_id": "cust-7", "channel": "fax", "role": "customer", "text": "hi"}),
            422,
        ),
        (
            json!({"customer_id": "cust-7", "channel": "chat", "role": "robot", "text": "hi"}),
            422,
        ),
        (
            json!({"customer_id": "cust-7", "channel": "chat", "role": "customer", "text": ""}),
            422,
        ),
        // For this channel's customer, another customer's conversation does not exist.
        (
            json!({"customer_id": "someone-else", "channel": "chat", "role": "customer", "text": "hi"}),
            404,
        ),
    ] {
        let (status, v) = s.call_as(
            CHANNEL,
            "POST",
            "/v1/conversations/owned/turns",
            Some(body.clone()),
        );
        assert_eq!(status, want, "{body} -> {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (status, v) = s.call_as(AGENT, "GET", "/v1/conversations/owned", None);
    assert_eq!(status, 200);
    assert_eq!(
        v["turns"].as_array().unwrap().len(),
        1,
        "refused turns are not stored: {v}"
    );
    let (status, _) = s.call_as(
        AGENT,
        "GET",
        "/v1/conversations/owned?customer_id=someone-else",
        None,
    );
    assert_eq!(status, 409);
    let (status, v) = s.call_as(AGENT, "GET", "/v1/conversations/nobody", None);
    assert_eq!(status, 404, "{v}");
}

#[test]
fn with_sentiment_disabled_the_endpoint_says_so_and_turns_still_work() {
    let s = Server::start_with(&[
        (
            "KEFU_API_KEYS",
            &format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}"),
        ),
        ("KEFU_SENTIMENT", "none"),
    ]);
    let (status, v) = s.call_as(
        CHANNEL,
        "POST",
        "/v1/sentiment",
        Some(json!({"text": "hi"})),
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(error_code(&v), "unavailable");
    let v = turn(&s, "c", "customer", "I want to talk to a real person");
    assert!(v["turns"][0].get("sentiment").is_none(), "{v}");
    assert_eq!(
        v["escalation"]["reasons"][0]["reason"], "human_requested",
        "{v}"
    );
}

const ROUTER: (&str, &str) = (
    "Resetting the RT-AX58U router",
    "To factory-reset the RT-AX58U router, hold the recessed RESET button on the back for 10 seconds with a paperclip until the power LED blinks. The router restarts in about 2 minutes. The default Wi-Fi name and password are printed on the label under the router.",
);

/// A customer who moves from chat to voice keeps their context: the follow-up in the new voice
/// conversation is answered from the card of the chat question, and the customer view shows
/// both conversations.
#[test]
fn a_chat_that_moves_to_voice_keeps_its_context() {
    let s = keys_and("smollm2-135m", &[]);
    let router = s.card(ROUTER.0, ROUTER.1, json!({}));
    let ask = |body: Value| {
        let (status, a) = s.call_as(CHANNEL, "POST", "/v1/answer", Some(body));
        assert_eq!(status, 200, "{a}");
        a
    };
    let a = ask(
        json!({"question": "How do I factory reset my router?", "channel": "chat",
                        "conversation_id": "chat-1", "customer_id": "cust-x"}),
    );
    assert_eq!(a["handoff"], false, "{a}");
    let follow_up = "And where do I find the password afterwards?";
    // Alone, with no history, the follow-up is not enough to answer from.
    let alone =
        ask(json!({"question": follow_up, "channel": "voice", "customer_id": "someone-new"}));
    assert_eq!(alone["handoff"], true, "{alone}");
    // The same customer on a new voice conversation: the chat comes along.
    let v = ask(json!({"question": follow_up, "channel": "voice",
                        "conversation_id": "voice-1", "customer_id": "cust-x"}));
    assert_eq!(v["handoff"], false, "{v}");
    assert_eq!(v["citations"][0]["card_id"], json!(router), "{v}");

    let (status, c) = s.call_as(AGENT, "GET", "/v1/customers/cust-x", None);
    assert_eq!(status, 200, "{c}");
    let ids: Vec<&str> = c["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["voice-1", "chat-1"], "most recent first: {c}");
    assert_eq!(c["channels"], json!(["chat", "voice"]), "{c}");
    assert!(c["summary"].as_str().unwrap().contains(follow_up), "{c}");
    assert_eq!(c["latest"]["id"], "voice-1", "{c}");
    let (status, _) = s.call_as(AGENT, "GET", "/v1/customers/nobody", None);
    assert_eq!(status, 404);

    // The voice call goes to an agent: the hand-off summary says what was asked, what was
    // answered from which card, what is still open and how the customer feels.
    let gift = ask(
        json!({"question": "Do you also sell gift cards?", "channel": "voice",
                           "conversation_id": "voice-1", "customer_id": "cust-x"}),
    );
    assert_eq!(gift["handoff"], true, "{gift}");
    let (status, h) = s.call_as(AGENT, "GET", "/v1/conversations/voice-1/handoff", None);
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["customer_id"], "cust-x");
    assert_eq!(
        h["asked"],
        json!([follow_up, "Do you also sell gift cards?"]),
        "{h}"
    );
    assert_eq!(h["answered"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(
        h["answered"][0]["citations"][0]["card_id"],
        json!(router),
        "{h}"
    );
    assert_eq!(
        h["unresolved"][0]["text"], "Do you also sell gift cards?",
        "{h}"
    );
    assert_eq!(
        h["unresolved"][0]["why"], "handed_off: no_relevant_card",
        "{h}"
    );
    assert_eq!(h["other_contacts"][0]["conversation_id"], "chat-1", "{h}");
    let summary = h["summary"].as_str().unwrap();
    assert!(summary.contains(ROUTER.0), "{summary}");
    assert!(summary.contains("Still open"), "{summary}");
    // An angry turn nobody has answered yet is open too, and the feeling says so.
    turn_on(
        &s,
        "voice-1",
        "cust-x",
        "voice",
        "customer",
        "This is useless, I still cannot get online and I am furious!",
    );
    let (_, h) = s.call_as(AGENT, "GET", "/v1/conversations/voice-1/handoff", None);
    assert_eq!(h["feeling"]["last"], "negative", "{h}");
    assert!(
        h["unresolved"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["why"] == "no_reply" && u["text"].as_str().unwrap().contains("furious")),
        "{h}"
    );
    // Resolved: nothing is open.
    s.call_as(
        AGENT,
        "POST",
        "/v1/conversations/voice-1/resolve",
        Some(json!({"resolved": true})),
    );
    let (_, h) = s.call_as(AGENT, "GET", "/v1/conversations/voice-1/handoff", None);
    assert_eq!(h["resolved"], true);
    assert_eq!(h["unresolved"], json!([]), "{h}");
    let (status, _) = s.call_as(AGENT, "GET", "/v1/conversations/nobody/handoff", None);
    assert_eq!(status, 404);
}

const WIDGET: &str = "widget-key-0123456789";
const WIDGET_SECRET: &str = "widget-identity-secret-0123456789";

/// What a widget's backend sends with each request: the customer id and its signature.
fn signed(customer: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WIDGET_SECRET.as_bytes()).unwrap();
    mac.update(customer.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A server with the three test keys and a browser widget's channel key, which needs signed
/// customer ids.
fn with_widget() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kefu.toml");
    let mut toml = String::new();
    for (role, key) in [("admin", ADMIN), ("agent", AGENT), ("channel", CHANNEL)] {
        toml.push_str(&format!(
            "[[auth.keys]]\nrole = \"{role}\"\nkey = \"{key}\"\n"
        ));
    }
    toml.push_str(&format!(
        "[[auth.keys]]\nname = \"web-widget\"\nrole = \"channel\"\nkey = \"{WIDGET}\"\nidentity_secret = \"{WIDGET_SECRET}\"\n"
    ));
    std::fs::write(&file, toml).unwrap();
    (
        Server::start_with(&[("KEFU_CONFIG", file.to_str().unwrap())]),
        dir,
    )
}

/// Issue 16, finding 1: a channel acts for one customer and reaches only that customer's
/// conversations; a widget key's customer must come signed; only the right keys write each kind
/// of turn; the hand-off summary is for staff.
#[test]
fn customers_are_kept_apart() {
    let (s, _dir) = with_widget();
    turn_on(
        &s,
        "alice-1",
        "alice",
        "chat",
        "customer",
        "My order has not arrived yet",
    );
    turn_on(
        &s,
        "alice-1",
        "alice",
        "chat",
        "agent",
        "Let me check the tracking for you.",
    );
    let before = s.call_as(AGENT, "GET", "/v1/conversations/alice-1", None).1;
    assert_eq!(before["turns"].as_array().unwrap().len(), 2, "{before}");

    let call =
        |key: &str, headers: &[(&str, &str)], method: &str, path: &str, body: Option<Value>| {
            let mut r = s.req(method, path, Some(key));
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            if let Some(b) = body {
                r = r.json(&b);
            }
            parts(r.send().unwrap())
        };
    let bob_turn = json!({"customer_id": "bob", "channel": "chat", "text": "hi"});
    let as_bob = [("x-kefu-customer", "bob")];
    // A plain channel key acting for bob: alice's conversation does not exist for it.
    let none: &[(&str, &str)] = &[];
    for (headers, method, path, body, want) in [
        (none, "GET", "/v1/conversations/alice-1", None, 422),
        (
            none,
            "GET",
            "/v1/conversations/alice-1?customer_id=bob",
            None,
            404,
        ),
        (&as_bob[..], "GET", "/v1/conversations/alice-1", None, 404),
        (
            none,
            "POST",
            "/v1/conversations/alice-1/turns",
            Some(bob_turn.clone()),
            404,
        ),
        (
            none,
            "POST",
            "/v1/conversations/alice-1/resolve",
            Some(json!({"customer_id": "bob"})),
            404,
        ),
        (&as_bob[..], "GET", "/v1/customers/alice", None, 403),
        (
            none,
            "GET",
            "/v1/conversations/alice-1/handoff?customer_id=alice",
            None,
            403,
        ),
    ] {
        let (st, e) = call(CHANNEL, headers, method, path, body);
        assert_eq!(st, want, "{method} {path}: {e}");
        assert!(e["error"]["message"].is_string(), "{e}");
    }
    // A channel writes customer turns only; nobody writes bot turns; an agent writes agent turns.
    for (key, role) in [
        (CHANNEL, "agent"),
        (CHANNEL, "bot"),
        (AGENT, "customer"),
        (ADMIN, "bot"),
    ] {
        let body = json!({"customer_id": "alice", "channel": "chat", "role": role, "text": "Your refund of $500 is approved."});
        let (st, e) = call(
            key,
            &[],
            "POST",
            "/v1/conversations/alice-1/turns",
            Some(body),
        );
        assert_eq!(st, 403, "{role}: {e}");
        assert_eq!(error_code(&e), "forbidden");
    }

    // The widget key: no customer, an unsigned one, a forged signature: 401.
    let bad_sig = signed("mallory");
    for headers in [
        vec![],
        vec![("x-kefu-customer", "alice")],
        vec![
            ("x-kefu-customer", "alice"),
            ("x-kefu-customer-signature", bad_sig.as_str()),
        ],
    ] {
        let (st, e) = call(
            WIDGET,
            &headers,
            "GET",
            "/v1/conversations/alice-1?customer_id=alice",
            None,
        );
        assert_eq!(st, 401, "{headers:?}: {e}");
        assert_eq!(error_code(&e), "unauthorized");
    }
    // Signed for bob, the widget key reads bob's data only, whatever the body claims.
    let bob_sig = signed("bob");
    let bob = [
        ("x-kefu-customer", "bob"),
        ("x-kefu-customer-signature", bob_sig.as_str()),
    ];
    let (st, e) = call(
        WIDGET,
        &bob,
        "GET",
        "/v1/conversations/alice-1?customer_id=alice",
        None,
    );
    assert_eq!(st, 403, "{e}");
    let (st, e) = call(WIDGET, &bob, "GET", "/v1/conversations/alice-1", None);
    assert_eq!(st, 404, "{e}");
    let (st, v) = call(
        WIDGET,
        &bob,
        "POST",
        "/v1/conversations/bob-1/turns",
        Some(json!({"channel": "chat", "text": "Where is my parcel?"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["customer_id"], "bob", "{v}");
    assert_eq!(v["turns"][0]["role"], "customer", "{v}");
    let (st, v) = call(WIDGET, &bob, "GET", "/v1/customers/bob", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["conversations"].as_array().unwrap().len(), 1, "{v}");

    // Signed for alice, the same key reads alice's conversation.
    let alice_sig = signed("alice");
    let alice = [
        ("x-kefu-customer", "alice"),
        ("x-kefu-customer-signature", alice_sig.as_str()),
    ];
    let (st, v) = call(WIDGET, &alice, "GET", "/v1/conversations/alice-1", None);
    assert_eq!(st, 200, "{v}");

    // Nothing the others tried changed alice's conversation; staff still read everything.
    let after = s.call_as(AGENT, "GET", "/v1/conversations/alice-1", None).1;
    assert_eq!(after["turns"], before["turns"]);
    assert!(after["resolved_at"].is_null(), "{after}");
    let (st, h) = s.call_as(AGENT, "GET", "/v1/conversations/alice-1/handoff", None);
    assert_eq!(st, 200, "{h}");
}

#[test]
fn staff_list_conversations_by_state_and_bad_filters_are_refused() {
    let s = keys_and("none", &[]);
    turn_on(
        &s,
        "c-calm",
        "cust-1",
        "chat",
        "customer",
        "Hello, where can I see my invoices?",
    );
    turn_on(
        &s,
        "c-mail",
        "cust-2",
        "email",
        "customer",
        "Please send me a copy of my receipt.",
    );
    turn_on(
        &s,
        "c-angry",
        "cust-3",
        "chat",
        "customer",
        "I want to talk to a human agent right now!",
    );
    let (st, v) = s.call_as(
        AGENT,
        "POST",
        "/v1/conversations/c-mail/resolve",
        Some(json!({})),
    );
    assert_eq!(st, 200, "{v}");
    let ids = |query: &str| -> Vec<String> {
        let (st, v) = s.call_as(AGENT, "GET", &format!("/v1/conversations?{query}"), None);
        assert_eq!(st, 200, "{query}: {v}");
        v["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Newest first.
    assert_eq!(ids(""), ["c-angry", "c-mail", "c-calm"]);
    assert_eq!(ids("escalated=true"), ["c-angry"]);
    assert_eq!(ids("escalated=false"), ["c-mail", "c-calm"]);
    assert_eq!(ids("channel=email"), ["c-mail"]);
    assert_eq!(ids("resolved=true"), ["c-mail"]);
    assert_eq!(ids("resolved=false&channel=chat"), ["c-angry", "c-calm"]);
    assert_eq!(ids("limit=1"), ["c-angry"]);
    let (_, v) = s.call_as(AGENT, "GET", "/v1/conversations?escalated=true", None);
    let c = &v["conversations"][0];
    assert_eq!(c["escalation_reason"], "human_requested", "{c}");
    assert_eq!(c["customer_id"], "cust-3");
    assert_eq!(c["turns"], 1);
    assert!(c["route"]["queue"].is_string(), "{c}");
    let queue = c["route"]["queue"].as_str().unwrap().to_string();
    let priority = c["route"]["priority"].as_str().unwrap().to_string();
    assert!(ids(&format!("queue={queue}")).contains(&"c-angry".to_string()));
    assert!(ids(&format!("priority={priority}")).contains(&"c-angry".to_string()));
    assert_eq!(ids("queue=no-such-queue"), Vec::<String>::new());
    let intent = c["intent"]
        .as_str()
        .expect("every customer turn has an intent");
    assert!(ids(&format!("intent={intent}")).contains(&"c-angry".to_string()));
    for bad in [
        "limit=0",
        "limit=201",
        "priority=asap",
        "channel=fax",
        "escalated=maybe",
        "colour=red",
    ] {
        let (st, v) = s.call_as(AGENT, "GET", &format!("/v1/conversations?{bad}"), None);
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["error"]["message"].is_string(), "{bad}: {v}");
    }
}

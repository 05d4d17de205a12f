//! Analytics, card records, the review queue and knowledge gaps over HTTP, with the real
//! embedder and store: every figure is checked against counts the test makes itself from what
//! it sent and what the answers said.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const REFUND: (&str, &str) = (
    "Returning an item",
    "You can return any item within 30 days of delivery for a full refund. Start the return in the app under Orders, print the label and drop the parcel at any post office.",
);
const SHIPPING: (&str, &str) = (
    "配送时间",
    "普通快递在下单后3到5个工作日送达，偏远地区需要7个工作日。下单后可以在App的订单页面查看物流信息。",
);

/// What the test sent: the question, its channel and language, and what came back.
struct Asked {
    channel: &'static str,
    language: &'static str,
    reply: Value,
}

fn report(s: &Server, name: &str, query: &str) -> Value {
    let (status, v) = s.call_as(ADMIN, "GET", &format!("/v1/analytics/{name}?{query}"), None);
    assert_eq!(status, 200, "{name}: {v}");
    assert_eq!(v["report"], name);
    v
}

fn rows(v: &Value) -> &Vec<Value> {
    v["rows"].as_array().unwrap()
}

#[test]
fn analytics_match_what_was_asked_and_down_ratings_flag_cards() {
    let s = Server::start();
    let refund = s.card(REFUND.0, REFUND.1, json!({}));
    let shipping = s.card(SHIPPING.0, SHIPPING.1, json!({}));

    // Two covered questions, three about paying in crypto (one in Chinese), one about jobs.
    let questions: [(&str, &str, &str); 6] = [
        (
            "How many days do I have to return an item for a refund?",
            "chat",
            "en",
        ),
        ("下单后几天能送到？", "social", "zh"),
        ("Can I pay with bitcoin?", "chat", "en"),
        ("Do you accept cryptocurrency like USDT?", "email", "en"),
        ("可以用比特币付款吗？", "chat", "zh"),
        ("Are you hiring?", "chat", "en"),
    ];
    let mut asked = Vec::new();
    for (i, (q, channel, language)) in questions.iter().enumerate() {
        let (status, reply) = s.call_channel(
            "POST",
            "/v1/answer",
            Some(json!({"question": q, "channel": channel,
                        "conversation_id": format!("conv-{i}"), "customer_id": format!("cust-{i}")})),
        );
        assert_eq!(status, 200, "{reply}");
        asked.push(Asked {
            channel,
            language,
            reply,
        });
    }
    // The covered ones are answered from their cards; the others are handed off as gaps.
    assert_eq!(asked[0].reply["handoff"], false, "{}", asked[0].reply);
    assert_eq!(cited(&asked[0].reply), [refund.as_str()]);
    assert_eq!(asked[1].reply["handoff"], false, "{}", asked[1].reply);
    assert_eq!(cited(&asked[1].reply), [shipping.as_str()]);
    for a in &asked[2..] {
        assert_eq!(a.reply["handoff_reason"], "no_relevant_card", "{}", a.reply);
    }

    // Ratings: the refund answer down with a comment, the shipping one up.
    let rate = |a: &Asked, customer: &str, body: Value| {
        let id = a.reply["answer_id"].as_str().unwrap();
        let (st, f) = parts(
            s.req("POST", &format!("/v1/answers/{id}/feedback"), Some(CHANNEL))
                .header("x-kefu-customer", customer)
                .json(&body)
                .send()
                .unwrap(),
        );
        assert_eq!(st, 201, "{f}");
    };
    rate(
        &asked[0],
        "cust-0",
        json!({"rating": "down", "comment": "the app has no Orders tab"}),
    );
    rate(&asked[1], "cust-1", json!({"rating": "up"}));

    // Deflection: per channel, the answers sent and those not handed off, counted here.
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for a in &asked {
        let e = want.entry(a.channel.to_string()).or_default();
        e.0 += 1;
        e.1 += i64::from(a.reply["handoff"] == false);
    }
    let d = report(&s, "deflection", "granularity=day");
    let mut got: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in rows(&d) {
        let e = got
            .entry(r["channel"].as_str().unwrap().to_string())
            .or_default();
        e.0 += r["answers"].as_i64().unwrap();
        e.1 += r["answered"].as_i64().unwrap();
    }
    assert_eq!(got, want, "{d}");

    // Hand-offs by reason, as the answers said.
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for a in asked.iter().filter(|a| a.reply["handoff"] == true) {
        *want
            .entry(a.reply["handoff_reason"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let h = report(&s, "handoffs", "granularity=hour");
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for r in rows(&h) {
        *got.entry(r["reason"].as_str().unwrap().into()).or_default() +=
            r["handoffs"].as_i64().unwrap();
    }
    assert_eq!(got, want, "{h}");

    // Volume: one customer turn per question, by channel and language.
    let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
    for a in &asked {
        *want
            .entry((a.channel.into(), a.language.into()))
            .or_default() += 1;
    }
    let v = report(&s, "volume", "granularity=week");
    let mut got: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in rows(&v) {
        let key = (
            r["channel"].as_str().unwrap().to_string(),
            r["language"].as_str().unwrap().to_string(),
        );
        *got.entry(key).or_default() += r["turns"].as_i64().unwrap();
    }
    assert_eq!(got, want, "{v}");

    let sat = report(&s, "satisfaction", "");
    assert_eq!(rows(&sat).len(), 1, "{sat}");
    assert_eq!(
        (&rows(&sat)[0]["up"], &rows(&sat)[0]["down"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(rows(&sat)[0]["satisfaction"], 0.5);

    // Every customer turn was read for sentiment.
    let senti = report(&s, "sentiment", "");
    let turns: i64 = rows(&senti)
        .iter()
        .map(|r| r["turns"].as_i64().unwrap())
        .sum();
    assert_eq!(turns, asked.len() as i64, "{senti}");

    // Every customer turn was read for its intent; emotions name only the five.
    let topics = report(&s, "topics", "");
    let turns: i64 = rows(&topics)
        .iter()
        .map(|r| r["turns"].as_i64().unwrap())
        .sum();
    assert_eq!(turns, asked.len() as i64, "{topics}");
    assert!(rows(&topics).iter().all(|r| r["previous"] == 0), "{topics}");
    let emotions = report(&s, "emotions", "granularity=hour");
    for r in rows(&emotions) {
        let e = r["emotion"].as_str().unwrap();
        assert!(
            ["anger", "frustration", "confusion", "urgency", "gratitude"].contains(&e),
            "{emotions}"
        );
        assert!(r["turns"].as_i64().unwrap() <= asked.len() as i64);
    }

    // Top cards: the citations the answers carried.
    let top = report(&s, "top_cards", "");
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for a in &asked {
        for c in cited(&a.reply) {
            *want.entry(c).or_default() += 1;
        }
    }
    let got: BTreeMap<String, i64> = rows(&top)
        .iter()
        .map(|r| {
            (
                r["card_id"].as_str().unwrap().to_string(),
                r["cited"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "{top}");
    let weak = report(&s, "weak_cards", "");
    assert_eq!(rows(&weak).len(), 1, "{weak}");
    assert_eq!(rows(&weak)[0]["card_id"], refund.as_str());

    // The down-rating flags the card it cited: first in the review queue, with the comment.
    let (st, q) = s.call_as(ADMIN, "GET", "/v1/review", None);
    assert_eq!(st, 200, "{q}");
    let first = &q["cards"][0];
    assert_eq!(first["card_id"], refund.as_str(), "{q}");
    assert_eq!(first["open_flags"], 1);
    assert_eq!(first["flags"][0]["comment"], "the app has no Orders tab");
    let (st, r) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{shipping}/record"), None);
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["cited"].as_i64(), r["rated_up"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(r["open_flags"], 0);

    // Gaps: the three crypto questions, English and Chinese, are one gap; jobs another; the
    // rated-down refund question a third.
    let g = report(&s, "gaps", "");
    let gaps = rows(&g);
    let ids = |i: usize| asked[i].reply["answer_id"].as_str().unwrap().to_string();
    let crypto: Vec<String> = (2..5).map(ids).collect();
    let gap = gaps
        .iter()
        .find(|g| {
            g["answer_ids"]
                .as_array()
                .unwrap()
                .contains(&json!(crypto[0]))
        })
        .unwrap_or_else(|| panic!("no crypto gap: {g}"));
    let mut members: Vec<String> = gap["answer_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    members.sort();
    let mut expected = crypto.clone();
    expected.sort();
    assert_eq!(members, expected, "{g}");
    assert_eq!(gap["questions"], 3);
    assert_eq!(gap["languages"], json!({"en": 2, "zh": 1}));
    assert_eq!(gap["previous"], 0);
    assert_eq!(gaps.len(), 3, "{g}");
    assert!(gaps.iter().all(|g| g["drafts"] == json!([])), "{g}");

    // CSV: the same rows, with a header; a formula typed by a customer is defused.
    let res = s
        .req("GET", "/v1/analytics/gaps?format=csv", Some(ADMIN))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = res.text().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "gap_id,label,questions,previous,change,spike,languages,examples,drafts"
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(text.contains("en:2 zh:1"), "{text}");
    let res = s
        .req("GET", "/v1/analytics/deflection?format=csv", Some(ADMIN))
        .send()
        .unwrap();
    let text = res.text().unwrap();
    let sent: i64 = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(sent, asked.len() as i64, "{text}");

    // A gap no agent answered: a draft card holding its questions, for an admin to answer.
    let (st, d) = s.call_as(
        ADMIN,
        "POST",
        "/v1/gaps/draft",
        Some(json!({"answer_ids": crypto})),
    );
    assert_eq!(st, 201, "{d}");
    assert_eq!(d["queued"], json!([]));
    assert_eq!(d["card"]["status"], "draft");
    assert_eq!(d["card"]["tags"], json!(["gap"]));
    let body = d["card"]["body"].as_str().unwrap();
    assert!(body.contains("USDT") && body.contains("比特币"), "{body}");

    // A gap an agent answered: the conversation is mined, and the gap then shows the draft.
    turn_on(
        &s,
        "conv-5",
        "cust-5",
        "agent",
        "agent",
        "We are hiring support staff in Shanghai. Apply on the careers page of our website.",
    );
    let (st, d) = s.call_as(
        ADMIN,
        "POST",
        "/v1/gaps/draft",
        Some(json!({"answer_ids": [ids(5)]})),
    );
    assert_eq!(st, 201, "{d}");
    assert_eq!(d["queued"], json!(["conv-5"]));
    let start = Instant::now();
    let drafted = loop {
        let g = report(&s, "gaps", "");
        let jobs = rows(&g)
            .iter()
            .find(|g| g["conversation_ids"] == json!(["conv-5"]))
            .map(|g| g["drafts"].clone())
            .unwrap();
        if jobs != json!([]) {
            break jobs;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the gap's conversation was never mined: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let card = drafted[0].as_str().unwrap();
    let (_, c) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{card}"), None);
    assert_eq!(c["status"], "in_review", "{c}");
    assert!(c["body"].as_str().unwrap().contains("careers page"), "{c}");

    // Editing the flagged card answers its flag: it leaves the review queue.
    let (st, c) = s.call_as(
        ADMIN,
        "PATCH",
        &format!("/v1/cards/{refund}"),
        Some(json!({"body": format!("{} Returns are in the app under Account > Returns.", REFUND.1)})),
    );
    assert_eq!(st, 200, "{c}");
    let (_, r) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{refund}/record"), None);
    assert_eq!(r["open_flags"], 0, "{r}");
    assert_eq!(r["rated_down"], 1, "the record keeps the rating");
    let (_, q) = s.call_as(ADMIN, "GET", "/v1/review", None);
    assert!(
        q["cards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["card_id"] != refund.as_str()),
        "{q}"
    );

    // The live counters.
    let m = s.metrics();
    assert_eq!(
        metric(&m, "kefu_feedback_total", "rating=\"down\""),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "kefu_feedback_total", "rating=\"up\""),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "kefu_answers_total", "outcome=\"no_relevant_card\""),
        Some(4.0)
    );
}

#[test]
fn bad_analytics_requests_get_clear_errors() {
    let s = Server::start();
    for (query, status, code) in [
        ("/v1/analytics/revenue", 404, "not_found"),
        (
            "/v1/analytics/volume?granularity=month",
            422,
            "invalid_request",
        ),
        ("/v1/analytics/volume?format=xml", 422, "invalid_request"),
        ("/v1/analytics/volume?from=yesterday", 400, "invalid_query"),
        (
            "/v1/analytics/volume?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
            422,
            "invalid_request",
        ),
        (
            "/v1/analytics/volume?from=2020-01-01T00:00:00Z&to=2026-11-01T00:00:00Z",
            422,
            "invalid_request",
        ),
        ("/v1/analytics/volume?colour=red", 400, "invalid_query"),
        ("/v1/review?limit=ten", 400, "invalid_query"),
        ("/v1/cards/no-such-card/record", 404, "not_found"),
    ] {
        let (st, e) = s.call_as(ADMIN, "GET", query, None);
        assert_eq!(
            (st, error_code(&e).as_str()),
            (status, code),
            "{query}: {e}"
        );
    }
    // An agent may not read analytics.
    let (st, e) = s.call_as(AGENT, "GET", "/v1/analytics/volume", None);
    assert_eq!(st, 403, "{e}");
    for body in [json!({"answer_ids": []}), json!({"answer_ids": ["nope"]})] {
        let (st, e) = s.call_as(ADMIN, "POST", "/v1/gaps/draft", Some(body.clone()));
        assert!(st == 422 || st == 404, "{body}: {st} {e}");
        assert!(e["error"]["message"].is_string(), "{e}");
    }
    // An empty store: empty reports, not errors.
    let (st, v) = s.call_as(ADMIN, "GET", "/v1/analytics/gaps", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rows"], json!([]));
}

//! Admins curating cards over HTTP: lifecycle, versions, audit, listing, compliance, import.

mod common;

use common::{ADMIN, Server, error_code, parts};
use serde_json::json;

#[test]
fn lifecycle_versions_and_audit() {
    let s = Server::start();
    let c = s.create(
        "Return window",
        "Items can be returned within 30 days of delivery.",
        json!({ "tags": ["Returns", "policy"], "channels": ["chat", "email"] }),
    );
    let id = c["id"].as_str().unwrap();
    assert_eq!(c["status"], "draft");
    assert_eq!(c["version"], 1);
    assert_eq!(c["language"], "en", "detected from the text");
    assert_eq!(c["tags"], json!(["returns", "policy"]));

    let (st, got) = s.call("GET", &format!("/v1/cards/{id}"), None);
    assert_eq!((st, &got["title"]), (200, &json!("Return window")));

    let (st, v2) = s.call("PATCH", &format!("/v1/cards/{id}"), Some(json!({ "body": "Items can be returned within 14 days of delivery.", "expected_version": 1 })));
    assert_eq!(st, 200, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["title"], "Return window", "untouched fields stay");

    // A writer that read version 1 does not overwrite version 2.
    let (st, body) = s.call(
        "PATCH",
        &format!("/v1/cards/{id}"),
        Some(json!({ "title": "Stale edit", "expected_version": 1 })),
    );
    assert_eq!((st, error_code(&body).as_str()), (409, "conflict"));

    let (st, c) = s.call("POST", &format!("/v1/cards/{id}/submit"), None);
    assert_eq!((st, &c["status"]), (200, &json!("in_review")));
    let c = s.publish(id);
    assert_eq!(c["status"], "published");
    let (st, c) = s.call("POST", &format!("/v1/cards/{id}/archive"), None);
    assert_eq!((st, &c["status"]), (200, &json!("archived")));
    // Archived cards cannot go back to review, only be published again.
    let (st, body) = s.call("POST", &format!("/v1/cards/{id}/submit"), None);
    assert_eq!((st, error_code(&body).as_str()), (409, "conflict"));

    let (_, h) = s.call("GET", &format!("/v1/cards/{id}/versions"), None);
    let versions = h["versions"].as_array().unwrap();
    let statuses: Vec<&str> = versions
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["draft", "draft", "in_review", "published", "archived"]
    );
    assert!(
        versions[0]["body"].as_str().unwrap().contains("30 days"),
        "history keeps the old text"
    );
    assert!(versions[1]["body"].as_str().unwrap().contains("14 days"));

    let (_, a) = s.call("GET", &format!("/v1/audit?card_id={id}"), None);
    let actions: Vec<&str> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["archive", "publish", "submit", "update", "create"],
        "newest first"
    );
    for e in a["entries"].as_array().unwrap() {
        assert!(e["actor"].as_str().unwrap().starts_with("admin:"), "{e}");
        assert!(e["at"].as_str().unwrap().contains('T'));
    }
}

#[test]
fn listing_filters_by_status_tag_and_text() {
    let s = Server::start();
    let a = s.card(
        "Shipping to Hong Kong",
        "We ship to Hong Kong in 3 days.",
        json!({ "tags": ["shipping"] }),
    );
    let b = s.create(
        "Gift wrapping",
        "Gift wrap costs 5 dollars.",
        json!({ "tags": ["extras"], "channels": ["chat"] }),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let c = s.create(
        "安装宽带",
        "宽带安装需要预约上门。",
        json!({ "tags": ["broadband"] }),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = |q: &str| -> Vec<String> {
        let (st, r) = s.call("GET", &format!("/v1/cards?{q}"), None);
        assert_eq!(st, 200, "{r}");
        r["cards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("status=published"), vec![a.clone()]);
    let mut drafts = ids("status=draft");
    drafts.sort();
    let mut want = vec![b.clone(), c.clone()];
    want.sort();
    assert_eq!(drafts, want);
    assert_eq!(ids("tag=extras"), vec![b.clone()]);
    assert_eq!(ids("q=hong%20kong"), vec![a.clone()]);
    assert_eq!(
        ids(&format!("q={}", "%E5%AE%BD%E5%B8%A6")),
        vec![c.clone()],
        "Chinese text filter (宽带)"
    );
    let (st, r) = s.call("GET", "/v1/cards?limit=1", None);
    assert_eq!(
        (
            st,
            r["total"].as_u64(),
            r["cards"].as_array().unwrap().len()
        ),
        (200, Some(3), 1)
    );
    // Language, and channel: the cards usable there, those for every channel among them.
    assert_eq!(ids("language=zh"), vec![c.clone()]);
    let mut chat = ids("channel=chat");
    chat.sort();
    let mut want = vec![a.clone(), b.clone(), c.clone()];
    want.sort();
    assert_eq!(chat, want);
    let mut email = ids("channel=email");
    email.sort();
    let mut want = vec![a.clone(), c.clone()];
    want.sort();
    assert_eq!(email, want, "a chat-only card is not an email card");
    assert_eq!(ids("language=en&channel=email"), vec![a.clone()]);
    let (st, r) = s.call("GET", "/v1/cards?status=live", None);
    assert_eq!((st, error_code(&r).as_str()), (400, "invalid_query"));
    let (st, r) = s.call("GET", "/v1/cards?channel=fax", None);
    assert_eq!((st, error_code(&r).as_str()), (400, "invalid_query"));
}

#[test]
fn personal_data_blocks_publishing_with_locations() {
    let s = Server::start_with(&[
        ("KEFU_API_KEYS", &format!("admin:{ADMIN}")),
        ("KEFU_COMPLIANCE_ALLOW", "400-820-8820"),
    ]);
    let id = s.create(
        "Callback",
        "客户王先生的电话是 138 0013 8000，请回电。",
        json!({}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, body) = s.call("POST", &format!("/v1/cards/{id}/publish"), None);
    assert_eq!(
        (st, error_code(&body).as_str()),
        (422, "compliance_failed"),
        "{body}"
    );
    let d = &body["error"]["details"][0];
    assert_eq!(
        (d["check"].as_str(), d["field"].as_str()),
        (Some("phone_number"), Some("body"))
    );
    assert_eq!(d["start"], 10, "character offset of the number");
    assert!(
        !d["excerpt"].as_str().unwrap().contains("0013"),
        "the error itself must not repeat the number"
    );
    let (_, c) = s.call("GET", &format!("/v1/cards/{id}"), None);
    assert_eq!(c["status"], "draft", "refused cards stay drafts");

    for (body, check) in [
        (
            "Contact jane.doe@example.com for the refund.",
            "email_address",
        ),
        ("ID on file: 11010519491231002X.", "national_id"),
        (
            "Card 4111 1111 1111 1111 was charged twice.",
            "payment_card",
        ),
    ] {
        let id = s.create("PII", body, json!({}))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, r) = s.call("POST", &format!("/v1/cards/{id}/publish"), None);
        assert_eq!(st, 422, "{body}: {r}");
        assert_eq!(r["error"]["details"][0]["check"], check);
    }
    // The company's own hotline is allowed by configuration; order numbers are not phone numbers.
    s.card(
        "Hotline",
        "Call 400-820-8820 and quote your order number ORD-2024-771234.",
        json!({}),
    );

    // A published card's edit that adds personal data is refused and the live text stays.
    let live = s.card("Opening hours", "We are open 9 to 18 every day.", json!({}));
    let (st, r) = s.call(
        "PATCH",
        &format!("/v1/cards/{live}"),
        Some(json!({ "body": "Ask for Li at li.wei@gmail.com." })),
    );
    assert_eq!((st, error_code(&r).as_str()), (422, "compliance_failed"));
    let (_, c) = s.call("GET", &format!("/v1/cards/{live}"), None);
    assert_eq!(
        (c["version"].as_i64(), c["body"].as_str()),
        (Some(2), Some("We are open 9 to 18 every day."))
    );
}

#[test]
fn import_reports_each_item_and_keeps_the_good_ones() {
    let s = Server::start();
    let jsonl = [
        r#"{"title":"Warranty","body":"Every laptop has a two-year warranty.","tags":["warranty"]}"#,
        r#"{"title":"","body":"empty title"}"#,
        r#"not json at all"#,
        r#"{"title":"Call me","body":"My number is 13800138000."}"#,
        r#"{"titel":"typo","body":"unknown field"}"#,
        r#"{"title":"保修","body":"所有笔记本电脑保修两年。","language":"zh"}"#,
    ]
    .join("\n");
    let res = s
        .req("POST", "/v1/cards/import?publish=true", Some(ADMIN))
        .header("content-type", "application/x-ndjson")
        .body(jsonl)
        .send()
        .unwrap();
    let (st, r) = parts(res);
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["imported"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(4)),
        "{r}"
    );
    let items = r["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "published");
    assert_eq!(items[1]["source"], "body:2");
    assert_eq!(items[1]["error"]["code"], "invalid_card");
    assert_eq!(items[2]["error"]["code"], "invalid_card");
    assert_eq!(items[3]["error"]["code"], "compliance_failed");
    assert_eq!(
        items[3]["status"], "draft",
        "kept as a draft for an editor to fix"
    );
    assert!(
        items[4]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("titel")
    );
    assert_eq!(items[5]["status"], "published");
    assert_eq!(
        s.top("How long is the laptop warranty?"),
        items[0]["id"].as_str().map(String::from)
    );

    // Markdown files with front matter, as multipart, plus a file of an unknown type.
    let md1 = "---\ntitle: 宽带报修\ntags: [broadband, repair]\nlanguage: zh\n---\n宽带断线请先重启光猫，仍无法上网请拨打客服热线报修。\n";
    let md2 = "# Roaming charges\n\nRoaming in the EU costs nothing extra on every plan.\n";
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "a",
            reqwest::blocking::multipart::Part::text(md1).file_name("repair.md"),
        )
        .part(
            "b",
            reqwest::blocking::multipart::Part::text(md2).file_name("roaming.markdown"),
        )
        .part(
            "c",
            reqwest::blocking::multipart::Part::text("x").file_name("notes.docx"),
        );
    let (st, r) = parts(
        s.req("POST", "/v1/cards/import", Some(ADMIN))
            .multipart(form)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (r["imported"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    let id = r["items"][0]["id"].as_str().unwrap();
    let (_, c) = s.call("GET", &format!("/v1/cards/{id}"), None);
    assert_eq!(
        (c["title"].as_str(), c["status"].as_str()),
        (Some("宽带报修"), Some("draft"))
    );
    assert_eq!(c["tags"], json!(["broadband", "repair"]));

    let (st, r) = parts(
        s.req("POST", "/v1/cards/import", Some(ADMIN))
            .header("content-type", "text/csv")
            .body("a,b")
            .send()
            .unwrap(),
    );
    assert_eq!(
        (st, error_code(&r).as_str()),
        (415, "unsupported_media_type")
    );
}

//! Retrieval over published cards with the real embedding model, on every vector backend: the
//! embedded index, and Qdrant when a server is available (see `common::backends`). One suite:
//! each test below runs once per backend.

mod common;

use common::{AGENT, Backend, Server, backends, error_code};
use serde_json::json;

/// A small knowledge base for two businesses, in both languages.
fn seed(s: &Server) -> std::collections::HashMap<&'static str, String> {
    let cards = [
        (
            "password",
            "Reset your account password",
            "Open Settings > Account > Security and choose Forgot password. We e-mail a reset link that is valid for 30 minutes.",
            json!({ "tags": ["account"] }),
        ),
        (
            "refund",
            "Refund timeline",
            "After we receive the returned item, the refund goes back to your original payment method within 7 to 10 working days.",
            json!({ "tags": ["refund", "payments"], "channels": ["chat", "email"] }),
        ),
        (
            "router",
            "RT-AX58U router keeps rebooting",
            "If the RT-AX58U restarts every few minutes, update the firmware to 3.0.0.4 and check that the 19 V power adapter is the original one.",
            json!({ "tags": ["hardware"] }),
        ),
        (
            "delivery",
            "配送时间",
            "普通快递一般3到5个工作日送达，偏远地区可能需要7天。下单后可在“我的订单”中查看物流。",
            json!({ "tags": ["shipping"] }),
        ),
        (
            "roaming",
            "国际漫游怎么开通",
            "在手机营业厅App中选择“国际漫游”并开通即可，出国前24小时内生效，资费按目的地计算。",
            json!({ "tags": ["mobile"], "channels": ["voice"] }),
        ),
        (
            "invoice",
            "Invoice for business customers",
            "Business customers can download a VAT invoice from Orders > Invoice within 90 days of purchase.",
            json!({ "tags": ["payments"] }),
        ),
    ];
    cards
        .into_iter()
        .map(|(k, t, b, extra)| (k, s.card(t, b, extra)))
        .collect()
}

fn finds_by_paraphrase_code_and_language_on(b: &Backend) {
    let s = b.start(&[]);
    let ids = seed(&s);
    // Paraphrases that share few words with the card.
    assert_eq!(
        s.top("I forgot my login, how do I get back in?"),
        Some(ids["password"].clone())
    );
    assert_eq!(
        s.top("when will I get my money back"),
        Some(ids["refund"].clone())
    );
    // An exact product code, in a question that is mostly about something else.
    assert_eq!(s.top("RT-AX58U"), Some(ids["router"].clone()));
    assert_eq!(
        s.top("does the rtax58u need new software"),
        Some(ids["router"].clone())
    );
    // Chinese questions find Chinese cards; a Chinese question finds an English card too.
    assert_eq!(s.top("快递几天能到"), Some(ids["delivery"].clone()));
    assert_eq!(s.top("出国了手机怎么用"), Some(ids["roaming"].clone()));
    assert_eq!(s.top("怎么重置密码"), Some(ids["password"].clone()));
    assert_eq!(
        s.top("我要下载增值税发票 invoice"),
        Some(ids["invoice"].clone()),
        "mixed-language question"
    );

    // An exact code is covered fully; a passage sharing no word with the question not at all
    // (and +0.0); the refund card, which shares only "back", a little.
    let code = &s.search("RT-AX58U", json!({}))[0];
    assert!(code["keyword_coverage"].as_f64().unwrap() > 0.9, "{code}");
    let question = "when will I get my money back";
    let words = |t: &str| -> std::collections::HashSet<String> {
        t.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let para = s.search(question, json!({ "top_k": 10 }));
    let mut disjoint = 0;
    for h in &para {
        let c = h["keyword_coverage"].as_f64().unwrap();
        if h["card_id"] == json!(ids["refund"]) {
            assert!(c > 0.0 && c < 0.5, "{h}");
        } else if words(h["passage"].as_str().unwrap()).is_disjoint(&words(question)) {
            assert!(c == 0.0 && c.is_sign_positive(), "{h}");
            disjoint += 1;
        }
    }
    assert!(disjoint >= 3, "{para:?}");

    let hits = s.search("refund time", json!({ "top_k": 2 }));
    assert_eq!(hits.len(), 2);
    let h = &hits[0];
    assert_eq!(h["title"], "Refund timeline");
    assert!(
        h["passage"]
            .as_str()
            .unwrap()
            .contains("7 to 10 working days")
    );
    assert!(h["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());
    assert!(h["similarity"].as_f64().unwrap() > 0.8);
}

fn filters_and_roles_on(b: &Backend) {
    let s = b.start(&[]);
    let ids = seed(&s);
    let only = |q: &str, filters: serde_json::Value| -> Vec<String> {
        s.search(q, json!({ "filters": filters, "top_k": 10 }))
            .iter()
            .map(|h| h["card_id"].as_str().unwrap().to_string())
            .collect()
    };
    let payments = only("how do I pay", json!({ "tags": ["payments"] }));
    assert_eq!(payments.len(), 2);
    assert!(payments.contains(&ids["refund"]) && payments.contains(&ids["invoice"]));
    assert_eq!(
        only("refund", json!({ "tags": ["payments", "refund"] })),
        vec![ids["refund"].clone()]
    );
    let zh = only("delivery", json!({ "language": "zh" }));
    assert!(!zh.is_empty());
    assert!(
        zh.iter()
            .all(|id| *id == ids["delivery"] || *id == ids["roaming"]),
        "{zh:?}"
    );
    // Cards without channels serve every channel; the refund card is chat/email only.
    let voice = only("refund", json!({ "channel": "voice" }));
    assert!(!voice.contains(&ids["refund"]) && voice.contains(&ids["roaming"]));

    // Agents may search; the answer is the same.
    let (st, r) = s.call_as(
        AGENT,
        "POST",
        "/v1/search",
        Some(json!({ "query": "RT-AX58U" })),
    );
    assert_eq!(
        (st, r["hits"][0]["card_id"].as_str()),
        (200, Some(ids["router"].as_str()))
    );
    let (st, r) = s.call(
        "POST",
        "/v1/search",
        Some(json!({ "query": "x", "top_k": 0 })),
    );
    assert_eq!((st, error_code(&r).as_str()), (422, "invalid_request"));
    let (st, r) = s.call("POST", "/v1/search", Some(json!({ "query": "   " })));
    assert_eq!(st, 422, "{r}");
    let (st, r) = s.call(
        "POST",
        "/v1/search",
        Some(json!({ "query": "x", "filters": { "tag": "a" } })),
    );
    assert_eq!(
        (st, error_code(&r).as_str()),
        (422, "invalid_request"),
        "unknown filter field"
    );
}

fn only_published_cards_are_found_and_edits_reindex_at_once_on(b: &Backend) {
    let s = b.start(&[]);
    let ids = seed(&s);
    let draft = s.create(
        "Loyalty points ZX-9001",
        "Members earn one loyalty point per dollar with code ZX-9001.",
        json!({}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let in_review = s.create(
        "Loyalty points ZX-9002",
        "Members earn two loyalty points per dollar with code ZX-9002.",
        json!({}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.call("POST", &format!("/v1/cards/{in_review}/submit"), None);
    for q in ["ZX-9001", "ZX-9002", "loyalty points per dollar"] {
        let found: Vec<String> = s
            .search(q, json!({ "top_k": 10 }))
            .iter()
            .map(|h| h["card_id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !found.contains(&draft) && !found.contains(&in_review),
            "{q}: unpublished card returned"
        );
    }

    // Archive: gone from search at once.
    let router = &ids["router"];
    s.call("POST", &format!("/v1/cards/{router}/archive"), None);
    let hits = s.search("RT-AX58U rebooting", json!({ "top_k": 10 }));
    assert!(!hits.is_empty(), "other cards are still found");
    assert!(hits.iter().all(|h| h["card_id"] != json!(router)));

    // Edit a published card: the new text is found, the old one no longer.
    let refund = &ids["refund"];
    let (st, _) = s.call(
        "PATCH",
        &format!("/v1/cards/{refund}"),
        Some(
            json!({ "body": "Refunds are credited as store voucher code VX-7788 within 3 days." }),
        ),
    );
    assert_eq!(st, 200);
    let hits = s.search("VX-7788", json!({}));
    assert_eq!(hits[0]["card_id"], json!(refund));
    assert!(hits[0]["passage"].as_str().unwrap().contains("VX-7788"));
    let hits = s.search("refund", json!({ "top_k": 10 }));
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| {
        !h["passage"]
            .as_str()
            .unwrap()
            .contains("7 to 10 working days")
    }));

    // Re-publishing the archived card brings it back.
    s.publish(router);
    assert_eq!(s.top("RT-AX58U"), Some(router.clone()));
    let (_, st) = s.call("GET", "/v1/index/status", None);
    assert_eq!(st["consistent"], true, "{st}");
    assert_eq!(st["published_cards"], 6);
}

fn long_cards_are_chunked_and_the_matching_passage_is_cited_on(b: &Backend) {
    let s = b.start(&[]);
    let mut body = String::new();
    for (i, topic) in [
        "billing address changes",
        "paper invoices",
        "direct debit setup",
        "late payment fees",
    ]
    .iter()
    .enumerate()
    {
        body.push_str(&format!("Section {}: {topic}. ", i + 1));
        body.push_str(&"This section explains the policy in detail, including exceptions for business accounts and students. ".repeat(6));
        if *topic == "late payment fees" {
            body.push_str("A late payment fee of 15 dollars applies when a bill is more than 14 days overdue. ");
        }
        body.push_str("\n\n");
    }
    let id = s.card("Billing handbook", &body, json!({}));
    let hits = s.search("what is the fee if I pay my bill late", json!({}));
    assert_eq!(hits[0]["card_id"], json!(id));
    let passage = hits[0]["passage"].as_str().unwrap();
    assert!(passage.contains("15 dollars"), "cited passage: {passage}");
    assert!(
        passage.len() < body.len() / 2,
        "the passage is a part of the card, not all of it"
    );
    let (_, st) = s.call("GET", "/v1/index/status", None);
    assert!(st["vectors"].as_u64().unwrap() >= 4, "{st}");
}

fn switching_the_embedder_reembeds_published_cards_on(b: &Backend) {
    let mut s = b.start(&[]);
    let id = s.card(
        "Router reset",
        "Hold the reset button on the router for ten seconds until the light blinks.",
        json!({}),
    );
    let draft = s.create(
        "Draft only",
        "This draft must stay out of the index.",
        json!({}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = s.search("how to reset the router", json!({}))[0]["similarity"]
        .as_f64()
        .unwrap();

    s.set_env("KEFU_EMBEDDER", "minilm");
    // A new embedder needs its own sentiment head, which the server would train on start
    // (minutes); this test is about the card vectors.
    s.set_env("KEFU_SENTIMENT", "none");
    s.restart();
    let hits = s.search("how to reset the router", json!({}));
    assert_eq!(hits[0]["card_id"], json!(id));
    let after = hits[0]["similarity"].as_f64().unwrap();
    assert!(
        (after - before).abs() > 1e-3,
        "the vectors come from the new model ({before} vs {after})"
    );
    let (_, st) = s.call("GET", "/v1/index/status", None);
    assert_eq!(
        (
            st["embedder"].as_str(),
            st["consistent"].as_bool(),
            st["published_cards"].as_u64()
        ),
        (Some("minilm"), Some(true), Some(1)),
        "{st}"
    );
    let hits = s.search("draft index", json!({ "top_k": 10 }));
    assert!(!hits.is_empty(), "the published card is found");
    assert!(hits.iter().all(|h| h["card_id"] != json!(draft)));
    let (_, audit) = s.call("GET", &format!("/v1/audit?card_id={id}"), None);
    assert_eq!(audit["entries"][0]["action"], "reindex");
}

/// Each card exists in one language only; questions come in both. Multilingual embeddings favour
/// the question's own language, which language centering in retrieval corrects. Measured with
/// e5-small: same language 12/12 first; other language 4/12 first, MRR 0.61 (0/12 and 0.27
/// without centering). The floors sit below those figures.
fn cross_language_questions_find_cards_of_the_other_language_on(b: &Backend) {
    let s = b.start(&[]);
    #[rustfmt::skip]
    let topics = [
        ("en", "Reset your password", "Open Settings > Account > Security and choose Forgot password; a reset link is e-mailed to you.", "我忘记密码了，怎么重置？", "I forgot my password, how do I reset it?"),
        ("en", "Refund timeline", "Refunds go back to the original payment method within 7 to 10 working days after we receive the item.", "退款多久能到账？", "How long until I get my refund?"),
        ("en", "Change delivery address", "You can change the delivery address in My Orders until the parcel has been handed to the courier.", "下单后还能改收货地址吗？", "Can I change the shipping address after ordering?"),
        ("en", "Laptop warranty", "Every laptop comes with a two-year warranty covering hardware faults, not accidental damage.", "笔记本电脑保修多久？", "How long is the laptop warranty?"),
        ("en", "Cancel an order", "Orders can be cancelled free of charge within one hour of payment from the order page.", "怎么取消订单？", "How do I cancel my order?"),
        ("en", "Invoice download", "Business customers can download a VAT invoice from Orders > Invoice within 90 days of purchase.", "怎么下载发票？", "Where do I download my invoice?"),
        ("zh", "国际漫游开通", "在手机营业厅App中选择“国际漫游”并开通即可，出国前24小时内生效，资费按目的地计算。", "How do I turn on international roaming?", "出国前怎么开通国际漫游？"),
        ("zh", "宽带报修", "宽带断线请先重启光猫，仍无法上网请在App中提交报修，工程师24小时内上门。", "My broadband is down, how do I report it?", "宽带断网了怎么报修？"),
        ("zh", "套餐变更", "套餐可以在每月1日至25日之间在线变更，新套餐次月生效。", "How can I switch to a different mobile plan?", "怎么更换手机套餐？"),
        ("zh", "话费充值", "可以通过App、微信或营业厅充值话费，充值后五分钟内到账。", "How do I top up my phone credit?", "话费怎么充值？"),
        ("zh", "配送时间", "普通快递一般3到5个工作日送达，偏远地区可能需要7天。", "How many days does delivery take?", "快递几天能到？"),
        ("zh", "携号转网", "携号转网需要账户无欠费且入网满120天，可在营业厅办理。", "Can I keep my number when switching carrier?", "怎么办理携号转网？"),
    ];
    let ids: Vec<String> = topics
        .iter()
        .map(|(lang, t, b, ..)| s.card(t, b, json!({ "language": lang })))
        .collect();
    let rank = |q: &str, id: &str| -> usize {
        let hits = s.search(q, json!({ "top_k": 12 }));
        hits.iter()
            .position(|h| h["card_id"] == json!(id))
            .map_or(100, |p| p + 1)
    };
    let (mut same_first, mut other_first, mut other_mrr) = (0, 0, 0.0);
    for (t, id) in topics.iter().zip(&ids) {
        same_first += usize::from(rank(t.4, id) == 1);
        let r = rank(t.3, id);
        other_first += usize::from(r == 1);
        other_mrr += 1.0 / r as f64 / topics.len() as f64;
    }
    eprintln!(
        "same language: {same_first}/12 first; other language: {other_first}/12 first, MRR {other_mrr:.2}"
    );
    assert_eq!(same_first, 12);
    assert!(
        other_first >= 3 && other_mrr >= 0.5,
        "other language: {other_first}/12 first, MRR {other_mrr:.2}"
    );
}

/// Runs a retrieval test on every available backend, saying which one failed.
fn on_every_backend(test: fn(&Backend)) {
    for b in backends() {
        eprintln!("backend: {}", b.name());
        test(&b);
    }
}

#[test]
fn finds_by_paraphrase_code_and_language() {
    on_every_backend(finds_by_paraphrase_code_and_language_on);
}

#[test]
fn filters_and_roles() {
    on_every_backend(filters_and_roles_on);
}

#[test]
fn only_published_cards_are_found_and_edits_reindex_at_once() {
    on_every_backend(only_published_cards_are_found_and_edits_reindex_at_once_on);
}

#[test]
fn long_cards_are_chunked_and_the_matching_passage_is_cited() {
    on_every_backend(long_cards_are_chunked_and_the_matching_passage_is_cited_on);
}

#[test]
fn switching_the_embedder_reembeds_published_cards() {
    on_every_backend(switching_the_embedder_reembeds_published_cards_on);
}

#[test]
fn cross_language_questions_find_cards_of_the_other_language() {
    on_every_backend(cross_language_questions_find_cards_of_the_other_language_on);
}

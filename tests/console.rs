//! The console in a real browser: Debian's Chromium driven over WebDriver by chromedriver, against
//! the real server, store and embedder. Each flow does what a person does, by clicking and
//! typing; every page is checked with axe-core (no serious or critical violations) and for
//! keyboard use (every control reachable with Tab). The screenshots in the README come from here.
//!
//! Without chromedriver on PATH the tests say SKIPPED, unless `KEFU_REQUIRE_BROWSER=1` (set by
//! `.ci/run`, which installs Chromium), when they fail instead.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// axe-core, pinned: the npm tarball and its sha256 (npm's integrity for it is sha512-Xm7bpRXn…).
const AXE_VERSION: &str = "4.10.3";
const AXE_SHA256: &str = "0f2b4d7dcdf7d1219df8d1959ad68e565f51d14c3f0d88bb71cd59abeb956292";

/// axe.min.js from the pinned tarball, fetched once into the cache and checked.
fn axe_source() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = PathBuf::from(home).join(".cache/kefu/vendor");
    let file = dir.join(format!("axe-core-{AXE_VERSION}.tgz"));
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    let bytes = match std::fs::read(&file) {
        Ok(b) if sha(&b) == AXE_SHA256 => b,
        _ => {
            let url = format!("https://registry.npmjs.org/axe-core/-/axe-core-{AXE_VERSION}.tgz");
            let mut b = Vec::new();
            ureq::get(&url)
                .call()
                .unwrap_or_else(|e| panic!("fetching {url}: {e}"))
                .into_reader()
                .read_to_end(&mut b)
                .unwrap();
            assert_eq!(sha(&b), AXE_SHA256, "{url} is not the pinned axe-core");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &b).unwrap();
            b
        }
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("package/axe.min.js") {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            return s;
        }
    }
    panic!("axe.min.js is not in the axe-core tarball");
}

/// A headless Chromium session; its own runtime, so that the tests stay synchronous like the
/// others (the blocking HTTP client cannot run inside one).
struct Browser {
    rt: tokio::runtime::Runtime,
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    base: String,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const WAIT: Duration = Duration::from_secs(30);

impl Browser {
    fn start(s: &Server) -> Option<Browser> {
        let found = Command::new("chromedriver")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var("KEFU_REQUIRE_BROWSER").map_or(true, |v| v != "1"),
                "KEFU_REQUIRE_BROWSER=1 but no chromedriver on PATH (Debian: chromium chromium-driver)"
            );
            eprintln!("SKIPPED: the console's browser tests (no chromedriver on PATH)");
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let mut options = json!({
            // Flags as this machine's probe runs Chromium: the closed network refuses the
            // background connections a normal start makes.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-quic", "--lang=en-US", "--window-size=1100,800",
                     format!("--user-data-dir={}", profile.path().display())],
        });
        if let Some(b) = binary {
            options["binary"] = json!(b);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps.clone())
                    .connect(&url),
            ) {
                Ok(c) => break c,
                Err(e) if start.elapsed() < WAIT => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("no WebDriver session: {e}"),
            }
        };
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        let shots = PathBuf::from(target).join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            rt,
            client,
            driver,
            _profile: profile,
            base: s.base.clone(),
            shots,
        })
    }

    fn go(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(self.client.goto(&url)).unwrap();
    }

    /// The first element the selector matches, waiting for it to appear.
    fn find(&self, css: &str) -> Element {
        self.rt
            .block_on(
                self.client
                    .wait()
                    .at_most(WAIT)
                    .for_element(Locator::Css(css)),
            )
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}\n{}", self.text("body")))
    }

    fn all(&self, css: &str) -> Vec<Element> {
        self.rt
            .block_on(self.client.find_all(Locator::Css(css)))
            .unwrap()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.rt.block_on(e.click()).unwrap();
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.rt.block_on(e.clear()).unwrap();
        self.rt.block_on(e.send_keys(text)).unwrap();
    }

    fn choose(&self, css: &str, value: &str) {
        let e = self.find(css);
        self.rt.block_on(e.select_by_value(value)).unwrap();
    }

    fn text(&self, css: &str) -> String {
        match self.rt.block_on(self.client.find(Locator::Css(css))).ok() {
            Some(e) => self.rt.block_on(e.text()).unwrap_or_default(),
            None => String::new(),
        }
    }

    fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute(script, vec![]))
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    fn js_async(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute_async(script, vec![]))
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `check` holds, showing `what` and the page when it never does.
    fn until(&self, what: &str, mut check: impl FnMut(&Browser) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < WAIT,
                "{what} never happened; the page says:\n{}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_text(&self, css: &str, contains: &str) {
        self.until(&format!("{css} showing {contains:?}"), |b| {
            b.text(css).contains(contains)
        });
    }

    fn url(&self) -> String {
        self.rt
            .block_on(self.client.current_url())
            .unwrap()
            .to_string()
    }

    /// Presses a key on whatever has the focus, as the keyboard would (WebDriver actions: typing
    /// into a file input would read the key as a file name).
    fn press(&self, key: char) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.rt
            .block_on(self.client.perform_actions(actions))
            .unwrap();
    }

    /// Tabs until the focus is on an element matching `css`, as a keyboard user would.
    fn tab_to(&self, css: &str) {
        let check = format!(
            "return document.activeElement && document.activeElement.matches({});",
            json!(css)
        );
        for _ in 0..200 {
            if self.js(&check) == json!(true) {
                return;
            }
            self.press(TAB);
        }
        panic!("Tab never reached {css}");
    }

    /// Every control on the page is reached by Tab, in a page's order, with nothing trapping the
    /// focus: each press moves it, and the set of controls reached is the set of controls.
    fn keyboard_reaches_everything(&self, page: &str) {
        let controls = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";
        let count = self.js(&format!(
            "document.querySelectorAll('[data-kb]').forEach(e => e.removeAttribute('data-kb'));
             // From the top, as a page freshly opened: the skip link is the first control.
             const first = document.getElementById('skip-link');
             first.focus();
             first.setAttribute('data-kb', '1');
             return [...document.querySelectorAll({c})].filter(e => e.offsetParent !== null || e.getClientRects().length).length;",
            c = json!(controls)
        ));
        let count = count.as_u64().unwrap();
        assert!(count > 3, "{page}: only {count} controls");
        // Scrolling regions take a Tab stop of their own in Chromium: a few presses to spare.
        for _ in 0..count + 20 {
            self.press(TAB);
            self.js(
                "if (document.activeElement) document.activeElement.setAttribute('data-kb', '1');",
            );
        }
        let missed = self.js(&format!(
            "return [...document.querySelectorAll({c})]
               .filter(e => (e.offsetParent !== null || e.getClientRects().length) && !e.hasAttribute('data-kb'))
               .map(e => e.outerHTML.slice(0, 120));",
            c = json!(controls)
        ));
        assert_eq!(missed, json!([]), "{page}: controls Tab never reached");
    }

    /// axe-core's check of the page as it is now: no serious or critical violation.
    fn accessible(&self, page: &str, axe: &str) {
        self.js(&format!("{axe}\nreturn true;"));
        let violations = self.js_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations
               .filter(v => v.impact === 'serious' || v.impact === 'critical')
               .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 3).map(n => n.html) }))));",
        );
        assert_eq!(violations, json!([]), "{page}: axe-core found violations");
    }

    fn screenshot(&self, name: &str) {
        // The page as it opens: from the top, no focus ring left by the checks.
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);");
        let png = self.rt.block_on(self.client.screenshot()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

const TAB: char = '\u{e004}';
const ENTER: char = '\u{e007}';

fn sign_in(b: &Browser, key: &str) {
    b.go("/console/");
    b.find("#key");
    b.type_in("#key", key);
    b.press(ENTER);
}

/// The CSRF token of the page's session, as the page holds it.
fn csrf(b: &Browser) -> String {
    let v = b.js_async(
        "const done = arguments[arguments.length - 1];
         fetch('/console/session').then(r => r.json()).then(s => done(s.csrf_token));",
    );
    v.as_str().unwrap().to_string()
}

/// A request from the page itself (the session cookie rides along): status and body.
fn fetch_from_page(b: &Browser, method: &str, path: &str, token: Option<&str>) -> (u64, Value) {
    let headers = match token {
        Some(t) => json!({"content-type": "application/json", "x-csrf-token": t}),
        None => json!({"content-type": "application/json"}),
    };
    let v = b.js_async(&format!(
        "const done = arguments[arguments.length - 1];
         fetch({path}, {{ method: {method}, headers: {headers},
                         body: {method} === 'GET' ? undefined : JSON.stringify({{ title: 'x', body: 'y' }}) }})
           .then(async r => done([r.status, await r.json().catch(() => null)]));",
        path = json!(path),
        method = json!(method),
    ));
    (v[0].as_u64().unwrap(), v[1].clone())
}

const REFUND_BODY: &str = "Refunds reach your card within 7 days of the return arriving.\n\nQuestions? Call Li Wei on 13812345678.";
const REFUND_FIXED: &str = "Refunds reach your card within 7 days of the return arriving.\n\nQuestions? Use the chat on the Orders page.";

#[test]
fn an_admin_curates_tries_reviews_and_reads_the_console() {
    let s = keys_and("none", &[]);
    let Some(b) = Browser::start(&s) else { return };
    let axe = axe_source();

    // Sign in, keyboard only: the key and Enter.
    sign_in(&b, ADMIN);
    b.find("nav a[href='#/cards']");
    b.wait_text("#who", "admin");
    b.find("#card-results table");
    b.accessible("cards", &axe);
    b.keyboard_reaches_everything("cards");

    // Import: a JSON Lines file chosen in the drop zone, a result per line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cards.jsonl");
    std::fs::write(
        &file,
        "{\"title\": \"Opening hours\", \"body\": \"We answer every day from 9:00 to 18:00.\"}\n{\"title\": \"No body\"}\n",
    )
    .unwrap();
    let input = b.find("#import-files");
    b.rt.block_on(input.send_keys(file.to_str().unwrap()))
        .unwrap();
    b.wait_text("#import-results", "1 imported, 1 failed");
    let lines = b.text("#import-results table");
    assert!(
        lines.contains("cards.jsonl:1") && lines.contains("cards.jsonl:2"),
        "{lines}"
    );
    assert!(
        lines.contains("body"),
        "the failed line says what is wrong: {lines}"
    );
    b.wait_text("#card-results", "Opening hours");

    // A card with a phone number: the finding is highlighted where it is, publishing is
    // refused, the fix clears it, and then it publishes.
    b.click("a[href='#/cards/new']");
    b.type_in("#editor input[name=title]", "Refund timing");
    b.type_in("#editor textarea[name=body]", REFUND_BODY);
    b.type_in("#editor input[name=tags]", "refunds, billing");
    b.click("#save");
    b.until("the saved card's page", |b| {
        b.url().contains("#/cards/") && !b.url().ends_with("/new")
    });
    let id = b.url().rsplit('/').next().unwrap().to_string();
    let mark = b.find(".highlighted[data-field=body] mark.finding");
    assert_eq!(b.rt.block_on(mark.text()).unwrap(), "13812345678");
    assert_eq!(
        b.rt.block_on(mark.attr("data-check")).unwrap().as_deref(),
        Some("phone_number")
    );
    b.accessible("card editor", &axe);
    b.keyboard_reaches_everything("card editor");
    b.screenshot("card-editor");
    b.click("#publish");
    b.wait_text("#editor-status", "compliance");
    let (_, card) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{id}"), None);
    assert_eq!(card["status"], "draft", "{card}");

    b.type_in("#editor textarea[name=body]", REFUND_FIXED);
    b.click("#check");
    b.find("#compliance-ok");
    b.click("#publish");
    b.until("the card published", |b| {
        b.text("main .badge").contains("published")
    });
    let (_, card) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{id}"), None);
    assert_eq!(card["status"], "published", "{card}");
    assert_eq!(card["body"], REFUND_FIXED);
    // Versions: the diff between the first and the last shows the number going.
    b.choose("#diff-from", "1");
    b.click("#show-diff");
    b.find("#diff .delete");
    let deleted: Vec<String> = b
        .all("#diff .delete")
        .iter()
        .map(|e| b.rt.block_on(e.text()).unwrap())
        .collect();
    assert!(
        deleted.iter().any(|l| l.contains("13812345678")),
        "{deleted:?}"
    );

    // Try a question: the hits with scores, the decision, the streamed answer citing the card.
    b.click("nav a[href='#/try']");
    b.type_in(
        "#try-form textarea[name=question]",
        "How long do refunds take to reach my card?",
    );
    b.click("#try-form button[type=submit]");
    b.find(&format!("#try-citations li[data-card='{id}']"));
    assert!(
        b.text("#try-hits").contains("Refund timing"),
        "{}",
        b.text("#try-hits")
    );
    assert!(
        b.text("#try-outcome").contains("Answered"),
        "{}",
        b.text("#try-outcome")
    );
    assert!(
        b.text("#try-answer").contains("7 days"),
        "{}",
        b.text("#try-answer")
    );
    b.accessible("try a question", &axe);
    b.keyboard_reaches_everything("try a question");
    b.screenshot("try");

    // A draft mined from a resolved conversation, approved in review.
    turn_on(
        &s,
        "conv-mine",
        "cust-m",
        "chat",
        "customer",
        "Can I change the delivery address after ordering?",
    );
    turn_on(
        &s,
        "conv-mine",
        "cust-m",
        "chat",
        "agent",
        "Yes. You can change the delivery address under Orders > Edit address until the parcel ships.",
    );
    let (st, v) = s.call_as(
        AGENT,
        "POST",
        "/v1/conversations/conv-mine/resolve",
        Some(json!({})),
    );
    assert_eq!(st, 200, "{v}");
    let start = Instant::now();
    let mined = loop {
        let (_, v) = s.call_as(ADMIN, "GET", "/v1/cards?status=in_review", None);
        if let Some(c) = v["cards"].as_array().unwrap().first() {
            break c["id"].as_str().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "nothing mined: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    b.click("nav a[href='#/review']");
    let item = format!("article[data-card='{mined}']");
    b.find(&format!("{item} a[href='#/conversations/conv-mine']"));
    assert!(b.text(&item).contains("Evidence: 1"), "{}", b.text(&item));
    b.accessible("review", &axe);
    b.keyboard_reaches_everything("review");
    b.screenshot("review");
    // Approve with the keyboard.
    b.tab_to(&format!("{item} button.approve"));
    b.press(ENTER);
    b.until("the draft published", |_| {
        s.call_as(ADMIN, "GET", &format!("/v1/cards/{mined}"), None)
            .1["status"]
            == "published"
    });

    // A card in review rejected with a reason: archived, the reason in the audit log.
    let (_, weak) = s.call_as(
        ADMIN,
        "POST",
        "/v1/cards",
        Some(json!({"title": "Returns are free", "body": "Returns are always free."})),
    );
    let weak = weak["id"].as_str().unwrap().to_string();
    let (st, v) = s.call_as(ADMIN, "POST", &format!("/v1/cards/{weak}/submit"), None);
    assert_eq!(st, 200, "{v}");
    b.click("nav a[href='#/cards']");
    b.find("#card-results table");
    b.click("nav a[href='#/review']");
    let item = format!("article[data-card='{weak}']");
    b.type_in(
        &format!("{item} input[name=reason]"),
        "Returns cost 5 dollars outside the EU.",
    );
    b.click(&format!("{item} button.reject"));
    b.until("the card archived", |_| {
        s.call_as(ADMIN, "GET", &format!("/v1/cards/{weak}"), None)
            .1["status"]
            == "archived"
    });
    let (_, audit) = s.call_as(ADMIN, "GET", &format!("/v1/audit?card_id={weak}"), None);
    let archived = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "archive")
        .cloned()
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(
        archived["detail"]["reason"],
        "Returns cost 5 dollars outside the EU."
    );

    // An escalated conversation, found by the filter, with its reasons.
    turn_on(
        &s,
        "conv-angry",
        "cust-a",
        "chat",
        "customer",
        "My parcel is two weeks late and nobody answers.",
    );
    turn_on(
        &s,
        "conv-angry",
        "cust-a",
        "chat",
        "customer",
        "This is useless. I want to speak to a human agent now!",
    );
    // The customer asks again in that conversation: handed off, as escalated.
    let (st, a) = s.call_channel(
        "POST",
        "/v1/answer",
        Some(
            json!({"question": "How long do refunds take?", "channel": "chat",
                    "customer_id": "cust-a", "conversation_id": "conv-angry"}),
        ),
    );
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["handoff_reason"], "escalated", "{a}");
    b.click("nav a[href='#/conversations']");
    b.find("#conversation-results table");
    b.choose("form select[name=escalated]", "true");
    b.click("form[role=search] button[type=submit]");
    b.until("only escalated conversations listed", |b| {
        let t = b.text("#conversation-results");
        t.contains("conv-angry") && !t.contains("conv-mine")
    });
    b.click("a[href='#/conversations/conv-angry']");
    b.find("#escalation-reasons li[data-reason=human_requested]");
    assert!(
        b.text("#escalation").contains("asked for a person"),
        "{}",
        b.text("#escalation")
    );
    b.find("#handoff-summary");
    b.accessible("conversation", &axe);
    b.keyboard_reaches_everything("conversation");
    b.screenshot("conversation");

    // Analytics: the volume chart counts the three conversations this test made; the hand-off
    // chart shows the escalation; every report has its CSV.
    b.click("nav a[href='#/analytics']");
    b.find("#report-volume rect.bar");
    let total = b.js(
        "return [...document.querySelectorAll('#report-volume rect.bar')]
           .reduce((s, r) => s + Number(r.dataset.value), 0);",
    );
    assert_eq!(total, json!(3), "{}", b.text("#report-volume"));
    let reasons = b.js(
        "return [...document.querySelectorAll('#report-handoffs rect.bar')].map(r => r.dataset.label);",
    );
    assert!(reasons.to_string().contains("escalated"), "{reasons}");
    let csv = b.js_async(
        "const done = arguments[arguments.length - 1];
         fetch(document.querySelector('#report-volume a.csv').href).then(r => r.text()).then(done);",
    );
    assert!(
        csv.as_str()
            .unwrap()
            .starts_with("bucket,channel,language,conversations,turns"),
        "{csv}"
    );
    b.accessible("analytics", &axe);
    b.keyboard_reaches_everything("analytics");
    b.screenshot("analytics");

    // Health: readiness and the gauges.
    b.click("nav a[href='#/health']");
    b.wait_text("#readiness", "Ready");
    b.accessible("health", &axe);
    b.keyboard_reaches_everything("health");

    // Chinese, every string: the switch, then a reload keeps it.
    b.click("nav a[href='#/cards']");
    b.find("#card-results table");
    b.click("#lang");
    b.wait_text("nav", "知识卡片");
    assert_eq!(
        b.js("return document.documentElement.lang;"),
        json!("zh-CN")
    );
    assert!(
        b.text("main h1").contains("知识卡片"),
        "{}",
        b.text("main h1")
    );
    b.go("/console/#/cards");
    b.wait_text("main h1", "知识卡片");
    b.find("#card-results table");
    b.wait_text("#card-results", "已发布");
    b.accessible("cards in Chinese", &axe);
    b.screenshot("cards-zh");
    b.click("#lang");
    b.wait_text("nav", "Cards");

    // Signing out ends the session: the cookie no longer reaches the API.
    b.click("#signout");
    b.find("#key");
    let (status, _) = fetch_from_page(&b, "GET", "/v1/cards", None);
    assert_eq!(status, 401);
}

#[test]
fn the_console_refuses_wrong_keys_agents_publishing_and_changes_without_the_csrf_token() {
    let s = keys_and("none", &[]);
    let Some(b) = Browser::start(&s) else { return };
    let axe = axe_source();
    let card = s.card(
        "Opening hours",
        "We answer every day from 9:00 to 18:00.",
        json!({}),
    );
    let (_, draft) = s.call_as(
        ADMIN,
        "POST",
        "/v1/cards",
        Some(json!({"title": "Draft", "body": "Not yet."})),
    );
    let draft = draft["id"].as_str().unwrap().to_string();

    // A wrong key, and a channel key, do not sign in.
    b.go("/console/");
    b.find("#key");
    b.accessible("sign-in", &axe);
    sign_in(&b, "not-a-key");
    b.wait_text("#signin-error", "not known");
    sign_in(&b, CHANNEL);
    b.wait_text("#signin-error", "channel key cannot sign in");
    let (status, _) = fetch_from_page(&b, "GET", "/v1/cards", None);
    assert_eq!(status, 401, "no session after refused sign-ins");
    b.screenshot("sign-in");

    // An agent sees what agents may do, and cannot publish even by calling the API itself.
    sign_in(&b, AGENT);
    b.find("nav a[href='#/conversations']");
    let nav = b.text("nav");
    assert!(
        !nav.contains("Cards") && !nav.contains("Review") && !nav.contains("Analytics"),
        "{nav}"
    );
    b.go("/console/#/cards");
    b.until("an agent sent away from cards", |b| {
        !b.url().contains("#/cards")
    });
    let token = csrf(&b);
    let (status, body) = fetch_from_page(
        &b,
        "POST",
        &format!("/v1/cards/{draft}/publish"),
        Some(&token),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    b.click("#signout");
    b.find("#key");

    // An admin's change without the CSRF token is refused; with it, it goes through.
    sign_in(&b, ADMIN);
    b.find("#card-results table");
    let (status, body) = fetch_from_page(&b, "POST", &format!("/v1/cards/{draft}/archive"), None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("CSRF"),
        "{body}"
    );
    let (status, body) = fetch_from_page(
        &b,
        "POST",
        &format!("/v1/cards/{draft}/archive"),
        Some("0000"),
    );
    assert_eq!(status, 403, "a wrong token: {body}");
    let (_, d) = s.call_as(ADMIN, "GET", &format!("/v1/cards/{draft}"), None);
    assert_eq!(d["status"], "draft", "refused changes changed nothing");
    let token = csrf(&b);
    let (status, body) = fetch_from_page(
        &b,
        "POST",
        &format!("/v1/cards/{card}/archive"),
        Some(&token),
    );
    assert_eq!(status, 200, "{body}");

    // The session cookie is HttpOnly (the page cannot read it) and SameSite=Strict.
    assert_eq!(b.js("return document.cookie;"), json!(""));
    let sign_in_over_http = |proto: &str| {
        let res = s
            .req("POST", "/console/session", None)
            .header("x-forwarded-proto", proto)
            .json(&json!({"key": ADMIN}))
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
        res.headers()["set-cookie"].to_str().unwrap().to_string()
    };
    let cookie = sign_in_over_http("http");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let secure = sign_in_over_http("https");
    assert!(secure.contains("; Secure"), "behind TLS: {secure}");
    // The cookie is used only from this server's pages: another site's Origin is refused.
    let session = cookie.split(';').next().unwrap().to_string();
    let with_origin = |origin: Option<&str>| {
        let mut r = s.req("GET", "/v1/cards", None).header("cookie", &session);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(with_origin(None), 200);
    assert_eq!(with_origin(Some(&s.base)), 200);
    assert_eq!(with_origin(Some("https://evil.example")), 403);
    // The page itself may not be framed and loads only its own scripts.
    let res = s.req("GET", "/console/", None).send().unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // Guessing keys through the form: at most 30 sign-ins a minute, then 429 with Retry-After.
    let refused = (0..31)
        .map(|_| {
            s.req("POST", "/console/session", None)
                .json(&json!({"key": "guess"}))
                .send()
                .unwrap()
        })
        .find(|r| r.status().as_u16() == 429)
        .expect("31 sign-ins in a row were all tried");
    assert!(refused.headers().contains_key("retry-after"));
}

#[test]
fn a_console_switched_off_is_not_there() {
    let s = keys_and("none", &[("KEFU__CONSOLE__ENABLED", "false")]);
    for (method, path) in [
        ("GET", "/console/"),
        ("GET", "/console/app.js"),
        ("POST", "/console/session"),
    ] {
        let res = s
            .req(method, path, None)
            .json(&json!({"key": ADMIN}))
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 404, "{method} {path}");
    }
    assert_eq!(
        s.call_as(ADMIN, "GET", "/v1/cards", None).0,
        200,
        "the API still serves"
    );
}

//! Kill -9 in the middle of a bulk import, restart, and check that every acknowledged card is
//! there with its acknowledged status and that the vector index agrees with the cards.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ADMIN, Server, parts};
use serde_json::{Value, json};

fn batch(round: usize, n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({
                "title": format!("Spare part KP-{round}-{i}"),
                "body": format!("Spare part KP-{round}-{i} fits model series {round} and ships in {i} days from the regional warehouse."),
                "tags": ["parts"],
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sigkill_mid_import_loses_no_acknowledged_card() {
    let mut s = Server::start();
    let acked: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let (base, ack) = (s.base.clone(), acked.clone());
    // Whether the importer's last request was cut off by the kill (in flight), rather than
    // answered.
    let importer = std::thread::spawn(move || -> bool {
        let client = reqwest::blocking::Client::new();
        for round in 0.. {
            let res = client
                .post(format!("{base}/v1/cards/import?publish=true"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/x-ndjson")
                .body(batch(round, 12))
                .timeout(Duration::from_secs(60))
                .send();
            // The server dies under us at some point: whatever had no answer was not acknowledged.
            let Ok(res) = res else { return true };
            let (status, report) = parts(res);
            if status != 200 {
                return false;
            }
            ack.lock()
                .unwrap()
                .extend(report["items"].as_array().unwrap().iter().cloned());
        }
        false
    });
    // Let a few imports complete, then kill while the next one is being written.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 36 {
        assert!(
            std::time::Instant::now() < deadline,
            "imports did not complete"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    s.kill9();
    assert!(
        importer.join().unwrap(),
        "an import was in flight when the server was killed"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 36);

    s.restart();
    for item in &acked {
        assert_eq!(item["ok"], true, "{item}");
        let id = item["id"].as_str().unwrap();
        let (st, card) = s.call("GET", &format!("/v1/cards/{id}"), None);
        assert_eq!(st, 200, "acknowledged card {id} lost");
        assert_eq!(card["status"], "published", "{card}");
    }
    let (_, all) = s.call("GET", "/v1/cards?limit=200", None);
    let total = all["total"].as_u64().unwrap() as usize;
    assert!(total >= acked.len());
    eprintln!(
        "acknowledged {} cards; {} were in the store after the kill",
        acked.len(),
        total
    );

    let (_, status) = s.call("GET", "/v1/index/status", None);
    assert_eq!(status["consistent"], true, "{status}");
    let (_, published) = s.call("GET", "/v1/cards?status=published&limit=200", None);
    assert_eq!(status["published_cards"], published["total"], "{status}");
    assert_eq!(status["indexed_cards"], published["total"]);

    // Every acknowledged card is searchable by its exact code after the restart: its chunks
    // and vectors were committed with it (the index status above compares the index with the
    // table it is rebuilt from, so it alone could not tell).
    for item in &acked {
        let id = item["id"].as_str().unwrap();
        let (_, card) = s.call("GET", &format!("/v1/cards/{id}"), None);
        let code = card["title"]
            .as_str()
            .unwrap()
            .trim_start_matches("Spare part ")
            .to_string();
        assert_eq!(s.top(&code).as_deref(), Some(id), "{code}");
    }
}

/// A damaged database file stops the server at start with a message that says so and how to
/// recover, instead of a server whose readiness says ok while requests fail with 500.
#[test]
fn a_damaged_database_is_refused_at_start() {
    let mut s = Server::start();
    s.card(
        "Delivery times",
        "Parcels arrive within 3 working days.",
        json!({}),
    );
    s.kill9();
    let file = s.data.join("kefu.sqlite3");
    let page = {
        // Everything into the main file, so the damage below is where SQLite reads.
        let c = rusqlite::Connection::open(&file).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        assert!(pages > 3, "{pages}");
        c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize
    };
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[2 * page..3 * page].fill(0xA5);
    std::fs::write(&file, bytes).unwrap();
    let out = common::kefu()
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data)
        .env("KEFU_API_KEYS", format!("admin:{ADMIN}"))
        .env("KEFU_GENERATOR", "none")
        .env("KEFU_ASR", "none")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("damaged") && err.contains(".recover"), "{err}");
}

/// A full disk answers 507 `storage_full` to each write, loses nothing that was acknowledged,
/// keeps serving reads, and leaves no part of a refused write behind: once space is freed the
/// same writes succeed, and the store holds exactly what was acknowledged. The data directory is
/// a small tmpfs in the server's own namespaces, filled by the test: the disk is really full.
#[test]
fn a_full_disk_answers_507_and_keeps_what_was_acknowledged() {
    let Some(s) = Server::start_on_small_disk("48m") else {
        return;
    };
    let kept = s.card(
        "Delivery times",
        "Parcels arrive within 3 working days.",
        json!({}),
    );
    let turn = |text: &str| {
        s.call_as(
            common::CHANNEL,
            "POST",
            "/v1/conversations/full-disk/turns",
            Some(json!({"customer_id": "cust-full", "channel": "chat", "role": "customer", "text": text})),
        )
    };
    assert_eq!(turn("Where is my parcel?").0, 200);
    let send_import = || {
        parts(
            s.req("POST", "/v1/cards/import?publish=true", Some(ADMIN))
                .header("content-type", "application/x-ndjson")
                .body(batch(0, 20))
                .send()
                .unwrap(),
        )
    };

    // Fill the disk to the last byte.
    let filler = s.data_seen_by_server().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5Au8; 1 << 16];
        let mut bytes = 0usize;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => bytes += n,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever of the last block the page cache took, the disk has no room left.
        let _ = f.sync_all();
        assert!(bytes > 0);
    }

    let refused = [
        s.call(
            "POST",
            "/v1/cards",
            Some(json!({"title": "Returns", "body": "Returns are free within 30 days of delivery. Keep the receipt, print the label from your account, and drop the parcel at any post office. Refunds reach the original payment method within 5 working days."})),
        ),
        turn("Still no parcel, it has been a week."),
    ];
    let import = send_import();
    for (status, body) in [&refused[0], &refused[1], &import] {
        assert_eq!(*status, 507, "{body}");
        assert_eq!(common::error_code(body), "storage_full", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("disk"),
            "{body}"
        );
    }

    // Reads still work, and the server says it is alive.
    let (st, card) = s.call("GET", &format!("/v1/cards/{kept}"), None);
    assert_eq!((st, card["status"].as_str()), (200, Some("published")));
    assert_eq!(
        s.top("how long does delivery take").as_deref(),
        Some(kept.as_str())
    );

    // Space freed: the same writes succeed, and nothing of the refused ones is there.
    std::fs::remove_file(&filler).unwrap();
    let (_, all) = s.call("GET", "/v1/cards?limit=200", None);
    assert_eq!(all["total"], 1, "a refused write left a card behind: {all}");
    let (_, conv) = s.call("GET", "/v1/conversations/full-disk", None);
    assert_eq!(conv["turns"].as_array().unwrap().len(), 1, "{conv}");
    assert_eq!(turn("Still no parcel, it has been a week.").0, 200);
    let import = send_import();
    assert_eq!(import.0, 200, "{}", import.1);
    let (_, all) = s.call("GET", "/v1/cards?limit=200", None);
    assert_eq!(all["total"], 21, "{all}");
    assert_eq!(
        s.top("KP-0-7").as_deref(),
        import.1["items"][7]["id"].as_str()
    );
}

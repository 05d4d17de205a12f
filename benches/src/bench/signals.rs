//! `kefu bench signals`: customer turns read per second, one turn a request as a channel sends
//! them, three ways on the same turns: the embedding pass alone (`/v1/embeddings`), sentiment
//! (`/v1/sentiment`, as before emotions and intents existed) and every signal (`/v1/signals`:
//! sentiment, five emotions, intent, language). Every signal comes from the one embedding, so
//! the three rates should be close: the heads cost dot products, not passes.

use std::path::PathBuf;
use std::time::Instant;

use kefu::config::Config;
use serde_json::{Value, json};

use crate::client::{read_jsonl, start_server};

pub async fn run(
    cfg: Config,
    turns: usize,
    dir: PathBuf,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let model = cfg.models.embedder.clone();
    let (api, _, _server) = start_server(cfg, tmp.path()).await?;
    let all: Vec<Value> = read_jsonl(&dir.join("support_turns.jsonl"))?;
    let texts: Vec<String> = all
        .iter()
        .filter_map(|t| t["text"].as_str().map(str::to_string))
        .take(turns)
        .collect();
    // Warm the workers and caches once.
    for t in texts.iter().take(8) {
        api.post("/v1/signals", json!({"text": t})).await?;
    }
    let ways: [(&str, &str); 3] = [
        ("embedding pass only", "/v1/embeddings"),
        ("sentiment (before)", "/v1/sentiment"),
        ("all signals (after)", "/v1/signals"),
    ];
    let mut results = Vec::new();
    println!(
        "| {} turns, one a request | turns/s | ms per turn |",
        texts.len()
    );
    println!("|---|---|---|");
    for (name, path) in ways {
        let started = Instant::now();
        for t in &texts {
            let body = if path == "/v1/embeddings" {
                json!({"model": model, "input": t})
            } else {
                json!({"text": t})
            };
            api.post(path, body).await?;
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = texts.len() as f64 / secs;
        println!("| {name} | {rate:.1} | {:.1} |", 1000.0 / rate);
        results.push(json!({"way": name, "path": path, "turns_per_second": rate}));
    }
    if let Some(out) = out {
        std::fs::write(
            out,
            serde_json::to_string_pretty(&json!({"turns": texts.len(), "results": results}))?,
        )?;
    }
    Ok(())
}

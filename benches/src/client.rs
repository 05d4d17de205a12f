//! The kefu HTTP API as its callers use it, for `kefu eval` and `kefu bench compare`: a client
//! that waits out full queues, a server started in-process on a temporary data directory, the
//! knowledge base loader, and Server-Sent Events.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use kefu::api::AppState;
use kefu::config::Config;
use serde::Deserialize;
use serde_json::Value;

/// A card of a dataset's knowledge base (`kb_cards.jsonl`).
#[derive(Deserialize)]
pub struct Card {
    pub title: String,
    pub body: String,
}

pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// A kefu server over HTTP.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

impl Api {
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Sends the request `make` builds, again while the server answers 503 (a full model queue,
    /// which says Retry-After: a client waits and asks again); any other error status fails.
    pub async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        for _ in 0..60 {
            let res = make().send().await?;
            let status = res.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if !status.is_success() {
                bail!("{what}: {status}: {}", res.text().await.unwrap_or_default());
            }
            return Ok(res);
        }
        bail!("{what}: still 503 after 30 s")
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self
            .send(path, || self.req(reqwest::Method::POST, path).json(&body))
            .await?;
        Ok(res.json().await?)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .send(path, || self.req(reqwest::Method::GET, path))
            .await?;
        Ok(res.json().await?)
    }
}

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        // Below the 30 s after which the server (hyper) closes a keep-alive connection that
        // sends nothing: reusing one just as it closes fails the request ("connection closed
        // before message completed"), which is the client's race, not the server's fault.
        .pool_idle_timeout(Duration::from_secs(20))
        .build()?)
}

pub fn bar(n: usize, what: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(n as u64).with_message(what.to_string());
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    b
}

/// Imports and publishes the knowledge base; the card ids by title.
pub async fn load_cards(
    api: &Api,
    path: &Path,
    cards: &[Card],
) -> anyhow::Result<HashMap<String, String>> {
    let status = api.get("/v1/index/status").await?;
    if status["published_cards"].as_u64().unwrap_or(0) > 0 {
        bail!(
            "{} already has published cards; kefu eval imports its own knowledge base, so give it an empty server (or run it without --url)",
            api.base
        );
    }
    let body = std::fs::read(path)?;
    let res = api
        .send("/v1/cards/import", || {
            api.req(reqwest::Method::POST, "/v1/cards/import?publish=true")
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
        })
        .await?;
    let report: Value = res.json().await?;
    let items = report["items"]
        .as_array()
        .context("import answered no items")?;
    let mut ids = HashMap::new();
    for (card, item) in cards.iter().zip(items) {
        let id = item["id"]
            .as_str()
            .with_context(|| format!("card {:?} was not imported: {item}", card.title))?;
        ids.insert(card.title.clone(), id.to_string());
    }
    let published = api.get("/v1/index/status").await?["published_cards"]
        .as_u64()
        .unwrap_or(0);
    if published as usize != cards.len() {
        let failed: Vec<&Value> = items.iter().filter(|i| i["ok"] != true).collect();
        bail!(
            "{published} of {} cards were published; not published: {failed:?}",
            cards.len()
        );
    }
    eprintln!(
        "knowledge base: {} cards imported and published",
        cards.len()
    );
    Ok(ids)
}

/// A server on 127.0.0.1 with `cfg`'s models (its state too, for measuring below HTTP), on a data directory under `tmp`, with no keys
/// (every local caller is an admin). It stops when the returned handle is dropped.
pub async fn start_server(
    mut cfg: Config,
    tmp: &Path,
) -> anyhow::Result<(Api, AppState, tokio_util::task::AbortOnDropHandle<()>)> {
    cfg.data_dir = tmp.join("data");
    cfg.auth.keys.clear();
    let state = kefu::server::build(cfg).await?;
    let router = kefu::api::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let api = Api {
        base: format!("http://{addr}"),
        key: None,
        http: client()?,
    };
    Ok((api, state, tokio_util::task::AbortOnDropHandle::new(task)))
}

/// Reads a Server-Sent Events response one event at a time: `(event name, data)`. Keep-alive
/// comments, sent while a request waits for a model, are skipped.
pub struct Events {
    res: reqwest::Response,
    // Bytes, not text: a chunk may end inside a character.
    buf: Vec<u8>,
}

impl Events {
    pub fn new(res: reqwest::Response) -> Self {
        Self {
            res,
            buf: Vec::new(),
        }
    }

    pub async fn next(&mut self) -> anyhow::Result<Option<(String, String)>> {
        loop {
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let bytes: Vec<u8> = self.buf.drain(..end + 2).collect();
                let event = String::from_utf8_lossy(&bytes);
                let name = event
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))
                    .map(str::trim)
                    .unwrap_or("");
                if name.is_empty() {
                    continue;
                }
                let data: String = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                return Ok(Some((name.to_string(), data)));
            }
            match self.res.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

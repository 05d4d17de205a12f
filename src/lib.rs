//! kefu (客服): a self-hosted inference and knowledge service for customer-service systems.
//!
//! # Layout
//!
//! A request passes down once and its answer comes back up: `api` → `desk` → `knowledge`,
//! `conversation`, `speech` → `runtime`, `store`. Domain folders do not import each other; what
//! several of them share sits in a small module below all of them (`vocab`, `text`, `vecmath`,
//! `pii`).
//!
//! - [`api`]: HTTP only. Routing (declared in one place, `api::router`, with one OpenAPI list),
//!   auth (`api::auth`), the one error-code → status mapping (`api::error`), `/metrics`
//!   collectors (`api::metrics`), and one file per kind of caller: `cards` for admins, `search`
//!   for hit testing, `answer` for chatbots, `assist` for agent tools, `voice` (the WebSocket
//!   protocol, one `ServerMessage` type), `openai` and `transcriptions` for OpenAI-compatible
//!   clients, `privacy` for a customer's erasure and export, `mining` for the jobs and a card's evidence, `analytics` for reports and the review queue, `console` for the browser console (its files, built in from `console/`, and sign-in to a session cookie with a CSRF token), `ops` for operators. Handlers parse, check the caller, call one function below
//!   and shape the reply.
//! - [`desk`]: one home per request flow, each reading top to bottom: `answer` (score the turn,
//!   escalation, history, retrieve and decide, generate, check, record), `assist`, `voice` (a
//!   live stream), `transcribe` (one upload), `mining` (a resolved conversation drafted
//!   into a card in review, or merged into the card it repeats; the background job worker).
//! - [`knowledge`]: knowledge cards, their lifecycle and compliance checks, chunking, hybrid
//!   retrieval, drafting cards from resolved conversations (`mining`), and grounded replies (`answer`: the hand-off decision, the prompt, the checks on
//!   what the model wrote, citations; `assist`: coaching and suggestions). Decides and composes;
//!   the only writes are the cards' own.
//! - [`conversation`]: customers and their conversations: every turn write (turns, answers,
//!   feedback, masked at rest), the one carry-over rule across channels
//!   (`Conversations::history`), what each turn says (sentiment, emotions, intent), escalation,
//!   routing, the hand-off summary, and a customer's erasure, export and the retention sweep.
//! - [`speech`]: audio decoding and resampling, voice-activity segmentation, and streaming
//!   sessions that turn audio into partial and final transcripts (no transport).
//! - [`runtime`]: models on a device and nothing about HTTP, cards or customers: the model
//!   registry (manifest, fetch, checksums), the sentence embedder, the GGUF chat model
//!   (`gguf_lm`) and its scheduler (`generate`), Whisper (`asr`, with the CTranslate2-to-ggml
//!   converter in `whisper_ggml`), each on its own threads behind a bounded queue.
//! - [`store`]: persistence, one file per aggregate (`cards`, `chunks`, `audit`,
//!   `conversations`, `answers`, `customers`: a customer's data as a whole, `jobs`: background
//!   work, `mined`: the conversations a card was mined from), the schema with
//!   numbered migrations (`schema`), the vector backends behind one trait (`store::vector`), and
//!   the clock every stored time is read from. No business rules.
//! - [`vocab`]: the fixed sets of values several layers speak (channel, role, sentiment,
//!   hand-off and escalation reasons, mood direction), as enums.
//! - [`text`], [`vecmath`]: text and vector helpers shared below the domains; [`pii`]: personal
//!   data in free text (what compliance refuses in cards and what is masked in stored turns).
//! - [`config`]: one typed [`config::Config`]: defaults < `kefu.toml` < environment (every key,
//!   `KEFU__SECTION__KEY`) < flags.
//! - [`error`]: the library's error kinds and their stable codes.
//! - [`server`]: wires the layers together, binds, and shuts down in one visible place.
//!
//! The `kefu` binary is `src/bin/kefu/`, one file per command; the measuring tools (`kefu eval`,
//! `kefu bench`) are the `kefu-bench` workspace member in `benches/`.

pub mod api;
pub mod config;
pub mod conversation;
pub mod desk;
pub mod error;
pub mod knowledge;
pub mod pii;
pub mod runtime;
pub mod server;
pub mod speech;
pub mod store;
pub mod text;
pub mod vecmath;
pub mod vocab;

pub use error::{Error, Result};

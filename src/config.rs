//! One typed configuration, layered: built-in defaults < `kefu.toml` < environment < command-line
//! flags. Every key has a default, so an empty file (or none) is a valid setup.
//!
//! Every key has an environment name derived from its path: `KEFU__` and the path in capitals
//! with `__` between the parts (`limits.gen_context` is `KEFU__LIMITS__GEN_CONTEXT`,
//! `models.asr` is `KEFU__MODELS__ASR`). The older single-underscore names (`KEFU_GENERATOR`,
//! `KEFU_VECTOR_BACKEND`, ... listed in [`ALIASES`]) still work and name the same keys. Layering
//! is figment's; the values are checked by the same serde types as the file, so an environment
//! value that is not a number where one is wanted fails the same way a file's would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration is not valid: {0}")]
    Parse(String),
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Loopback by default: exposing the service needs API keys.
    pub addr: SocketAddr,
    /// Where cards, conversations and the vector index live (one SQLite file plus its WAL).
    pub data_dir: PathBuf,
    /// Where model weights are cached. Outside the repository by default.
    pub models_dir: PathBuf,
    /// A manifest to use instead of the built-in `models/manifest.toml`.
    pub manifest: Option<PathBuf>,
    /// Never download: a missing model is an error instead of a fetch.
    #[serde(deserialize_with = "flag")]
    pub offline: bool,
    pub models: ModelsConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub compliance: ComplianceConfig,
    pub search: SearchConfig,
    pub answer: AnswerConfig,
    pub escalation: EscalationConfig,
    pub understanding: UnderstandingConfig,
    pub routing: RoutingConfig,
    pub vector: VectorConfig,
    pub voice: VoiceConfig,
    pub privacy: PrivacyConfig,
    pub mining: MiningConfig,
    pub insights: InsightsConfig,
    pub console: ConsoleConfig,
}

/// The browser console at `/console` (README "The console").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console. Off: `/console` is not found, and no session can be opened.
    #[serde(deserialize_with = "flag")]
    pub enabled: bool,
    /// How long a sign-in lasts, in hours.
    pub session_hours: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            session_hours: 12,
        }
    }
}

/// Drafting cards from conversations people resolved (README "Knowledge that improves itself").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningConfig {
    /// Draft a card from every resolved conversation an agent answered in. Drafts wait in
    /// review; nothing mined reaches a customer before an admin publishes it.
    #[serde(deserialize_with = "flag")]
    pub enabled: bool,
    /// A draft at least this close (cosine of the drafts' e5 vectors, or of the draft and a
    /// published card's best chunk) to an existing card, stating no number the card does not,
    /// is merged into it as more evidence instead of becoming a card of its own. 0.93: between
    /// the highest first-of-its-topic (0.921) and the lowest repeat (0.933) of the dev split
    /// of eval/mined_conversations.jsonl.
    pub merge_similarity: f32,
    /// Attempts per job before it stays failed (a model error, a full queue).
    pub max_attempts: u32,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            enabled: true,
            merge_similarity: 0.93,
            max_attempts: 3,
        }
    }
}

/// Analytics and knowledge gaps (README "Knowledge that improves itself").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InsightsConfig {
    /// Two groups of handed-off questions form one gap while the average cosine between them
    /// (topic vectors: language center removed) is at least this. 0.30 from the dev topics of
    /// eval/gap_questions.jsonl: 0.25 scored a hair better there, but sits next to the drop at
    /// 0.20 where unrelated topics run together.
    pub gap_similarity: f32,
    /// The most recent handed-off questions clustered per request (the cost grows with the
    /// square of this).
    pub gap_questions: usize,
    /// A topic (intent) or gap spikes when it at least doubled against the previous window and
    /// has at least this many turns or questions.
    pub spike_min: u64,
}

impl Default for InsightsConfig {
    fn default() -> Self {
        InsightsConfig {
            gap_similarity: 0.30,
            gap_questions: 2000,
            spike_min: 5,
        }
    }
}

/// What kefu keeps about customers, and for how long (README "Privacy").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Mask personal data (phone, e-mail, ID, card and account numbers) in turns, answers and
    /// feedback before they are stored. The models still read the turn as it was said within
    /// the request; later readers (agents, summaries, analytics) see `[phone]` and the like.
    #[serde(deserialize_with = "flag")]
    pub redact: bool,
    pub retain_days: RetainDays,
    /// How often the retention sweep runs, in minutes (it also runs at start).
    pub sweep_minutes: u64,
}

/// Days each kind of data is kept; unset keeps it for ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetainDays {
    /// Typed turns (chat, e-mail, social, agent).
    pub turns: Option<u32>,
    /// Turns transcribed from a voice stream.
    pub transcripts: Option<u32>,
    /// Answers given, with the feedback on them.
    pub answers: Option<u32>,
    /// The audit log (card changes, erasures).
    pub audit: Option<u32>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            redact: true,
            retain_days: RetainDays::default(),
            sweep_minutes: 60,
        }
    }
}

/// Speech: file transcription and live voice streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceConfig {
    /// Utterances decoded at once (each worker holds its own decoding state: about 230 MB for base).
    pub workers: usize,
    /// Threads per worker (0: the cores divided among the workers).
    pub threads: usize,
    /// Utterances that may wait for a worker; one more is refused (503), and new streams are
    /// refused while the pool is saturated.
    pub queue: usize,
    /// Live streams at once; one more is refused with a close reason.
    pub max_streams: usize,
    /// A started stream that sends no audio for this long is ended (`idle_timeout`), so that
    /// silent connections cannot hold every `max_streams` place.
    pub idle_seconds: u64,
    /// Longest stream, in wall-clock time and in audio received (whichever comes first); then
    /// it is ended (`stream_too_long`) and the client opens a new one.
    pub max_stream_seconds: u64,
    /// Uploads to /v1/audio/transcriptions in flight at once (each may hold `max_upload_bytes`
    /// and its decoded audio); one more is refused with 503 and Retry-After.
    pub max_uploads: usize,
    /// Largest upload to /v1/audio/transcriptions, in bytes (OpenAI's limit is 25 MB).
    pub max_upload_bytes: usize,
    /// Longest audio per upload, in seconds.
    pub max_audio_seconds: u64,
    /// A partial transcript every this much new speech.
    pub partial_every_ms: u64,
    /// Silence that ends an utterance.
    pub end_silence_ms: u64,
    /// Voice-activity score (0-1) above which a 16 ms frame counts as speech.
    pub vad_threshold: f32,
    /// Encode only the audio there is, not Whisper's whole 30 s window: 4-5x faster on
    /// utterances of a few seconds, with the same error rates in our measurements. `false`
    /// restores Whisper's padded window.
    #[serde(deserialize_with = "flag")]
    pub fit_window: bool,
}

impl VoiceConfig {
    /// Threads each speech worker uses: `threads`, else the model threads (or every core)
    /// shared among the workers.
    pub fn threads_per_worker(&self, model_threads: usize) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        let cores = if model_threads > 0 {
            model_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        (cores / self.workers.max(1)).max(1)
    }
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            workers: 1,
            threads: 0,
            queue: 8,
            max_streams: 64,
            idle_seconds: 20,
            max_stream_seconds: 3600,
            max_uploads: 4,
            max_upload_bytes: 25 << 20,
            max_audio_seconds: 1800,
            partial_every_ms: 1000,
            end_silence_ms: 600,
            vad_threshold: 0.5,
            fit_window: true,
        }
    }
}

/// Where the card vectors live: in process (default), or in Qdrant when one machine is not
/// enough. SQLite stays the source of truth either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorConfig {
    pub backend: VectorBackend,
    /// Qdrant's gRPC address.
    pub url: String,
    pub api_key: Option<String>,
    pub collection: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    /// Keep the vectors on disk (memory-mapped) rather than in RAM.
    #[serde(deserialize_with = "flag")]
    pub on_disk: bool,
    /// How long one request to Qdrant may take before it counts as unavailable.
    pub timeout_ms: u64,
}

impl Default for VectorConfig {
    fn default() -> Self {
        VectorConfig {
            backend: VectorBackend::Embedded,
            url: "http://127.0.0.1:6334".into(),
            api_key: None,
            collection: "kefu_cards".into(),
            shard_number: 1,
            replication_factor: 1,
            on_disk: false,
            timeout_ms: 5000,
        }
    }
}

/// Where the vectors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VectorBackend {
    /// In this process, rebuilt from SQLite at start.
    Embedded,
    /// A Qdrant server (or cluster), over gRPC.
    Qdrant,
}

/// How `/v1/answer` words a reply once the cards cover the question (`knowledge::extract`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compose {
    /// The best card's sentences that answer the question, as the card words them (translated
    /// by the chat model when the customer writes another language): nothing a card does not
    /// say. Needs no chat model for a question in the card's language.
    Extract,
    /// The chat model writes the reply from the cards, in the channel's style (prompts/),
    /// checked before it is sent.
    Generate,
}

/// When `/v1/answer` translates a question into the other languages of the cards
/// (`knowledge::translate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcrossLanguages {
    /// Never: a question is searched in its own words only.
    Off,
    /// When no published card is in the question's language (an English knowledge base, a
    /// customer who writes Chinese): the only way such a question is answered.
    NoCardsInLanguage,
    /// Also when the best card falls under the threshold although there are cards in the
    /// question's language. On the eval set this answered more cross-language questions right
    /// and more same-language ones wrong (eval/README.md, "Across languages").
    BelowThreshold,
}

/// When a conversation is flagged for a person (`conversation::escalation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationConfig {
    /// Flag after this many negative customer turns in a row (0: never).
    pub negative_streak: usize,
    /// Flag when valence (P(positive) - P(negative), in [-1, 1]) falls by at least this much
    /// from one customer turn to the next (0: never).
    pub sharp_drop: f32,
    /// Flag when the customer asks for a person ("talk to a human", 转人工).
    #[serde(deserialize_with = "flag")]
    pub human_request: bool,
    /// Flag when this many contacts of one customer (this conversation included), none marked
    /// resolved, are about the same issue within `repeat_window_hours` (0: never). Contacts on
    /// two or more channels also mark the conversation priority.
    pub repeat_contacts: usize,
    pub repeat_window_hours: u32,
    /// Two contacts are about the same issue when the cosine of their opening turns' centered
    /// embeddings reaches this (calibrated in eval/same_issue_pairs.jsonl).
    pub same_issue_similarity: f32,
    /// Flag when a customer turn shows one of these emotions with at least this score (in
    /// [0, 1]; an emotion not listed never flags).
    pub emotions: std::collections::BTreeMap<crate::vocab::Emotion, f32>,
}

/// Where a conversation goes and how soon (README "Routing"): rules read in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// The queue of a conversation no queue rule matches.
    pub default_queue: String,
    /// The first matching rule that names a queue decides the queue; every matching rule that
    /// names a priority may raise it (never lower it below `normal`).
    pub rules: Vec<RouteRule>,
}

/// One routing rule: every condition it sets must hold (an empty list or an unset value is no
/// condition).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteRule {
    /// Shown in the route's reasons.
    pub name: String,
    pub queue: Option<String>,
    pub priority: Option<crate::vocab::Priority>,
    /// The conversation's intent is one of these.
    pub intents: Vec<String>,
    /// The conversation's language is one of these (ISO 639-1: `en`, `zh`).
    pub languages: Vec<String>,
    /// The conversation is (or is not) flagged for escalation.
    pub escalated: Option<bool>,
    /// One of these emotions reaches its score in the customer's last three turns.
    pub emotions: std::collections::BTreeMap<crate::vocab::Emotion, f32>,
    /// The customer came back about the same unresolved issue (`repeated_contacts`).
    pub repeat_contact: Option<bool>,
    /// The customer has one of these tags (the caller of `POST /v1/route` names them).
    pub tags: Vec<String>,
}

impl Default for RoutingConfig {
    /// The rules a deployment starts with (README "Routing" shows them as TOML).
    fn default() -> Self {
        use crate::vocab::{Emotion, Priority};
        let queue = |name: &str, queue: &str, intents: &[&str]| RouteRule {
            name: name.into(),
            queue: Some(queue.into()),
            intents: intents.iter().map(|i| i.to_string()).collect(),
            ..RouteRule::default()
        };
        RoutingConfig {
            default_queue: "general".into(),
            rules: vec![
                RouteRule {
                    name: "vip".into(),
                    queue: Some("vip".into()),
                    priority: Some(Priority::High),
                    tags: vec!["vip".into()],
                    ..RouteRule::default()
                },
                RouteRule {
                    name: "escalated".into(),
                    priority: Some(Priority::High),
                    escalated: Some(true),
                    ..RouteRule::default()
                },
                RouteRule {
                    name: "angry_and_escalated".into(),
                    priority: Some(Priority::Urgent),
                    escalated: Some(true),
                    emotions: [(Emotion::Anger, 0.5)].into_iter().collect(),
                    ..RouteRule::default()
                },
                RouteRule {
                    name: "urgent".into(),
                    priority: Some(Priority::High),
                    emotions: [(Emotion::Urgency, 0.5)].into_iter().collect(),
                    ..RouteRule::default()
                },
                RouteRule {
                    name: "repeat_contact".into(),
                    priority: Some(Priority::High),
                    repeat_contact: Some(true),
                    ..RouteRule::default()
                },
                queue("complaints", "customer_relations", &["complaint"]),
                queue("cancellations", "retention", &["cancellation"]),
                queue("billing", "billing", &["billing", "refund"]),
                queue("technical", "technical_support", &["technical"]),
                queue("orders", "orders", &["order_status"]),
                queue("accounts", "accounts", &["account"]),
            ],
        }
    }
}

/// How customer turns are read (README "Understanding the customer").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnderstandingConfig {
    /// A turn whose most probable intent scores below this is `other`.
    pub intent_min_confidence: f32,
}

impl Default for UnderstandingConfig {
    fn default() -> Self {
        UnderstandingConfig {
            intent_min_confidence: crate::conversation::intents::MIN_CONFIDENCE,
        }
    }
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            negative_streak: 2,
            sharp_drop: 1.2,
            human_request: true,
            repeat_contacts: 3,
            repeat_window_hours: 72,
            same_issue_similarity: 0.35,
            emotions: [(crate::vocab::Emotion::Anger, 0.8)].into_iter().collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Manifest id of the sentence embedder used for retrieval.
    pub embedder: String,
    /// Manifest id of the chat model that writes answers; `"none"` (or `""`) for none: the
    /// answer endpoints then hand off or answer 503, and everything else works.
    #[serde(with = "optional")]
    pub generator: Option<String>,
    /// Sentiment of customer turns: `"head"` (the head over the embedder's vectors, trained on
    /// first start when the models cache has none: see `kefu train sentiment`) or `"none"`.
    #[serde(with = "optional")]
    pub sentiment: Option<SentimentSource>,
    /// Manifest id of the speech model; `"none"` (or `""`) for none: the voice endpoints then
    /// answer 503, and everything else works.
    #[serde(with = "optional")]
    pub asr: Option<String>,
    /// Worker threads for model maths (0: all cores).
    pub threads: usize,
}

/// Where customer-turn sentiment comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::EnumString, strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SentimentSource {
    /// The three-way head over the retrieval embedder's vectors.
    Head,
}

impl ModelsConfig {
    /// The generator's manifest id, or None when it is off.
    pub fn generator_id(&self) -> Option<&str> {
        self.generator.as_deref()
    }

    /// The speech model's manifest id, or None when voice is off.
    pub fn asr_id(&self) -> Option<&str> {
        self.asr.as_deref()
    }
}

/// An optional setting written `"none"` (or `""`) when off, as operators write it in files and
/// variables; `None` in the code.
mod optional {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        match s.trim() {
            "" | "none" => Ok(None),
            v => v.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// The one reading of an on/off setting, from a file or a variable: true, false, 1, 0, yes, no,
/// on, off (any case).
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(b),
        Raw::Int(0) => Ok(false),
        Raw::Int(1) => Ok(true),
        Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not on or off: use true or false"
            ))),
        },
        Raw::Int(n) => Err(serde::de::Error::custom(format!(
            "{n} is not on or off: use true or false"
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Chatbots and channel frontends: the answer endpoint.
    Channel,
    /// Agent-assist tools: search, suggestions.
    Agent,
    /// Knowledge curators: everything.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            "channel" => Ok(Role::Channel),
            other => Err(format!(
                "unknown role {other:?} (expected admin, agent or channel)"
            )),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Channel => "channel",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Who holds the key; recorded in the audit log. Defaults to `role-<key fingerprint>`.
    #[serde(default)]
    pub name: Option<String>,
    pub role: Role,
    pub key: String,
    /// A channel key used from a browser widget, where anyone can read it, proves which customer
    /// each request acts for: the widget's backend signs the customer id with this secret
    /// (`X-Kefu-Customer-Signature: hex(HMAC-SHA256(secret, id))`), and kefu refuses an unsigned
    /// or wrongly signed id. A leaked widget key then reaches only the customer it was signed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret: Option<String>,
    /// A quota: requests this key may make in any 24 hours (a burst of as many, refilled
    /// evenly over the day), beside `limits.rate_per_minute`; one more is 429 with Retry-After.
    /// Kept in memory: a restart starts the day afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_day: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest bulk import body, in bytes.
    pub max_import_bytes: usize,
    /// Largest card body, in bytes of UTF-8.
    pub max_card_bytes: usize,
    /// Embedding requests that may wait for the model; one more is refused with 503.
    pub embed_queue: usize,
    /// Most texts embedded in one forward pass.
    pub embed_batch: usize,
    /// The longest a request waits in a model's queue, in milliseconds: for the embedding model
    /// a query (a search, a question, a turn being read), for the chat model any request. One
    /// expected to wait longer (the queue's length at the recent rate), or that did, is refused
    /// with 503 and Retry-After: under overload a client hears "busy" at once instead of an
    /// answer after it gave up. Cards being indexed wait their turn.
    pub max_queue_wait_ms: u64,
    /// Generations that make progress at once (each holds its own KV cache).
    pub gen_slots: usize,
    /// Generations that may wait for a slot; one more is refused with 503.
    pub gen_queue: usize,
    /// Context window cap, in tokens (prompt + answer).
    pub gen_context: usize,
    /// Memory for the keys and values of prompts already read, in MiB, kept so that a prompt
    /// that begins the same way (instructions, the same cards) is not read again: about 24 KB
    /// per token with Qwen2.5 0.5B, so 256 MiB holds some 10,000 prompt tokens. 0: off.
    pub prefix_cache_mb: usize,
    /// Most turns one conversation holds; one more is refused (409) and the frontend starts a
    /// new conversation.
    pub max_conversation_turns: usize,
    /// Requests per minute per API key (a burst of as many, then this rate); one more is 429
    /// with Retry-After. A chatbot's channel key carries all its customers: size it for the
    /// frontend. 0: no limit. Keyless (local) mode has none.
    pub rate_per_minute: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComplianceConfig {
    /// Numbers and addresses that may appear in published cards although they look like personal
    /// data: the company's own hotline or support address, for instance.
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    pub default_top_k: usize,
    pub max_top_k: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            models_dir: default_models_dir(),
            manifest: None,
            offline: false,
            models: ModelsConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            compliance: ComplianceConfig::default(),
            search: SearchConfig::default(),
            answer: AnswerConfig::default(),
            escalation: EscalationConfig::default(),
            understanding: UnderstandingConfig::default(),
            routing: RoutingConfig::default(),
            vector: VectorConfig::default(),
            voice: VoiceConfig::default(),
            privacy: PrivacyConfig::default(),
            mining: MiningConfig::default(),
            insights: InsightsConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            embedder: "e5-small".into(),
            generator: Some("qwen2.5-0.5b".into()),
            sentiment: Some(SentimentSource::Head),
            asr: Some("whisper-base".into()),
            threads: 0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_import_bytes: 32 << 20,
            max_card_bytes: 64 << 10,
            embed_queue: 256,
            embed_batch: 32,
            max_queue_wait_ms: 5000,
            gen_slots: 8,
            gen_queue: 32,
            gen_context: 4096,
            prefix_cache_mb: 256,
            max_conversation_turns: crate::store::DEFAULT_MAX_TURNS,
            rate_per_minute: 1200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerConfig {
    /// A question whose best card scores below this gets a hand-off instead of a generated
    /// answer. Calibrated on eval/answer_calibration.jsonl (see eval/README.md).
    pub threshold: f32,
    /// Cards given to the model: those within `margin` of the best score, at most `max_cards`.
    pub max_cards: usize,
    pub margin: f32,
    /// Earlier turns of the conversation given to the model.
    pub history_turns: usize,
    /// When, with a chat model loaded, a question whose best card falls under `threshold` is
    /// translated into every other language of the published cards and searched among their
    /// cards too (one short generation per language).
    pub across_languages: AcrossLanguages,
    /// Taken off the score of a card found through a translation of the question, for ranking
    /// and for the threshold alike: a small model's translation is looser than the customer's
    /// own words (it may add an answer of its own), and without it unanswerable questions were
    /// answered. Chosen on the dev split (eval/README.md, "Across languages").
    pub translation_penalty: f32,
    /// How a covered question's reply is worded: the card's own sentences, or written by the
    /// chat model. Chosen by the graded answers (eval/README.md, "Extracted or generated").
    pub compose: Compose,
    /// Templates folder (default: ./prompts when present, else the built-in templates).
    pub prompts_dir: Option<PathBuf>,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            threshold: 0.72,
            max_cards: 3,
            margin: 0.05,
            history_turns: 6,
            across_languages: AcrossLanguages::NoCardsInLanguage,
            translation_penalty: 0.03,
            compose: Compose::Extract,
            prompts_dir: None,
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            default_top_k: 5,
            max_top_k: 50,
        }
    }
}

/// `$XDG_CACHE_HOME/kefu/models`, else `~/.cache/kefu/models`, else `./models/cache`.
fn default_models_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kefu/models");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache/kefu/models");
    }
    PathBuf::from("models/cache")
}

/// The options every `kefu` command takes (and `kefu-bench`'s, which reads the same
/// configuration), with their variables.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalFlags {
    /// Configuration file (default: ./kefu.toml when present).
    #[arg(long, global = true, env = "KEFU_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model weights cache.
    #[arg(long, global = true, env = "KEFU_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// A model manifest instead of the built-in one.
    #[arg(long, global = true, env = "KEFU_MANIFEST")]
    pub manifest: Option<PathBuf>,
    /// Never download models.
    #[arg(long, global = true, env = "KEFU_OFFLINE")]
    pub offline: bool,
}

impl GlobalFlags {
    /// What these flags override in the configuration.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            models_dir: self.models_dir.clone(),
            manifest: self.manifest.clone(),
            offline: self.offline,
            ..Default::default()
        }
    }
}

/// Values given on the command line (clap also reads their `KEFU_*` variables); `None` keeps
/// what the file and the other variables said.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub models_dir: Option<PathBuf>,
    pub manifest: Option<PathBuf>,
    pub offline: bool,
}

impl Config {
    /// Loads the layers. `file` is `--config`; without it `./kefu.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = match file {
            Some(p) => {
                // An explicit file must exist; figment would skip it silently.
                std::fs::metadata(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                Figment::from(Toml::file_exact(p))
            }
            // Only this directory's (figment's `file` would search the parent directories too),
            // and only when there is one: `file_exact` fails on a missing file.
            None if Path::new("kefu.toml").exists() => Figment::from(Toml::file_exact("kefu.toml")),
            None => Figment::new(),
        };
        let mut cfg = Self::layered(file, Env::raw())?;
        if let Some(a) = overrides.addr {
            cfg.addr = a;
        }
        if let Some(d) = &overrides.data_dir {
            cfg.data_dir = d.clone();
        }
        if let Some(d) = &overrides.models_dir {
            cfg.models_dir = d.clone();
        }
        if let Some(m) = &overrides.manifest {
            cfg.manifest = Some(m.clone());
        }
        cfg.offline |= overrides.offline;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Defaults, then `file`, then the variables of `env`: the documented names first, then
    /// the older aliases, then the two lists written as comma-separated text.
    fn layered(file: Figment, env: Env) -> Result<Config, ConfigError> {
        let keyed = env
            .clone()
            .filter_map(|k| {
                let k = k.as_str().to_ascii_lowercase();
                k.strip_prefix("kefu__")
                    .map(|path| path.replace("__", ".").into())
            })
            .ignore(&["auth.keys", "compliance.allow"]);
        let aliased = env.clone().filter_map(|k| {
            ALIASES
                .iter()
                .find(|(var, _)| k.as_str().eq_ignore_ascii_case(var))
                .map(|(_, path)| (*path).into())
        });
        let mut cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(file)
            .merge(aliased)
            .merge(keyed)
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        let var = |names: &[&'static str]| {
            names.iter().find_map(|n| {
                env.clone()
                    .filter(|k| k.as_str().eq_ignore_ascii_case(n))
                    .iter()
                    .next()
                    .map(|(_, v)| (*n, v.to_string()))
            })
        };
        if let Some((var, v)) = var(&["KEFU__AUTH__KEYS", "KEFU_API_KEYS"]) {
            cfg.auth.keys =
                parse_api_keys(&v).map_err(|message| ConfigError::Env { var, message })?;
        }
        if let Some((_, v)) = var(&["KEFU__COMPLIANCE__ALLOW", "KEFU_COMPLIANCE_ALLOW"]) {
            cfg.compliance.allow = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        Ok(cfg)
    }

    /// The configuration as `kefu config` prints it: secrets masked.
    pub fn masked(&self) -> Config {
        let mut shown = self.clone();
        for k in &mut shown.auth.keys {
            k.key = "********".into();
        }
        for s in shown
            .auth
            .keys
            .iter_mut()
            .filter_map(|k| k.identity_secret.as_mut())
        {
            *s = "********".into();
        }
        if let Some(k) = &mut shown.vector.api_key {
            *k = "********".into();
        }
        shown
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.mining.merge_similarity) || self.mining.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "mining.merge_similarity must be within [0, 1] and mining.max_attempts at least 1"
                    .into(),
            ));
        }
        let gaps = &self.insights;
        if !(-1.0..=1.0).contains(&gaps.gap_similarity)
            || !(2..=20_000).contains(&gaps.gap_questions)
        {
            return Err(ConfigError::Invalid(
                "insights.gap_similarity must be within [-1, 1] and insights.gap_questions within [2, 20000]".into(),
            ));
        }
        if self.privacy.sweep_minutes == 0 {
            return Err(ConfigError::Invalid(
                "privacy.sweep_minutes must be at least 1".into(),
            ));
        }
        let l = &self.limits;
        if l.max_body_bytes == 0
            || l.max_import_bytes == 0
            || l.max_card_bytes == 0
            || l.max_conversation_turns == 0
        {
            return Err(ConfigError::Invalid(
                "limits must be greater than zero".into(),
            ));
        }
        if l.embed_queue == 0 || l.embed_batch == 0 {
            return Err(ConfigError::Invalid(
                "limits.embed_queue and limits.embed_batch must be at least 1".into(),
            ));
        }
        if self.search.default_top_k == 0 || self.search.default_top_k > self.search.max_top_k {
            return Err(ConfigError::Invalid(
                "search.default_top_k must be between 1 and search.max_top_k".into(),
            ));
        }
        let vc = &self.voice;
        if vc.workers == 0 || vc.queue == 0 || vc.max_upload_bytes == 0 || vc.max_audio_seconds == 0
        {
            return Err(ConfigError::Invalid(
                "voice.workers, voice.queue, voice.max_upload_bytes and voice.max_audio_seconds must be at least 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&vc.vad_threshold) {
            return Err(ConfigError::Invalid(format!(
                "voice.vad_threshold is {}: use a score between 0 and 1",
                vc.vad_threshold
            )));
        }
        let score = |name: String, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::Invalid(format!(
                    "{name} is {v}: use a score between 0 and 1"
                )))
            }
        };
        score(
            "understanding.intent_min_confidence".into(),
            self.understanding.intent_min_confidence,
        )?;
        for (e, v) in &self.escalation.emotions {
            score(format!("escalation.emotions.{e}"), *v)?;
        }
        if self.routing.default_queue.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "routing.default_queue must name a queue".into(),
            ));
        }
        for (i, r) in self.routing.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "routing.rules[{i}] needs a name (it is shown in the route's reasons)"
                )));
            }
            if r.queue.is_none() && r.priority.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "routing rule {:?} sets neither a queue nor a priority: it would do nothing",
                    r.name
                )));
            }
            if r.queue.as_ref().is_some_and(|q| q.trim().is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "routing rule {:?} names an empty queue",
                    r.name
                )));
            }
            for (e, v) in &r.emotions {
                score(format!("routing rule {:?}: {e}", r.name), *v)?;
            }
        }
        if !(0.0..1.0).contains(&self.answer.translation_penalty) {
            return Err(ConfigError::Invalid(format!(
                "answer.translation_penalty is {}: use a score between 0 and 1",
                self.answer.translation_penalty
            )));
        }
        let v = &self.vector;
        if v.backend == VectorBackend::Qdrant
            && (v.collection.is_empty() || v.shard_number == 0 || v.replication_factor == 0)
        {
            return Err(ConfigError::Invalid(
                "vector.collection must be set and vector.shard_number and vector.replication_factor be at least 1".into(),
            ));
        }
        for k in &self.auth.keys {
            if EXAMPLE_KEYS.iter().any(|e| e.eq_ignore_ascii_case(&k.key)) {
                return Err(ConfigError::Invalid(format!(
                    "the {} key {:?} is the example key of kefu's documentation, which anyone can \
                     read: use a long random key",
                    k.role.as_str(),
                    k.name.as_deref().unwrap_or("")
                )));
            }
            if let Some(secret) = &k.identity_secret {
                if k.role != Role::Channel {
                    return Err(ConfigError::Invalid(format!(
                        "the {} key {:?} has an identity_secret: only channel keys act for a customer",
                        k.role.as_str(),
                        k.name.as_deref().unwrap_or("")
                    )));
                }
                if secret.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "the identity_secret of the channel key {:?} is shorter than 16 characters: use a long random secret",
                        k.name.as_deref().unwrap_or("")
                    )));
                }
            }
            if k.key.len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "the {} key {:?} is shorter than 8 characters: use a long random key",
                    k.role.as_str(),
                    k.name.as_deref().unwrap_or("")
                )));
            }
        }
        Ok(())
    }
}

/// The API keys kefu's own documentation shows (README, Dockerfile, error messages): a server
/// started with one of them copied in is open to anyone who has read it.
const EXAMPLE_KEYS: &[&str] = &["a-long-random-string", "CHANGE-ME", "s3cret-key"];

/// The environment names kept from before every key had one, and the key each sets. `kefu.toml`
/// and the `KEFU__SECTION__KEY` names are the documented way; these keep existing deployments
/// working. (`KEFU_API_KEYS` and `KEFU_COMPLIANCE_ALLOW` are comma-separated lists, read apart.)
pub const ALIASES: &[(&str, &str)] = &[
    ("KEFU_EMBEDDER", "models.embedder"),
    ("KEFU_GENERATOR", "models.generator"),
    ("KEFU_SENTIMENT", "models.sentiment"),
    ("KEFU_ASR", "models.asr"),
    ("KEFU_THREADS", "models.threads"),
    ("KEFU_VOICE_WORKERS", "voice.workers"),
    ("KEFU_VOICE_THREADS", "voice.threads"),
    ("KEFU_VOICE_QUEUE", "voice.queue"),
    ("KEFU_VOICE_MAX_STREAMS", "voice.max_streams"),
    ("KEFU_VOICE_FIT_WINDOW", "voice.fit_window"),
    ("KEFU_VOICE_MAX_UPLOAD_BYTES", "voice.max_upload_bytes"),
    ("KEFU_GEN_SLOTS", "limits.gen_slots"),
    ("KEFU_GEN_QUEUE", "limits.gen_queue"),
    ("KEFU_PREFIX_CACHE_MB", "limits.prefix_cache_mb"),
    ("KEFU_MAX_BODY_BYTES", "limits.max_body_bytes"),
    ("KEFU_MAX_CARD_BYTES", "limits.max_card_bytes"),
    ("KEFU_EMBED_QUEUE", "limits.embed_queue"),
    ("KEFU_PROMPTS_DIR", "answer.prompts_dir"),
    ("KEFU_ANSWER_THRESHOLD", "answer.threshold"),
    ("KEFU_VECTOR_BACKEND", "vector.backend"),
    ("KEFU_VECTOR_URL", "vector.url"),
    ("KEFU_VECTOR_API_KEY", "vector.api_key"),
    ("KEFU_VECTOR_COLLECTION", "vector.collection"),
    ("KEFU_VECTOR_SHARD_NUMBER", "vector.shard_number"),
    (
        "KEFU_VECTOR_REPLICATION_FACTOR",
        "vector.replication_factor",
    ),
    ("KEFU_VECTOR_ON_DISK", "vector.on_disk"),
];

/// Parses `admin:KEY1,agent:KEY2,channel:KEY3`.
pub fn parse_api_keys(s: &str) -> Result<Vec<ApiKey>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (role, key) = pair.split_once(':').ok_or_else(|| {
                format!("{pair:?} is not ROLE:KEY (for example admin:s3cret-key)")
            })?;
            Ok(ApiKey {
                name: None,
                role: role.parse()?,
                key: key.trim().to_string(),
                identity_secret: None,
                requests_per_day: None,
            })
        })
        .collect()
}

#[cfg(test)]
// figment's Jail takes closures that return figment's own, large, error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// The layers with a file's text and a fake environment.
    fn layered(file: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            out = Some(Config::layered(
                Figment::from(Toml::string(file)),
                Env::raw(),
            ));
            Ok(())
        });
        out.expect("the jail ran")
    }

    #[test]
    fn routing_and_signal_settings_that_cannot_work_are_refused() {
        for (file, says) in [
            (
                "[understanding]\nintent_min_confidence = 1.5\n",
                "intent_min_confidence",
            ),
            (
                "[escalation]\nemotions = { anger = -1 }\n",
                "escalation.emotions.anger",
            ),
            ("[routing]\ndefault_queue = \"\"\n", "default_queue"),
            (
                "[[routing.rules]]\nname = \"x\"\nintents = [\"refund\"]\n",
                "neither",
            ),
            ("[[routing.rules]]\nqueue = \"billing\"\n", "needs a name"),
        ] {
            let err = layered(file, &[]).and_then(|c| c.validate()).unwrap_err();
            assert!(err.to_string().contains(says), "{file}: {err}");
        }
        Config::default().validate().unwrap();
    }

    /// The README shows the default routing rules as TOML: that text must read back as the
    /// defaults, and an escalation emotion as a map.
    #[test]
    fn the_readme_routing_rules_are_the_defaults() {
        let readme = include_str!("../README.md");
        let after = readme
            .split("The default rules, as you would write them:")
            .nth(1)
            .expect("README routing section");
        let block = after
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        let cfg = layered(block, &[]).unwrap();
        assert_eq!(cfg.routing, RoutingConfig::default());
        let cfg = layered("[escalation]\nemotions = { urgency = 0.6 }\n", &[]).unwrap();
        assert_eq!(
            cfg.escalation.emotions.get(&crate::vocab::Emotion::Urgency),
            Some(&0.6)
        );
        assert!(layered("[escalation]\nemotions = { joy = 0.6 }\n", &[]).is_err());
    }

    #[test]
    fn layers_file_then_env() {
        let file = "addr = \"127.0.0.1:9000\"\n[limits]\nmax_card_bytes = 10\n";
        let cfg = layered(file, &[]).unwrap();
        assert_eq!(cfg.addr.port(), 9000);
        assert_eq!(cfg.limits.max_card_bytes, 10);
        assert_eq!(cfg.limits.max_body_bytes, Limits::default().max_body_bytes);
        let cfg = layered(
            file,
            &[
                ("KEFU_MAX_CARD_BYTES", "20"),
                ("KEFU_API_KEYS", "admin:aaaaaaaaaa, channel:bbbbbbbbbb"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.limits.max_card_bytes, 20);
        assert_eq!(cfg.auth.keys.len(), 2);
        assert_eq!(cfg.auth.keys[1].role, Role::Channel);
    }

    #[test]
    fn every_key_has_a_variable_named_by_its_path() {
        let cfg = layered(
            "",
            &[
                ("KEFU__LIMITS__GEN_CONTEXT", "1024"),
                ("KEFU__ESCALATION__HUMAN_REQUEST", "no"),
                ("KEFU__VOICE__FIT_WINDOW", "0"),
                ("KEFU__VECTOR__BACKEND", "qdrant"),
                ("KEFU__MODELS__GENERATOR", "none"),
                ("KEFU__MODELS__SENTIMENT", "none"),
                ("KEFU_ASR", ""),
            ],
        )
        .unwrap();
        assert_eq!(cfg.limits.gen_context, 1024);
        assert!(!cfg.escalation.human_request);
        assert!(!cfg.voice.fit_window);
        assert_eq!(cfg.vector.backend, VectorBackend::Qdrant);
        assert_eq!(cfg.models.generator, None);
        assert_eq!(cfg.models.sentiment, None);
        assert_eq!(cfg.models.asr, None);
        // The documented name wins over the old alias of the same key.
        let cfg = layered(
            "",
            &[
                ("KEFU__MODELS__EMBEDDER", "minilm"),
                ("KEFU_EMBEDDER", "e5-small"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.models.embedder, "minilm");
        // A value of the wrong kind names the key.
        let e = layered("", &[("KEFU__LIMITS__GEN_SLOTS", "many")]).unwrap_err();
        assert!(
            e.to_string().to_lowercase().contains("limits.gen_slots"),
            "{e}"
        );
        let e = layered("", &[("KEFU__VOICE__FIT_WINDOW", "maybe")]).unwrap_err();
        assert!(e.to_string().contains("not on or off"), "{e}");
        // A misspelt key is an error, not silently ignored.
        assert!(layered("", &[("KEFU__LIMITS__GEN_CONTXT", "1")]).is_err());
    }

    #[test]
    fn kefu_toml_is_read_from_this_directory_only() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("kefu.toml", "[limits]\ngen_slots = 3\n")?;
            let here = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(here.limits.gen_slots, 3);
            jail.change_dir(jail.create_dir("below")?)?;
            let below = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(below.limits.gen_slots, Limits::default().gen_slots);
            Ok(())
        });
    }

    #[test]
    fn the_printed_configuration_reads_back_and_hides_secrets() {
        let cfg = layered(
            "",
            &[
                ("KEFU_API_KEYS", "admin:aaaaaaaaaa"),
                ("KEFU_VECTOR_API_KEY", "qdrant-secret"),
            ],
        )
        .unwrap();
        let text = toml::to_string_pretty(&cfg.masked()).unwrap();
        assert!(
            !text.contains("aaaaaaaaaa") && !text.contains("qdrant-secret"),
            "{text}"
        );
        let back = layered(&text, &[]).unwrap();
        assert_eq!(back.models.generator, cfg.models.generator);
        assert_eq!(back.vector.backend, cfg.vector.backend);
    }

    #[test]
    fn rejects_bad_keys_and_unknown_fields() {
        assert!(parse_api_keys("root:abc").is_err());
        assert!(parse_api_keys("adminabc").is_err());
        assert!(toml::from_str::<Config>("adress = \"x\"").is_err());
    }

    #[test]
    fn the_documentations_example_keys_are_refused() {
        let checked = |file: &str, vars: &[(&str, &str)]| layered(file, vars)?.validate();
        for keys in [
            "admin:a-long-random-string",
            "admin:CHANGE-ME",
            "channel:S3cret-Key",
        ] {
            let e = checked("", &[("KEFU_API_KEYS", keys)]).unwrap_err();
            assert!(e.to_string().contains("example key"), "{keys}: {e}");
        }
        let file =
            "[[auth.keys]]\nname = \"console\"\nrole = \"admin\"\nkey = \"a-long-random-string\"\n";
        assert!(checked(file, &[]).is_err());
        assert!(checked("", &[("KEFU_API_KEYS", "admin:9f2c7e1a5b44")]).is_ok());
    }
}

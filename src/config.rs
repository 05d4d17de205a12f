//! One typed configuration, layered: built-in defaults < `kefu.toml` < `KEFU_*` environment <
//! command-line flags. Every key has a default, so an empty file (or none) is a valid setup.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
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
    pub offline: bool,
    pub models: ModelsConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub compliance: ComplianceConfig,
    pub search: SearchConfig,
    pub answer: AnswerConfig,
    pub escalation: EscalationConfig,
    pub vector: VectorConfig,
    pub voice: VoiceConfig,
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
    /// `embedded` or `qdrant`.
    pub backend: String,
    /// Qdrant's gRPC address.
    pub url: String,
    pub api_key: Option<String>,
    pub collection: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    /// Keep the vectors on disk (memory-mapped) rather than in RAM.
    pub on_disk: bool,
    /// How long one request to Qdrant may take before it counts as unavailable.
    pub timeout_ms: u64,
}

impl Default for VectorConfig {
    fn default() -> Self {
        VectorConfig {
            backend: "embedded".into(),
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
    pub human_request: bool,
    /// Flag when this many contacts of one customer (this conversation included), none marked
    /// resolved, are about the same issue within `repeat_window_hours` (0: never). Contacts on
    /// two or more channels also mark the conversation priority.
    pub repeat_contacts: usize,
    pub repeat_window_hours: u32,
    /// Two contacts are about the same issue when the cosine of their opening turns' centered
    /// embeddings reaches this (calibrated in eval/same_issue_pairs.jsonl).
    pub same_issue_similarity: f32,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            negative_streak: 2,
            sharp_drop: 1.2,
            human_request: true,
            repeat_contacts: 3,
            repeat_window_hours: 72,
            same_issue_similarity: 0.45,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Manifest id of the sentence embedder used for retrieval.
    pub embedder: String,
    /// Manifest id of the chat model that writes answers ("" or "none": no generator; the
    /// answer endpoints then answer 503 and everything else works).
    pub generator: String,
    /// Sentiment of customer turns: "head" (the head over the embedder's vectors, trained on
    /// first start when the models cache has none: see `kefu train sentiment`) or "none".
    pub sentiment: String,
    /// Manifest id of the speech model ("" or "none": no voice; the voice endpoints then answer
    /// 503 and everything else works).
    pub asr: String,
    /// Worker threads for model maths (0: all cores).
    pub threads: usize,
}

impl ModelsConfig {
    /// The generator's manifest id, or None when it is off ("" or "none").
    pub fn generator_id(&self) -> Option<&str> {
        Some(self.generator.as_str()).filter(|g| !g.is_empty() && *g != "none")
    }

    /// The speech model's manifest id, or None when voice is off ("" or "none").
    pub fn asr_id(&self) -> Option<&str> {
        Some(self.asr.as_str()).filter(|a| !a.is_empty() && *a != "none")
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
    /// Generations that make progress at once (each holds its own KV cache).
    pub gen_slots: usize,
    /// Generations that may wait for a slot; one more is refused with 503.
    pub gen_queue: usize,
    /// Context window cap, in tokens (prompt + answer).
    pub gen_context: usize,
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
            vector: VectorConfig::default(),
            voice: VoiceConfig::default(),
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            embedder: "e5-small".into(),
            generator: "qwen2.5-0.5b".into(),
            sentiment: "head".into(),
            asr: "whisper-base".into(),
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
            gen_slots: 8,
            gen_queue: 32,
            gen_context: 4096,
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
        let mut cfg = match file {
            Some(p) => Self::from_file(p)?,
            None if Path::new("kefu.toml").exists() => Self::from_file(Path::new("kefu.toml"))?,
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
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

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// The variables without a flag of their own. (`KEFU_ADDR`, `KEFU_DATA_DIR`,
    /// `KEFU_MODELS_DIR`, `KEFU_MANIFEST` and `KEFU_OFFLINE` are read by clap with their flags.)
    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn num(var: &'static str, v: &str) -> Result<usize, ConfigError> {
            v.trim().parse().map_err(|_| ConfigError::Env {
                var,
                message: format!("{v:?} is not a whole number"),
            })
        }
        if let Some(v) = get("KEFU_API_KEYS") {
            self.auth.keys = parse_api_keys(&v).map_err(|message| ConfigError::Env {
                var: "KEFU_API_KEYS",
                message,
            })?;
        }
        if let Some(v) = get("KEFU_EMBEDDER") {
            self.models.embedder = v;
        }
        if let Some(v) = get("KEFU_GENERATOR") {
            self.models.generator = v;
        }
        if let Some(v) = get("KEFU_SENTIMENT") {
            self.models.sentiment = v;
        }
        if let Some(v) = get("KEFU_ASR") {
            self.models.asr = v;
        }
        if let Some(v) = get("KEFU_VOICE_WORKERS") {
            self.voice.workers = num("KEFU_VOICE_WORKERS", &v)?;
        }
        if let Some(v) = get("KEFU_VOICE_THREADS") {
            self.voice.threads = num("KEFU_VOICE_THREADS", &v)?;
        }
        if let Some(v) = get("KEFU_VOICE_QUEUE") {
            self.voice.queue = num("KEFU_VOICE_QUEUE", &v)?;
        }
        if let Some(v) = get("KEFU_VOICE_MAX_STREAMS") {
            self.voice.max_streams = num("KEFU_VOICE_MAX_STREAMS", &v)?;
        }
        if let Some(v) = get("KEFU_VOICE_FIT_WINDOW") {
            self.voice.fit_window = !matches!(v.trim(), "0" | "false" | "no");
        }
        if let Some(v) = get("KEFU_VOICE_MAX_UPLOAD_BYTES") {
            self.voice.max_upload_bytes = num("KEFU_VOICE_MAX_UPLOAD_BYTES", &v)?;
        }
        if let Some(v) = get("KEFU_GEN_SLOTS") {
            self.limits.gen_slots = num("KEFU_GEN_SLOTS", &v)?;
        }
        if let Some(v) = get("KEFU_GEN_QUEUE") {
            self.limits.gen_queue = num("KEFU_GEN_QUEUE", &v)?;
        }
        if let Some(v) = get("KEFU_PROMPTS_DIR") {
            self.answer.prompts_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("KEFU_ANSWER_THRESHOLD") {
            self.answer.threshold = v.trim().parse().map_err(|_| ConfigError::Env {
                var: "KEFU_ANSWER_THRESHOLD",
                message: format!("{v:?} is not a number"),
            })?;
        }
        if let Some(v) = get("KEFU_THREADS") {
            self.models.threads = num("KEFU_THREADS", &v)?;
        }
        if let Some(v) = get("KEFU_MAX_BODY_BYTES") {
            self.limits.max_body_bytes = num("KEFU_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("KEFU_MAX_CARD_BYTES") {
            self.limits.max_card_bytes = num("KEFU_MAX_CARD_BYTES", &v)?;
        }
        if let Some(v) = get("KEFU_EMBED_QUEUE") {
            self.limits.embed_queue = num("KEFU_EMBED_QUEUE", &v)?;
        }
        if let Some(v) = get("KEFU_VECTOR_BACKEND") {
            self.vector.backend = v.trim().to_string();
        }
        if let Some(v) = get("KEFU_VECTOR_URL") {
            self.vector.url = v.trim().to_string();
        }
        if let Some(v) = get("KEFU_VECTOR_API_KEY") {
            self.vector.api_key = Some(v).filter(|k| !k.is_empty());
        }
        if let Some(v) = get("KEFU_VECTOR_COLLECTION") {
            self.vector.collection = v.trim().to_string();
        }
        if let Some(v) = get("KEFU_VECTOR_SHARD_NUMBER") {
            self.vector.shard_number = num("KEFU_VECTOR_SHARD_NUMBER", &v)? as u32;
        }
        if let Some(v) = get("KEFU_VECTOR_REPLICATION_FACTOR") {
            self.vector.replication_factor = num("KEFU_VECTOR_REPLICATION_FACTOR", &v)? as u32;
        }
        if let Some(v) = get("KEFU_VECTOR_ON_DISK") {
            self.vector.on_disk = matches!(v.trim(), "1" | "true" | "yes");
        }
        if let Some(v) = get("KEFU_COMPLIANCE_ALLOW") {
            self.compliance.allow = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_body_bytes == 0 || l.max_import_bytes == 0 || l.max_card_bytes == 0 {
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
        if !matches!(self.models.sentiment.as_str(), "head" | "none") {
            return Err(ConfigError::Invalid(format!(
                "models.sentiment is {:?}: use \"head\" or \"none\"",
                self.models.sentiment
            )));
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
        let v = &self.vector;
        if !matches!(v.backend.as_str(), "embedded" | "qdrant") {
            return Err(ConfigError::Invalid(format!(
                "vector.backend is {:?}: use \"embedded\" or \"qdrant\"",
                v.backend
            )));
        }
        if v.backend == "qdrant"
            && (v.collection.is_empty() || v.shard_number == 0 || v.replication_factor == 0)
        {
            return Err(ConfigError::Invalid(
                "vector.collection must be set and vector.shard_number and vector.replication_factor be at least 1".into(),
            ));
        }
        for k in &self.auth.keys {
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
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_then_env() {
        let mut cfg: Config =
            toml::from_str("addr = \"127.0.0.1:9000\"\n[limits]\nmax_card_bytes = 10\n").unwrap();
        assert_eq!(cfg.addr.port(), 9000);
        assert_eq!(cfg.limits.max_card_bytes, 10);
        assert_eq!(cfg.limits.max_body_bytes, Limits::default().max_body_bytes);
        cfg.apply_env(|k| match k {
            "KEFU_MAX_CARD_BYTES" => Some("20".into()),
            "KEFU_API_KEYS" => Some("admin:aaaaaaaaaa, channel:bbbbbbbbbb".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.limits.max_card_bytes, 20);
        assert_eq!(cfg.auth.keys.len(), 2);
        assert_eq!(cfg.auth.keys[1].role, Role::Channel);
    }

    #[test]
    fn rejects_bad_keys_and_unknown_fields() {
        assert!(parse_api_keys("root:abc").is_err());
        assert!(parse_api_keys("adminabc").is_err());
        assert!(toml::from_str::<Config>("adress = \"x\"").is_err());
    }
}

//! Start-up and shutdown in one visible place: open the store, make sure the models are there
//! (fetching them on first start), load them onto the device, rebuild the index, bind, serve,
//! and stop cleanly on SIGINT or SIGTERM.

use std::sync::Arc;

use crate::api::{self, AppState, auth::Keys};
use crate::config::Config;
use crate::conversation::Conversations;
use crate::conversation::intents::Intents;
use crate::conversation::signals::{self, Heads, Understanding};
use crate::conversation::training;
use crate::desk::Desk;
use crate::desk::mining::Miner;
use crate::knowledge::Knowledge;
use crate::knowledge::answer::Answerer;
use crate::knowledge::prompts::Prompts;
use crate::runtime::asr::AsrPool;
use crate::runtime::embed::{EmbedPool, Embedder};
use crate::runtime::generate::{GenPool, Generator};
use crate::runtime::registry::Registry;
use crate::runtime::{ModelError, device};
use crate::store::vector::embedded::EmbeddedIndex;
use crate::store::vector::qdrant::QdrantIndex;
use crate::store::vector::{VectorError, VectorIndex};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0} without API keys: anyone who can reach it could change the knowledge base. Set KEFU_API_KEYS (e.g. admin:LONG-RANDOM-KEY) or [auth] keys in kefu.toml, or listen on 127.0.0.1"
    )]
    OpenWithoutKeys(std::net::SocketAddr),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("start-up failed: {0}")]
    Other(String),
}

/// The models `build` loads off the reactor.
type Loaded = (Embedder, Option<Generator>, Option<Heads>, Option<AsrPool>);

/// Everything the API needs, built and ready.
pub async fn build(cfg: Config) -> Result<AppState, StartError> {
    if !cfg.addr.ip().is_loopback() && cfg.auth.keys.is_empty() {
        return Err(StartError::OpenWithoutKeys(cfg.addr));
    }
    let store =
        Arc::new(Store::open(&cfg.data_dir)?.with_max_turns(cfg.limits.max_conversation_turns));
    let registry = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    let embedder_id = cfg.models.embedder.clone();
    let generator_id = cfg.models.generator_id().map(str::to_string);
    let gen_context = cfg.limits.gen_context;
    let dev = device::select();
    tracing::info!(device = %device::describe(&dev), "{}", device::simd_report());
    // Fetching and loading read hundreds of megabytes: off the async reactor.
    let want_sentiment = cfg.models.sentiment.is_some();
    let models_dir = cfg.models_dir.clone();
    let asr_id = cfg.models.asr_id().map(str::to_string);
    let voice = cfg.voice.clone();
    let asr_threads = voice.threads_per_worker(cfg.models.threads);
    let (embedder, generator, head, asr) = tokio::task::spawn_blocking(
        move || -> Result<Loaded, ModelError> {
            let files = registry.ensure(&embedder_id)?;
            let started = std::time::Instant::now();
            let e = Embedder::load(&files, &dev)?;
            tracing::info!(model = %embedder_id, dim = e.dim(), max_tokens = e.max_tokens(), secs = started.elapsed().as_secs_f32(), "embedder loaded");
            let head = if want_sentiment {
                let path = signals::heads_path(&models_dir, e.id());
                let found = if path.exists() {
                    Some(Heads::load(&path)?)
                } else {
                    None
                };
                match found {
                    Some(h) if h.taught_current_turns() => Some(h),
                    stale => {
                        // Like fetching a model on first start: the heads are made from labelled
                        // data (a few minutes on 2 cores), once; and again after an upgrade that
                        // brings new labelled turns, or the old heads would keep the old figures
                        // (the cached vectors make that seconds). Without the data (offline) the
                        // service still starts, on the old heads if there are any, else without
                        // sentiment, which then answers 503 and says why.
                        tracing::info!(path = %path.display(), stale = stale.is_some(), "training the signal heads (kefu train signals)");
                        match training::train(&registry, &e, training::TrainPlan::default(), &path) {
                            Ok(h) => Some(h),
                            Err(err) if stale.is_some() => {
                                tracing::warn!(error = %err, "could not train the signal heads again: keeping the ones taught other support turns");
                                stale
                            }
                            Err(err) => {
                                tracing::error!(error = %err, "could not train the signal heads: starting without sentiment, emotions and intents; run `kefu train signals` when the data can be fetched");
                                None
                            }
                        }
                    }
                }
            } else {
                tracing::warn!("sentiment disabled (models.sentiment = \"none\"): /v1/sentiment answers 503");
                None
            };
            let g = match generator_id {
                None => {
                    tracing::warn!("no generator configured: /v1/answer hands off, chat completions answer 503");
                    None
                }
                Some(id) => {
                    let files = registry.ensure(&id)?;
                    let started = std::time::Instant::now();
                    let g = Generator::load(&files, &dev, gen_context)?;
                    tracing::info!(model = %id, secs = started.elapsed().as_secs_f32(), "generator loaded");
                    Some(g)
                }
            };
            // Voice last: a missing core model (the embedder) is the first thing to report.
            let asr = match asr_id {
                None => {
                    tracing::warn!("no speech model configured (models.asr = \"none\"): the voice endpoints answer 503");
                    None
                }
                Some(id) => {
                    // Fetching converts the CTranslate2 weights to ggml, once.
                    let files = registry.ensure(&id)?;
                    let started = std::time::Instant::now();
                    let pool = AsrPool::start(&files, voice.workers, asr_threads, voice.queue, voice.fit_window, &dev)?;
                    tracing::info!(model = %id, workers = pool.workers(), threads = pool.threads(), multilingual = pool.multilingual(), secs = started.elapsed().as_secs_f32(), whisper_cpp = %crate::runtime::asr::system_info(), "speech model loaded");
                    Some(pool)
                }
            };
            Ok((e, g, head, asr))
        },
    )
    .await
    .map_err(|e| StartError::Other(e.to_string()))??;
    let pool = EmbedPool::start(
        embedder,
        cfg.limits.embed_queue,
        cfg.limits.embed_batch,
        std::time::Duration::from_millis(cfg.limits.max_queue_wait_ms),
    );
    let understanding = match head {
        Some(heads) => {
            let heads = Arc::new(heads);
            let intents = Intents::start(
                pool.clone(),
                heads.clone(),
                store.clone(),
                cfg.understanding.intent_min_confidence,
            )
            .await
            .map_err(|e| StartError::Other(format!("training the intent head: {e}")))?;
            let u = Understanding::new(pool.clone(), heads, intents)?;
            tracing::info!(cv_emotion_f1 = %u.provenance()["cv_emotion_f1"], "signal heads ready");
            Some(u)
        }
        None => None,
    };
    let gen_pool = generator
        .map(|g| {
            GenPool::start(
                g,
                cfg.limits.gen_slots,
                cfg.limits.gen_queue,
                std::time::Duration::from_millis(cfg.limits.max_queue_wait_ms),
                cfg.limits.prefix_cache_mb.saturating_mul(1 << 20),
            )
        })
        .transpose()?;
    if let Some(g) = &gen_pool {
        tracing::info!(
            model = g.id(),
            architecture = g.architecture(),
            context = g.context(),
            slots = g.slots(),
            "generator ready"
        );
    }
    let prompts = Arc::new(
        Prompts::open(cfg.answer.prompts_dir.as_deref())
            .map_err(|e| StartError::Other(format!("prompt templates: {e}")))?,
    );
    tracing::info!(source = %prompts.info().source, "prompt templates loaded");
    let index = vector_index(&cfg.vector, pool.dim()).await?;
    let knowledge = Arc::new(Knowledge::new(
        store,
        pool,
        index,
        &cfg.compliance.allow,
        cfg.limits.max_card_bytes,
    ));
    knowledge
        .prepare_index()
        .await
        .map_err(|e| StartError::Other(format!("loading the vector index: {e}")))?;
    knowledge.spawn_index_repair();
    tracing::info!(backend = knowledge.index_backend(), "vector index ready");
    let conversations = Arc::new(Conversations::new(
        knowledge.store().clone(),
        understanding,
        cfg.escalation.clone(),
        cfg.routing.clone(),
        &cfg.privacy,
        &cfg.compliance.allow,
    ));
    conversations.spawn_retention(std::time::Duration::from_secs(
        cfg.privacy.sweep_minutes * 60,
    ));
    let answerer = Arc::new(Answerer::new(
        knowledge.clone(),
        gen_pool,
        prompts,
        cfg.answer.clone(),
    ));
    let miner = Arc::new(Miner::new(
        knowledge.clone(),
        answerer.clone(),
        cfg.mining.clone(),
        &cfg.compliance.allow,
    ));
    miner.spawn();
    let config = Arc::new(cfg);
    let insights = crate::desk::insights::Insights::new(
        knowledge.clone(),
        conversations.clone(),
        miner.clone(),
        config.insights.clone(),
        &config.compliance.allow,
    );
    let desk = Arc::new(Desk {
        knowledge: knowledge.clone(),
        answerer,
        conversations: conversations.clone(),
        asr,
        miner,
        insights,
        config: config.clone(),
    });
    let streams: Arc<api::voice::StreamCount> = Default::default();
    let uploads: Arc<api::voice::StreamCount> = Default::default();
    Ok(AppState {
        knowledge,
        conversations,
        keys: Arc::new(Keys::new(&config.auth.keys, config.limits.rate_per_minute)),
        sessions: Arc::new(api::auth::Sessions::new(
            std::time::Duration::from_secs(config.console.session_hours.max(1) * 3600),
            10_000,
        )),
        config,
        metrics: Arc::new(api::metrics::Metrics::new(
            desk.clone(),
            streams.clone(),
            uploads.clone(),
        )),
        desk,
        streams,
        uploads,
    })
}

/// The cards and their vector index without the models a server needs (for `kefu index`):
/// the store, the embedder and the configured backend.
pub async fn knowledge_only(cfg: &Config) -> Result<Arc<Knowledge>, StartError> {
    let store = Arc::new(Store::open(&cfg.data_dir)?);
    let registry = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    let id = cfg.models.embedder.clone();
    let embedder = tokio::task::spawn_blocking(move || -> Result<Embedder, ModelError> {
        let files = registry.ensure(&id)?;
        Embedder::load(&files, &device::select())
    })
    .await
    .map_err(|e| StartError::Other(e.to_string()))??;
    let pool = EmbedPool::start(
        embedder,
        cfg.limits.embed_queue,
        cfg.limits.embed_batch,
        std::time::Duration::from_millis(cfg.limits.max_queue_wait_ms),
    );
    let index = vector_index(&cfg.vector, pool.dim()).await?;
    Ok(Arc::new(Knowledge::new(
        store,
        pool,
        index,
        &cfg.compliance.allow,
        cfg.limits.max_card_bytes,
    )))
}

/// The configured vector backend. Qdrant that cannot be reached does not stop the server (it
/// starts, says why in /readyz, answers retrieval with 503 and reconnects); a Qdrant collection
/// made for another embedding model does.
pub async fn vector_index(
    cfg: &crate::config::VectorConfig,
    dim: usize,
) -> Result<Arc<dyn VectorIndex>, StartError> {
    if cfg.backend != crate::config::VectorBackend::Qdrant {
        return Ok(Arc::new(EmbeddedIndex::new(dim)));
    }
    let q = QdrantIndex::new(cfg, dim).map_err(|e| StartError::Other(e.to_string()))?;
    match q.connect().await {
        Ok(()) => {
            tracing::info!(url = %cfg.url, collection = q.collection(), "connected to Qdrant")
        }
        Err(VectorError::Unusable(m)) => return Err(StartError::Other(m)),
        Err(e) => {
            tracing::error!(error = %e, "Qdrant is unavailable: starting anyway; retrieval answers 503 until it is reachable")
        }
    }
    q.spawn_watchdog();
    Ok(q)
}

/// Process set-up every `kefu` program does before anything else: logs to stderr (`KEFU_LOG`
/// filters them), then the configuration, then the model-thread limit, which has to be in the
/// environment before any thread pool exists, so call this first thing in `main`.
pub fn start_process(
    config_file: Option<&std::path::Path>,
    overrides: &crate::config::Overrides,
) -> Result<Config, crate::config::ConfigError> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::load(config_file, overrides)?;
    if cfg.models.threads > 0 {
        // candle's kernels size their pools from this variable.
        // SAFETY: called first thing in main, before any other thread has started.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", cfg.models.threads.to_string()) };
    }
    Ok(cfg)
}

/// Builds, binds and serves until SIGINT or SIGTERM. Prints `kefu listening on http://ADDR` on
/// stdout once it accepts connections (scripts and tests wait for that line).
pub async fn run(cfg: Config) -> Result<(), StartError> {
    let addr = cfg.addr;
    let state = build(cfg).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    if !state.keys.enabled() {
        tracing::warn!(
            "no API keys configured: every local caller is an admin (set KEFU_API_KEYS to require keys)"
        );
    }
    spawn_reload_on_hangup(state.desk.answerer.clone());
    println!("kefu listening on http://{local}");
    tracing::info!(%local, "listening");
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP re-reads the prompt templates, the usual way to tell a daemon its files changed.
fn spawn_reload_on_hangup(answerer: Arc<Answerer>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Err(e) = answerer.prompts().reload() {
                tracing::error!(error = %e, "prompt reload refused; the previous templates stay in use");
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

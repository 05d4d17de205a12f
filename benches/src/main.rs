//! `kefu-bench`: the measuring tools, apart from the server. `kefu eval` and `kefu bench` run
//! this program (the `kefu` binary passes its arguments on), so either name works:
//!
//! - `eval`: answer quality on the labelled datasets in eval/ (eval/README.md), through the HTTP
//!   API of a server it starts or one given with --url;
//! - `bench`: speed on this machine, alone and beside the peers (benches/README.md).
//!
//! The HTTP client (`client`) and the plots (`bench::plot`) live here, so the server library
//! and binary carry neither reqwest nor plotters.

mod bench;
mod client;
mod eval;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kefu::config::GlobalFlags;

#[derive(Parser)]
#[command(
    name = "kefu",
    version,
    about = "kefu's measuring tools: answer quality (eval) and speed (bench)"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, value_delimiter = ',', default_value = "retrieval,handoff,answers,sentiment,signals,routing,escalation,adversarial,asr,mining,gaps,pii",
              value_parser = ["retrieval", "handoff", "answers", "sentiment", "signals", "routing", "escalation", "adversarial", "asr", "mining", "gaps", "pii"])]
        suites: Vec<String>,
    },
    /// Measure speed on this machine (see benches/README.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
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
    /// The server under several times the work it can do (a calibrated closed loop, then
    /// open-loop arrivals): served, shed with 429/503 and Retry-After, errors (must be 0), peak
    /// resident memory, and every acknowledged write read back after a kill -9 and restart.
    Load(bench::load::Options),
    /// Customer turns read per second: the embedding pass alone, sentiment, every signal.
    Signals {
        #[arg(long, default_value_t = 300)]
        turns: usize,
        /// Where support_turns.jsonl is.
        #[arg(long, default_value = "eval")]
        dir: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
    },
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// The `kefu` program beside this one: the peers' scripts run `kefu transcribe` with it.
pub fn kefu_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(format!("kefu{}", std::env::consts::EXE_SUFFIX)))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = kefu::server::start_process(cli.global.config.as_deref(), &cli.global.overrides())?;
    match cli.command {
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
            command: BenchCommand::Signals { turns, dir, json },
        } => {
            runtime()?.block_on(bench::signals::run(cfg, turns, dir, json))?;
        }
        Command::Bench {
            command: BenchCommand::Load(o),
        } => {
            runtime()?.block_on(bench::load::run(cfg, o))?;
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
    }
    Ok(())
}

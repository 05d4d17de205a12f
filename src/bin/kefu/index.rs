//! `kefu index`: rebuild the vector index from the cards, or check that it agrees with them.

use clap::Subcommand;
use kefu::config::Config;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum IndexCommand {
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

impl IndexCommand {
    /// The data directory given on the command line, if any.
    pub fn data_dir(&self) -> Option<PathBuf> {
        match self {
            IndexCommand::Rebuild { data_dir, .. } | IndexCommand::Verify { data_dir } => {
                data_dir.clone()
            }
        }
    }
}

/// Exits 1 when the index disagrees with the cards.
pub fn run(cfg: &Config, command: IndexCommand) -> anyhow::Result<()> {
    let rt = super::runtime()?;
    let code = rt.block_on(async {
        let k = kefu::server::knowledge_only(cfg).await?;
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

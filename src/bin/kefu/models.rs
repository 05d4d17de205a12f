//! `kefu models`: the model registry (list, fetch, verify, convert).

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use kefu::config::Config;
use kefu::runtime::registry::{Presence, Registry};

#[derive(Subcommand)]
pub enum ModelsCommand {
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

pub fn run(cfg: &Config, command: ModelsCommand) -> anyhow::Result<()> {
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
                vec![cfg.models.asr.clone().context(
                    "no speech model is configured (models.asr): name the models to convert",
                )?]
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
    Ok(())
}

fn human(n: u64) -> String {
    match n {
        0 => "-".into(),
        n if n >= 1 << 20 => format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.0} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

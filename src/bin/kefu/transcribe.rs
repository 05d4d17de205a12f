//! `kefu transcribe`: audio files through the same decoding, resampling and model pool as the
//! server, each transcript printed with its real-time factor (decode time / audio time).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use kefu::config::Config;
use kefu::runtime::registry::Registry;

#[derive(Args)]
pub struct TranscribeArgs {
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
}

pub fn run(cfg: &Config, a: TranscribeArgs) -> anyhow::Result<()> {
    super::runtime()?.block_on(transcribe(
        cfg, a.files, a.model, a.language, a.threads, a.json,
    ))
}

/// `kefu transcribe`: files through the same decoding, resampling and model pool as the server.
async fn transcribe(
    cfg: &Config,
    files: Vec<PathBuf>,
    model: Option<String>,
    language: Option<String>,
    threads: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    use kefu::runtime::asr::{AsrOptions, AsrPool};
    use kefu::speech::audio;
    let id = model
        .or_else(|| cfg.models.asr.clone())
        .context("no speech model is configured (models.asr): name one with --model")?;
    let reg = Registry::open(cfg.manifest.as_deref(), &cfg.models_dir, cfg.offline)?;
    let threads = threads.unwrap_or_else(|| cfg.voice.threads_per_worker(cfg.models.threads));
    let fit_window = cfg.voice.fit_window;
    let pool = tokio::task::spawn_blocking(move || -> anyhow::Result<AsrPool> {
        let files = reg.ensure(&id)?;
        Ok(AsrPool::start(
            &files,
            1,
            threads,
            4,
            fit_window,
            &kefu::runtime::device::select(),
        )?)
    })
    .await??;
    eprintln!(
        "{}: {} thread(s); whisper.cpp: {}",
        pool.id(),
        pool.threads(),
        kefu::runtime::asr::system_info()
    );
    let (mut audio_s, mut decode_s) = (0.0, 0.0);
    for f in files {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        let ext = f.extension().and_then(|e| e.to_str()).map(str::to_string);
        let max = cfg.voice.max_audio_seconds as f64;
        let started = Instant::now();
        let decoded =
            tokio::task::spawn_blocking(move || audio::decode_file(bytes, ext.as_deref(), max))
                .await?
                .with_context(|| format!("{}", f.display()))?;
        let decode_audio_ms = started.elapsed().as_millis();
        let t = pool
            .transcribe(
                decoded.samples,
                AsrOptions {
                    language: language.clone(),
                    ..Default::default()
                },
            )
            .await?;
        let rtf = t.decode_ms as f64 / t.audio_ms.max(1) as f64;
        audio_s += t.audio_ms as f64 / 1000.0;
        decode_s += t.decode_ms as f64 / 1000.0;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "file": f.display().to_string(), "text": t.text, "language": t.language,
                    "audio_ms": t.audio_ms, "decode_ms": t.decode_ms, "audio_decode_ms": decode_audio_ms, "rtf": rtf,
                })
            );
        } else {
            println!(
                "{}\t[{} {:.1}s rtf {:.3}]\t{}",
                f.display(),
                t.language,
                t.audio_ms as f64 / 1000.0,
                rtf,
                t.text
            );
        }
    }
    if !json && audio_s > 0.0 {
        println!(
            "total: {audio_s:.1} s of audio in {decode_s:.1} s: real-time factor {:.3}",
            decode_s / audio_s
        );
    }
    Ok(())
}

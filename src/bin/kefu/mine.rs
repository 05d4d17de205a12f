//! `kefu mine`: draft cards from resolved conversations now, instead of waiting for the server's
//! background worker. Queues every resolved conversation a person answered in that no job has
//! taken up (those resolved before mining was on), then runs the queue to the end with a
//! progress bar. Safe beside a running server: a job is claimed by one worker only.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kefu::config::Config;
use kefu::desk::mining::Outcome;
use std::path::PathBuf;

#[derive(Args)]
pub struct MineArgs {
    #[arg(long, env = "KEFU_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn run(cfg: &Config) -> anyhow::Result<()> {
    let mut cfg = cfg.clone();
    // Only the models mining uses, and no background worker of our own: this command is it.
    cfg.models.asr = None;
    cfg.mining.enabled = false;
    super::runtime()?.block_on(async {
        let state = kefu::server::build(cfg).await?;
        let miner = &state.desk.miner;
        let queued = miner.queue_unmined().await?;
        let waiting = miner.counts().await?.queued;
        println!("{queued} resolved conversations queued; {waiting} jobs to run");
        let bar = ProgressBar::new(waiting);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}]")?,
        );
        let (mut created, mut merged, mut skipped, mut failed) = (0, 0, 0, 0);
        miner
            .drain(|job, outcome| {
                match outcome {
                    Ok(Outcome::Created { .. }) => created += 1,
                    Ok(Outcome::Merged { .. }) => merged += 1,
                    Ok(Outcome::Skipped { .. }) => skipped += 1,
                    Err(e) => {
                        failed += 1;
                        bar.println(format!("conversation {}: {e}", job.subject));
                    }
                }
                bar.inc(1);
            })
            .await?;
        bar.finish_and_clear();
        println!(
            "{created} cards drafted into review, {merged} merged into existing cards as evidence, {skipped} skipped, {failed} failed"
        );
        anyhow::Ok(())
    })
}

//! `kefu serve`: start the server and run until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use kefu::config::{Config, Overrides};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KEFU_ADDR")]
    addr: Option<SocketAddr>,
    /// Data directory (cards, conversations, index).
    #[arg(long, env = "KEFU_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl ServeArgs {
    pub fn override_config(&self, ov: &mut Overrides) {
        ov.addr = self.addr;
        ov.data_dir = self.data_dir.clone();
    }
}

pub fn run(cfg: Config) -> anyhow::Result<()> {
    super::runtime()?.block_on(kefu::server::run(cfg))?;
    Ok(())
}

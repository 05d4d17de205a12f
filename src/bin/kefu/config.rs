//! `kefu config`: the effective configuration, every layer applied, secrets masked.

use kefu::config::Config;

pub fn run(cfg: &Config) -> anyhow::Result<()> {
    println!("{}", toml::to_string_pretty(&cfg.masked())?);
    Ok(())
}

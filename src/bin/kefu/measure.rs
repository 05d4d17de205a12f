//! `kefu eval` and `kefu bench`: the measuring tools live in the `kefu-bench` program (the
//! benches/ workspace member, built beside `kefu`). This runs it with the same arguments, as git
//! runs its subcommands, so the commands read the same either way.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// Everything after the subcommand, for `kefu-bench` to parse.
#[derive(Args)]
pub struct Passed {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<OsString>,
}

/// `kefu-bench` next to this program, else the one on PATH.
fn program() -> PathBuf {
    let name = format!("kefu-bench{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(&name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs `kefu-bench` with this command's arguments and exits with its status.
pub fn run() -> anyhow::Result<()> {
    let program = program();
    let status = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .status()
        .with_context(|| {
            format!(
                "running {}: build it with `cargo build --release -p kefu-bench` (it is built with `cargo build` at the top of the repository)",
                program.display()
            )
        })?;
    std::process::exit(status.code().unwrap_or(1));
}

//! memesd: parse the command line, set up logging, run the daemon (see [`memes::daemon`]).

use clap::Parser;
use memes::daemon::{self, config::DaemonArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEMES_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match daemon::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

//! memesd: parse the command line, set up logging, run the daemon (see [`memes::daemon`]).

use clap::Parser;
use memes::daemon::{self, config::DaemonArgs};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file (the autostart's) or a service
        // manager's journal gets plain text, and NO_COLOR turns it off everywhere.
        .with_ansi(memes::daemon::config::colour_logs(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
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

//! memesd: parse the command line, set up logging, run the daemon (see [`memes::daemon`]),
//! or one of its subcommands (`export`, `import`: [`memes::daemon::transfer`]).

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
    let outcome = match &args.command {
        Some(command) => daemon::transfer::run(command, &args),
        None => daemon::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

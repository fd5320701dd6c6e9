//! memesd: read the settings (flags, environment, `--config` file), set up logging, run the
//! daemon (see [`memes::daemon`]) or one of its subcommands (`export`, `import`:
//! [`memes::daemon::transfer`]).

use memes::daemon::{self, config_file, logging};
use std::process::ExitCode;

fn main() -> ExitCode {
    let settings = config_file::load().unwrap_or_else(|error| error.exit());
    if settings.args.print_config {
        print!("{}", settings.report());
        return ExitCode::SUCCESS;
    }
    let _log = match logging::init(settings.args.log_format, settings.args.log_file.as_deref()) {
        Ok(guard) => guard,
        Err(error) => {
            let file = settings
                .args
                .log_file
                .as_deref()
                .unwrap_or(std::path::Path::new(""));
            eprintln!(
                "memesd: cannot open the log file {}: {error}",
                file.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let outcome = match &settings.args.command {
        Some(command) => daemon::transfer::run(command, &settings.args),
        None => daemon::run(settings.args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

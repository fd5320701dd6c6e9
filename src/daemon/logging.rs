//! memesd's log: to stderr, filtered by `MEMES_LOG` (an `EnvFilter`, `info` by default), as
//! text for people or as one JSON object per line for log collectors (`--log-format json`).
//!
//! Request ids: every request handled by a front runs in a `request` span carrying its id
//! (HTTP: `X-Request-Id`; the socket: the request's `id`, or its number on the connection),
//! inside a `connection` span on the socket. Those spans are at debug level, so at the default
//! level they are never created and cost nothing; with `MEMES_LOG=debug` every line written
//! while a request is handled names it, and each request gets an access line.

use clap::ValueEnum;
use std::ffi::OsStr;
use std::io::IsTerminal;

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (coloured on a terminal unless NO_COLOR is set).
    #[default]
    Text,
    /// One JSON object per event: timestamp, level, target, fields, and the spans it ran in.
    Json,
}

/// Sets up logging for the rest of the process (memesd's `main`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        // Colour only for a person at a terminal: a log file (the autostart's) or a service
        // manager's journal gets plain text, and NO_COLOR turns it off everywhere.
        LogFormat::Text => builder
            .with_ansi(colour_logs(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// Whether memesd's log (on stderr) is coloured: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
pub fn colour_logs(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

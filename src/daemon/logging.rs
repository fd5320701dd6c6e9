//! memesd's log: to stderr, or to a file (`--log-file`), filtered by `MEMES_LOG` (an
//! `EnvFilter`, `info` by default), as text for people or as one JSON object per line for log
//! collectors (`--log-format json`).
//!
//! A log file is written by tracing-appender's background thread (a slow disk never holds up
//! a request), and reopened on SIGHUP ([`reopen`]): rotating it is renaming it and sending
//! SIGHUP, as logrotate does.
//!
//! Request ids: every request handled by a front runs in a `request` span carrying its id
//! (HTTP: `X-Request-Id`; the socket: the request's `id`, or its number on the connection),
//! inside a `connection` span on the socket. Those spans are at debug level, so at the default
//! level they are never created and cost nothing; with `MEMES_LOG=debug` every line written
//! while a request is handled names it, and each request gets an access line.

use clap::ValueEnum;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (coloured on a terminal unless NO_COLOR is set).
    #[default]
    Text,
    /// One JSON object per event: timestamp, level, target, fields, and the spans it ran in.
    Json,
}

/// Keeps a log file's writer thread running; dropped last (it flushes what is queued).
#[must_use = "the log file is written only while this lives"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// The log file in use, for [`reopen`].
static LOG_FILE: OnceLock<Arc<ReopeningFile>> = OnceLock::new();

/// Sets up logging for the rest of the process (memesd's `main`): to `file` when given.
pub fn init(format: LogFormat, file: Option<&Path>) -> io::Result<LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard, terminal) = match file {
        Some(path) => {
            let file = Arc::new(ReopeningFile::open(path)?);
            let _ = LOG_FILE.set(file.clone());
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                // Never drop a line: wait instead, once 128k lines are queued.
                .lossy(false)
                .finish(SharedFile(file));
            (BoxMakeWriter::new(writer), Some(guard), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            None,
            std::io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter);
    match format {
        // Colour only for a person at a terminal: a log file or a service manager's journal
        // gets plain text, and NO_COLOR turns it off everywhere.
        LogFormat::Text => builder
            .with_ansi(colour_logs(
                terminal,
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
    Ok(LogGuard { _writer: guard })
}

/// Reopens the log file (after it was renamed for rotation); nothing when logging to stderr.
pub fn reopen() {
    if let Some(file) = LOG_FILE.get()
        && let Err(error) = file.reopen()
    {
        tracing::error!(
            "reopening the log file {}: {error}; still writing to the old one",
            file.path.display()
        );
    }
}

/// A log file that can be reopened by path.
struct ReopeningFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl ReopeningFile {
    fn open(path: &Path) -> io::Result<ReopeningFile> {
        Ok(ReopeningFile {
            path: path.to_path_buf(),
            file: Mutex::new(append(path)?),
        })
    }

    fn reopen(&self) -> io::Result<()> {
        let fresh = append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer tracing-appender's thread writes with.
struct SharedFile(Arc<ReopeningFile>);

impl Write for SharedFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut file = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut file = self.0.file.lock().unwrap_or_else(|p| p.into_inner());
        file.flush()
    }
}

/// Whether memesd's log (on stderr) is coloured: only on a terminal, and never when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
pub fn colour_logs(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

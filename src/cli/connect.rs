//! Finding memesd. With an explicit socket (`--socket` or `MEMES_SOCKET`) the CLI only
//! connects: an absent daemon is exit 3. On the default socket, the first run just works:
//! if nothing answers, the CLI starts `memesd` in the background with the default paths, says
//! so on stderr, and waits until it answers (unless `MEMES_NO_AUTOSTART` says yes: 1, true,
//! yes or on; 0, false, no, off or empty leave it on; anything else is refused).

use super::exit::Exit;
use super::{Failure, output};
use crate::client::{Client, ClientError};
use crate::{lockfile, paths};
use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Disables starting a daemon automatically.
pub const NO_AUTOSTART_ENV: &str = "MEMES_NO_AUTOSTART";
/// How long a freshly started daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects to memesd at `explicit`, or at the default socket (starting a daemon if needed).
pub fn connect(explicit: Option<&Path>) -> Result<Client, Failure> {
    // Checked on every connection, so that a typo is noticed before it matters.
    let no_autostart = autostart_disabled()?;
    if let Some(path) = explicit {
        // Never an autostart here: a daemon started with the defaults would listen elsewhere.
        return Client::connect(path).map_err(|error| {
            let serve = output::shell_command(["memesd", "--socket", &path.to_string_lossy()]);
            unreachable(
                error,
                format!("is memesd running? start one on this socket with `{serve}`"),
            )
        });
    }
    let path = paths::default_socket();
    match Client::connect(&path) {
        Ok(client) => Ok(client),
        Err(error @ ClientError::Unreachable { .. }) if no_autostart => Err(unreachable(
            error,
            format!(
                "is memesd running? start it with `memesd`, or unset {NO_AUTOSTART_ENV} to let memes start it"
            ),
        )),
        Err(ClientError::Unreachable { .. }) => start_daemon(&path),
        Err(error) => Err(error.into()),
    }
}

/// A connection that failed, with a hint that fits how the socket was chosen.
fn unreachable(error: ClientError, hint: String) -> Failure {
    match error {
        error @ ClientError::Unreachable { .. } => {
            Failure::new(Exit::Unreachable, output::with_causes(&error)).with_hint(hint)
        }
        other => other.into(),
    }
}

/// Whether `MEMES_NO_AUTOSTART` turns the autostart off. Unset or empty: no.
fn autostart_disabled() -> Result<bool, Failure> {
    let value = match std::env::var(NO_AUTOSTART_ENV) {
        Err(std::env::VarError::NotPresent) => return Ok(false),
        Err(std::env::VarError::NotUnicode(value)) => value.to_string_lossy().into_owned(),
        Ok(value) if value.is_empty() => return Ok(false),
        Ok(value) => value,
    };
    parse_switch(&value).ok_or_else(|| {
        Failure::new(
            Exit::Invalid,
            format!("{NO_AUTOSTART_ENV}={value:?} is neither yes nor no"),
        )
        .with_hint(format!(
            "set {NO_AUTOSTART_ENV} to 1, true, yes or on to turn the autostart off; 0, false, no or off to leave it on"
        ))
    })
}

/// A yes/no word as environment variables spell them, in any case.
fn parse_switch(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Starts memesd detached from this terminal and waits until it answers on `socket`.
fn start_daemon(socket: &Path) -> Result<Client, Failure> {
    let memesd = sibling_program("memesd");
    // Where the daemon will keep its ledger (it inherits MEMES_DATA_DIR), so its log sits
    // beside it.
    let data_dir = paths::data_dir(None);
    let log_path = data_dir.join("memesd.log");
    let failed = |message: String| {
        Failure::new(Exit::Unreachable, message).with_hint(format!(
            "start it yourself with `memesd` and see its output; log: {}",
            log_path.display()
        ))
    };
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| failed(format!("creating {}: {e}", data_dir.display())))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| failed(format!("opening {}: {e}", log_path.display())))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut child = Command::new(&memesd)
        // Its log goes to the file by itself, reopened on SIGHUP for rotation; stderr too
        // goes there, for anything said before logging starts.
        .arg("--log-file")
        .arg(&log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: a Ctrl-C in this terminal must not stop the daemon.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            failed(format!(
                "no memesd answers on {} and starting {} failed: {e}",
                socket.display(),
                memesd.display()
            ))
        })?;
    // Said once it is true: a daemon that exits before answering was not started.
    let started = |client: Client| {
        eprintln!(
            "memes: started memesd in the background (socket {}, log {})",
            socket.display(),
            log_path.display()
        );
        client
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match Client::connect(socket) {
            Ok(client) => return Ok(started(client)),
            Err(ClientError::Unreachable { .. }) if Instant::now() < deadline => {}
            Err(error) => {
                let error = output::with_causes(&error);
                return Err(failed(format!("memesd did not come up: {error}")));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Another invocation may have started a daemon at the same moment; it wins.
            if let Ok(client) = Client::connect(socket) {
                return Ok(client);
            }
            if let Some(live) = daemon_elsewhere(&data_dir, socket) {
                let live = live.display().to_string();
                return Err(Failure::new(
                    Exit::Unreachable,
                    format!(
                        "no memesd answers on {}, and none can start there: a memesd is already using the data directory {} and serves socket {live}",
                        socket.display(),
                        data_dir.display()
                    ),
                )
                .with_hint(format!(
                    "use --socket {} (or MEMES_SOCKET={})",
                    output::shell_command([live.as_str()]),
                    output::shell_command([live.as_str()])
                )));
            }
            let tail = log_tail(&log_path, log_start).unwrap_or_default();
            return Err(failed(format!(
                "memesd exited ({status}) before answering: {}",
                tail.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The socket of another daemon that holds `data_dir` (as it recorded in the lock file),
/// if it answers there.
fn daemon_elsewhere(data_dir: &Path, socket: &Path) -> Option<PathBuf> {
    let owner = lockfile::read_owner(data_dir)?;
    (owner.socket != socket && Client::connect(&owner.socket).is_ok()).then_some(owner.socket)
}

/// A program installed next to this executable (how cargo and installs lay them out), else
/// the one on `PATH`: memesd, memes-bench.
pub fn sibling_program(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What the daemon logged since `from` (its last lines, for an error message).
fn log_tail(path: &Path, from: u64) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut text = String::new();
    file.take(64 * 1024).read_to_string(&mut text)?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(3)..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_read_the_usual_words_in_any_case() {
        for yes in ["1", "true", "YES", "On"] {
            assert_eq!(parse_switch(yes), Some(true), "{yes}");
        }
        for no in ["0", "False", "no", "OFF"] {
            assert_eq!(parse_switch(no), Some(false), "{no}");
        }
        for neither in ["2", "y", "maybe", " 1"] {
            assert_eq!(parse_switch(neither), None, "{neither}");
        }
    }
}

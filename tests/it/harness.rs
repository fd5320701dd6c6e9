//! Test harness: a real memesd on a socket in a fresh temporary directory, the real `memes`
//! binary pointed at it, and raw NDJSON connections. Readiness is polled (never slept for);
//! on failure the daemon's log is printed.
//!
//! The store comes from `MEMES_TEST_STORE`: `file` (the default: a ledger in the daemon's
//! data directory) or `postgres` (a fresh database in the test process's throwaway
//! PostgreSQL cluster, see `memes::store::pg::testing`). Tests about the file store's own
//! files start it explicitly ([`Daemon::start_file_with`]) and run in both passes.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use memes::store::pg::testing::TestDatabase;

pub const MEMESD: &str = env!("CARGO_BIN_EXE_memesd");
pub const MEMES: &str = env!("CARGO_BIN_EXE_memes");

/// A test that cannot run here (it needs root, or to mount a file system) says why on
/// stderr and returns. Under `MEMES_TEST_NO_SKIP` (set by `.ci/run`) it fails instead: CI
/// runs every test or goes red.
pub fn cannot_run_here(why: &str) {
    if std::env::var_os("MEMES_TEST_NO_SKIP").is_some() {
        panic!("{why}; MEMES_TEST_NO_SKIP is set, so no test may be skipped");
    }
    eprintln!("skipped: {why}");
}

/// A short private directory under /tmp (socket paths must stay under 108 bytes).
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("memes-it-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// A memesd process owned by a test.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    /// The database of a PostgreSQL-backed daemon (dropped after the daemon is stopped).
    pub database: Option<TestDatabase>,
}

/// Which store `Daemon::start` gives a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    File,
    Postgres,
}

/// The store chosen by `MEMES_TEST_STORE` (`file` by default).
pub fn test_store() -> TestStore {
    match std::env::var("MEMES_TEST_STORE").as_deref() {
        Ok("postgres") => TestStore::Postgres,
        Ok("file") | Ok("") | Err(_) => TestStore::File,
        Ok(other) => panic!("MEMES_TEST_STORE={other:?}: expected file or postgres"),
    }
}

impl Daemon {
    /// Starts memesd with its own socket and data directory and waits until it answers.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts memesd with these flags, on the store `MEMES_TEST_STORE` names.
    pub fn start_with(args: &[&str]) -> Daemon {
        match test_store() {
            TestStore::File => Daemon::start_file_with(args),
            TestStore::Postgres => Daemon::start_on(TestDatabase::create(), args),
        }
    }

    /// Starts memesd on a PostgreSQL database (another host on it, say).
    pub fn start_on(database: TestDatabase, args: &[&str]) -> Daemon {
        let mut all = vec!["--store", &database.url];
        all.extend_from_slice(args);
        let mut daemon = Daemon::prepare(&all);
        daemon.database = Some(database);
        daemon.restart();
        daemon
    }

    /// Starts memesd on the file store, whatever `MEMES_TEST_STORE` says: for tests about
    /// the file store's own files (journal, checkpoint, data directory lock, a full disk).
    pub fn start_file_with(args: &[&str]) -> Daemon {
        let mut daemon = Daemon::prepare(args);
        daemon.restart();
        daemon
    }

    /// Starts memesd on the file store with no extra flags.
    pub fn start_file() -> Daemon {
        Daemon::start_file_with(&[])
    }

    /// A daemon's directories and flags, not started yet.
    fn prepare(args: &[&str]) -> Daemon {
        let dir = short_tempdir();
        let socket = dir.path().join("s.sock");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("memesd.log");
        Daemon {
            dir,
            socket,
            data_dir,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
            log,
            database: None,
        }
    }

    /// Starts memesd with the HTTP front too, on a free loopback port (see
    /// [`Daemon::http_url`]).
    pub fn start_http(args: &[&str]) -> Daemon {
        let mut all = vec!["--http", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Daemon::start_with(&all)
    }

    /// The base URL of the HTTP front, as the daemon's latest start logged it
    /// ("… listening on SOCKET and http://127.0.0.1:PORT …").
    pub fn http_url(&self) -> String {
        let log = self.log();
        let at = log
            .rfind(" and http://")
            .unwrap_or_else(|| panic!("memesd logged no HTTP address:\n{log}"));
        let url = &log[at + " and ".len()..];
        let end = url.find(|c: char| c.is_whitespace()).unwrap_or(url.len());
        url[..end].to_string()
    }

    /// The command that starts this daemon (without spawning it).
    pub fn command(&self) -> Command {
        self.command_on(&self.socket, &self.data_dir)
    }

    /// The command for a daemon with these arguments on another socket or data directory.
    pub fn command_on(&self, socket: &Path, data_dir: &Path) -> Command {
        let mut command = Command::new(MEMESD);
        command
            .arg("--socket")
            .arg(socket)
            .arg("--data-dir")
            .arg(data_dir)
            .args(&self.extra_args)
            .env_remove("MEMES_SOCKET")
            .env_remove("MEMES_DATA_DIR")
            .env_remove("MEMES_STORE")
            // A test's daemons log at info, unless told otherwise (MEMES_TEST_LOG=debug to
            // see what a failing test's memesd did; its log is printed on failure).
            .env(
                "MEMES_LOG",
                std::env::var("MEMES_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// (Re)starts the process and waits until it answers `status`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self.command().stderr(log).spawn().expect("spawn memesd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut conn) = self.try_connect()
                && conn.request(r#"{"op":"status"}"#)["ok"] == true
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "memesd exited with {status} before answering:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "memesd never answered:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGKILL, like a crash or a power cut for the process.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends a signal and waits for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> std::process::ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
        self.wait_exit()
    }

    /// Waits for the process to exit (something else stopped it); its exit status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "memesd did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal without waiting.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn connect(&self) -> Conn {
        self.try_connect()
            .unwrap_or_else(|e| panic!("connect {}: {e}\n{}", self.socket.display(), self.log()))
    }

    pub fn try_connect(&self) -> std::io::Result<Conn> {
        Conn::open(&self.socket)
    }

    /// Runs the real `memes` binary against this daemon.
    pub fn memes(&self, args: &[&str]) -> Run {
        run_memes(Some(&self.socket), args, &[])
    }

    /// `memes --json …`, expecting success; the parsed stdout.
    pub fn memes_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let run = self.memes(&all);
        assert_eq!(
            run.code,
            0,
            "memes {args:?} failed: {}\n{}",
            run.stderr,
            self.log()
        );
        run.json()
    }

    /// The balance of `user` read from outside, or None if there is no account.
    pub fn balance(&self, user: &str) -> Option<u64> {
        let reply = self
            .connect()
            .request(&serde_json::json!({"op": "balance", "user": user}).to_string());
        reply["data"]["balance"].as_u64()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- memesd log ---\n{}", self.log());
        }
    }
}

/// The outcome of running `memes`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", self.stdout))
    }
}

pub fn run_memes(socket: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(MEMES);
    if let Some(socket) = socket {
        command.arg("--socket").arg(socket);
    }
    command
        .args(args)
        .env("MEMES_NO_AUTOSTART", "1")
        .env_remove("MEMES_SOCKET")
        .env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run memes");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A raw NDJSON connection.
pub struct Conn {
    reader: BufReader<UnixStream>,
}

impl Conn {
    pub fn open(path: &Path) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    pub fn stream(&self) -> &UnixStream {
        self.reader.get_ref()
    }

    /// Sends raw bytes; false if the daemon is gone.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.reader.get_mut().write_all(bytes).is_ok()
    }

    /// Reads one reply line; None once the connection is closed (or reset by a crash).
    pub fn read_reply(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}")),
            ),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("no reply within the read timeout")
            }
            Err(_) => None,
        }
    }

    /// Reads one reply line as the daemon wrote it (for byte-for-byte comparisons).
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a reply line");
        line
    }

    /// Sends one request line and reads its reply.
    pub fn request(&mut self, line: &str) -> Value {
        self.send(format!("{line}\n").as_bytes());
        self.read_reply().expect("a reply")
    }
}

/// Asserts a reply is an error with `code`.
#[track_caller]
pub fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["ok"], false, "expected an error, got {reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
}

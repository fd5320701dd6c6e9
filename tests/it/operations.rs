//! memesd as an operator runs it: a configuration file, the environment, systemd's
//! readiness notifications and socket activation, JSON logs with request ids, and commands
//! that stay quiet on a pipe.

use crate::harness::{Conn, Daemon, MEMESD, short_tempdir};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `memesd ARGS` with no MEMES_* variables from the test's own environment.
fn memesd(args: &[&str]) -> Command {
    let mut command = Command::new(MEMESD);
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MEMES_") {
            command.env_remove(name);
        }
    }
    command
}

/// Waits for `child` to exit (at most 30 s).
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "memesd did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait(child)
}

/// Polls `status` on `socket` until it answers.
fn wait_for_socket(socket: &Path, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut conn) = Conn::open(socket)
            && conn.request(r#"{"op":"status"}"#)["ok"] == true
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "memesd exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "memesd never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A request over HTTP/1.1 on a fresh connection: the whole response (head and body).
fn http(port: u16, head: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "{head}host: localhost\r\nconnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[test]
fn a_configuration_file_sets_what_flags_and_the_environment_do_not() {
    let dir = short_tempdir();
    let config = dir.path().join("memesd.toml");
    std::fs::write(
        &config,
        "welcome-tokens = 7\nmeme-cost = 2\nidle-timeout = \"5m\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let daemon = Daemon::start_with(&["--config", config, "--meme-cost", "3"]);
    let got = daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
    assert_eq!(
        (got["charged"].as_u64(), got["balance"].as_u64()),
        (Some(3), Some(4))
    );

    // Where each setting came from: flag > environment > file > default.
    let output = memesd(&["--config", config, "--meme-cost", "3", "--print-config"])
        .env("MEMES_GENERATE_COST", "9")
        .env("MEMES_WELCOME_TOKENS", "8")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8(output.stdout).unwrap();
    let line = |key: &str| {
        report
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{report}"))
            .to_string()
    };
    assert!(line("meme-cost").ends_with("# flag"), "{report}");
    assert!(
        line("welcome-tokens").starts_with("welcome-tokens = 8 "),
        "{report}"
    );
    assert!(
        line("welcome-tokens").ends_with("# env MEMES_WELCOME_TOKENS"),
        "{report}"
    );
    assert!(
        line("generate-cost").ends_with("# env MEMES_GENERATE_COST"),
        "{report}"
    );
    assert!(
        line("idle-timeout").ends_with(&format!("# file {config}")),
        "{report}"
    );
    assert!(line("max-connections").ends_with("# default"), "{report}");

    // MEMES_CONFIG names the file too; an unknown key stops memesd naming key and file.
    std::fs::write(dir.path().join("bad.toml"), "welcome-token = 7\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let output = memesd(&["--print-config"])
        .env("MEMES_CONFIG", &bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key `welcome-token`"), "{stderr}");
    assert!(stderr.contains("did you mean `welcome-tokens`"), "{stderr}");
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
}

#[test]
fn memesd_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    let dir = short_tempdir();
    let notify = dir.path().join("notify");
    let manager = UnixDatagram::bind(&notify).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let socket = dir.path().join("s.sock");
    let log = dir.path().join("memesd.log");
    let mut child = memesd(&[
        "--socket",
        socket.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ])
    .env("NOTIFY_SOCKET", &notify)
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let receive = || {
        let mut buffer = [0u8; 4096];
        let n = manager.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let ready = receive();
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=listening on"), "{ready}");
    // Ready means serving: the socket answers right away.
    assert_eq!(
        Conn::open(&socket).unwrap().request(r#"{"op":"status"}"#)["ok"],
        true
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let reloading = receive();
    assert!(
        reloading.lines().any(|line| line == "RELOADING=1"),
        "{reloading}"
    );
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(receive().lines().any(|line| line == "READY=1"));
    let status = terminate(&mut child);
    assert!(status.success(), "{status}");
    let stopping = receive();
    assert!(
        stopping.lines().any(|line| line == "STOPPING=1"),
        "{stopping}"
    );
}

/// Makes `fd` descriptor `target` in the child (without close-on-exec), as systemd passes
/// sockets. Only async-signal-safe calls: this runs between fork and exec.
fn pass_as(fd: RawFd, target: RawFd) -> std::io::Result<()> {
    use nix::libc::{F_GETFD, F_SETFD, FD_CLOEXEC, dup2, fcntl};
    // SAFETY: dup2 and fcntl on descriptors the parent owns, in the forked child.
    let failed = unsafe {
        if fd == target {
            let flags = fcntl(fd, F_GETFD);
            flags < 0 || fcntl(fd, F_SETFD, flags & !FD_CLOEXEC) < 0
        } else {
            dup2(fd, target) < 0
        }
    };
    match failed {
        true => Err(std::io::Error::last_os_error()),
        false => Ok(()),
    }
}

#[test]
fn memesd_serves_the_sockets_systemd_passes_and_leaves_them_to_systemd() {
    let dir = short_tempdir();
    let socket = dir.path().join("systemd.sock");
    let unix = UnixListener::bind(&socket).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    // Well above 4, so that dup2 onto 3 and 4 never clobbers the other one.
    let above = |fd: &dyn AsRawFd, at: RawFd| {
        let raw = nix::fcntl::fcntl(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) },
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(at),
        )
        .unwrap();
        // SAFETY: a descriptor just made, owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(raw) }
    };
    let (unix_fd, tcp_fd) = (above(&unix, 20), above(&tcp, 21));
    let (unix_raw, tcp_raw) = (unix_fd.as_raw_fd(), tcp_fd.as_raw_fd());
    let log = dir.path().join("memesd.log");
    // LISTEN_PID must be memesd's own pid, known only in the child: `sh` sets it to its own
    // ($$) and execs memesd, which keeps the pid (as systemd-socket-activate does). Setting
    // it from pre_exec instead would not be sound: the environment is not async-signal-safe.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(MEMESD)
        .args([
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--socket",
            dir.path().join("unused.sock").to_str().unwrap(),
        ])
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "unix:http")
        .env("MEMES_LOG", "info")
        .env_remove("MEMES_SOCKET")
        .env_remove("MEMES_HTTP")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: pass_as makes only async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            pass_as(unix_raw, 3)?;
            pass_as(tcp_raw, 4)
        });
    }
    let mut child = command.spawn().unwrap();
    drop((unix, tcp, unix_fd, tcp_fd));
    wait_for_socket(&socket, &mut child, &log);

    let mut conn = Conn::open(&socket).unwrap();
    let reply = conn.request(r#"{"op":"get","user":"u1","query":"cats"}"#);
    assert_eq!(reply["data"]["balance"], 149, "{reply}");
    let response = http(
        port,
        "GET /v1/users/u1/balance HTTP/1.1\r\nauthorization: Bearer u1\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"balance\":149"), "{response}");
    assert!(
        !dir.path().join("unused.sock").exists(),
        "--socket is not bound"
    );
    assert!(
        !dir.path().join("systemd.sock.lock").exists(),
        "no name lock on systemd's socket"
    );
    drop(conn);

    let status = terminate(&mut child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        socket.exists(),
        "the socket file is systemd's to remove\n{log}"
    );
    assert!(
        log.contains("serving the Unix socket passed by systemd"),
        "{log}"
    );
    assert!(log.contains("not binding --socket"), "{log}");
}

#[test]
fn json_logs_name_each_request_on_both_fronts() {
    let dir = short_tempdir();
    let socket = dir.path().join("s.sock");
    let log = dir.path().join("memesd.log");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = memesd(&[
        "--socket",
        socket.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--http",
        &format!("127.0.0.1:{port}"),
        "--log-format",
        "json",
    ])
    .env("MEMES_LOG", "debug")
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    wait_for_socket(&socket, &mut child, &log);

    let response = http(
        port,
        "GET /v1/status HTTP/1.1\r\nx-request-id: probe-http-1\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(header(&response, "x-request-id"), Some("probe-http-1"));
    // Without one (or with one not fit for a log line), memesd makes one up and says which.
    let response = http(
        port,
        "GET /v1/status HTTP/1.1\r\nx-request-id: two words\r\n",
    );
    let made_up = header(&response, "x-request-id").unwrap().to_string();
    assert!(!made_up.is_empty() && made_up != "two words", "{response}");
    let reply = Conn::open(&socket)
        .unwrap()
        .request(r#"{"id":"probe-socket-1","op":"balance","user":"nobody"}"#);
    assert_eq!(reply["error"]["code"], "not_found");
    let status = terminate(&mut child);
    assert!(status.success());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let naming = |id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|line| {
                line["fields"]["request_id"] == id
                    || line["span"]["request_id"] == id
                    || line["spans"]
                        .as_array()
                        .is_some_and(|spans| spans.iter().any(|span| span["request_id"] == id))
            })
            .collect()
    };
    let http_lines = naming("probe-http-1");
    assert!(
        http_lines
            .iter()
            .any(|line| line["fields"]["status"] == 200),
        "no access line for the HTTP request:\n{text}"
    );
    assert!(
        !naming(&made_up).is_empty(),
        "{made_up} not logged:\n{text}"
    );
    let socket_lines = naming("probe-socket-1");
    let access = socket_lines
        .iter()
        .find(|line| line["fields"]["message"] == "request")
        .unwrap_or_else(|| panic!("no access line for the socket request:\n{text}"));
    assert_eq!(access["fields"]["op"], "balance");
    assert_eq!(access["fields"]["code"], "not_found");
    assert!(access["span"]["conn"].is_u64(), "{access}");
}

#[test]
fn long_commands_print_no_progress_on_a_pipe() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
    for args in [
        &["audit"][..],
        // --force: the ledger holds u1, and bench writes beside it only when told.
        &[
            "bench",
            "--force",
            "--requests",
            "300",
            "--conns",
            "2",
            "--users",
            "5",
        ],
        &[
            "bench",
            "--force",
            "--duration",
            "300ms",
            "--conns",
            "1",
            "--users",
            "5000",
        ],
    ] {
        let run = daemon.memes(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        // No bar, spinner, carriage return or terminal escape: nothing at all, here.
        assert_eq!(run.stderr, "", "{args:?}");
        assert!(
            !run.stdout.contains('\r') && !run.stdout.contains('\x1b'),
            "{args:?}"
        );
    }
}

//! Hostile and unlucky: other local users, floods, garbage, slow clients and a full disk.
//! After each attack the daemon still answers and no balance changed.

use crate::harness::{Conn, Daemon, assert_error, short_tempdir};
use serde_json::json;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The daemon answers and `u`'s balance is what it was.
#[track_caller]
fn still_serving(daemon: &Daemon, balance: u64) {
    assert_eq!(
        daemon.connect().request(r#"{"op":"status"}"#)["ok"],
        true,
        "{}",
        daemon.log()
    );
    assert_eq!(daemon.balance("u"), Some(balance));
}

fn started_with_balance(args: &[&str]) -> Daemon {
    let daemon = Daemon::start_with(args);
    daemon.memes_json(&["topup", "--user", "u", "--amount", "10"]);
    daemon
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `memes` run as another local user (uid/gid 65534, "nobody").
fn memes_as_nobody(socket: &std::path::Path, args: &[&str]) -> crate::harness::Run {
    let output = Command::new(crate::harness::MEMES)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env("MEMES_NO_AUTOSTART", "1")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    crate::harness::Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn another_local_user_gets_memes_through_a_group_socket_but_cannot_top_up() {
    if !is_root() {
        crate::harness::cannot_run_here(
            "acting as a second local user needs root (CI runs as root)",
        );
        return;
    }
    let dir = short_tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let socket = dir.path().join("run/memesd.sock");
    let mut daemon = Daemon::start_with(&["--socket-mode", "660", "--socket-group", "65534"]);
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon.socket = socket.clone();
    daemon.restart();
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    assert_eq!(
        std::fs::metadata(socket.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o710
    );

    let got = memes_as_nobody(&socket, &["--json", "get", "--user", "guest"]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    for args in [
        vec!["topup", "--user", "guest", "--amount", "1000"],
        vec!["topup", "--user", "guest", "--amount", "-1"],
        vec!["entitle", "--user", "guest", "--tier", "premium"],
        vec!["audit"],
        vec!["reload"],
    ] {
        let refused = memes_as_nobody(&socket, &args);
        assert_eq!(refused.code, 6, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("admin"), "{}", refused.stderr);
    }
    assert_eq!(daemon.balance("guest"), Some(149));
    assert_eq!(
        memes_as_nobody(&socket, &["--json", "balance", "--user", "guest"]).code,
        0
    );
    // The data stays private whatever the socket's mode.
    assert_eq!(
        std::fs::metadata(&daemon.data_dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Naming the user with --admin-uid lets them top up.
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon
        .extra_args
        .extend(["--admin-uid".to_string(), "65534".to_string()]);
    daemon.restart();
    assert_eq!(
        memes_as_nobody(&socket, &["topup", "--user", "guest", "--amount", "1"]).code,
        0
    );
    assert_eq!(daemon.balance("guest"), Some(150));
}

#[test]
fn the_default_socket_is_closed_to_other_users() {
    if !is_root() {
        crate::harness::cannot_run_here(
            "acting as a second local user needs root (CI runs as root)",
        );
        return;
    }
    let daemon = started_with_balance(&[]);
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let refused = memes_as_nobody(&daemon.socket, &["get", "--user", "u"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    still_serving(&daemon, 160);
}

#[test]
fn beyond_the_connection_cap_a_client_gets_busy_and_the_others_are_served() {
    let daemon = started_with_balance(&["--max-connections", "5"]);
    // The set-up's own short-lived clients give their slots back once the daemon has seen
    // them hang up, which may be a moment after they exit: until then a connection may be
    // told `busy`, so each held one is retried until it is served.
    let deadline = Instant::now() + Duration::from_secs(5);
    let held_connection = || loop {
        let mut conn = daemon.connect();
        let reply = conn.request(r#"{"op":"status"}"#);
        if reply["ok"] == true {
            return conn;
        }
        assert_error(&reply, "busy");
        assert!(
            Instant::now() < deadline,
            "set-up connections never gave their slots back"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut held: Vec<Conn> = (0..5).map(|_| held_connection()).collect();
    let mut extra = daemon.connect();
    assert_error(&extra.read_reply().expect("a busy line"), "busy");
    assert!(extra.read_reply().is_none(), "then closed");
    assert_eq!(
        held[0].request(r#"{"op":"balance","user":"u"}"#)["data"]["balance"],
        160
    );
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = daemon.connect();
        let reply = again.request(r#"{"op":"status"}"#);
        if reply["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is reused: {reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_that_stalls_mid_line_is_disconnected() {
    let daemon = started_with_balance(&["--idle-timeout", "0.5"]);
    let mut slow = daemon.connect();
    slow.send(br#"{"op":"topup","user":"u","#);
    let started = Instant::now();
    assert!(slow.read_reply().is_none(), "closed without a reply");
    assert!(started.elapsed() < Duration::from_secs(10));
    still_serving(&daemon, 160);
}

#[test]
fn a_client_that_never_reads_costs_bounded_memory_and_blocks_no_one() {
    let daemon = started_with_balance(&["--idle-timeout", "2"]);
    let rss = |pid: i32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let before = rss(daemon.pid());
    let socket = daemon.socket.clone();
    let flooder = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let line = format!("{}\n", json!({"op": "balance", "user": "u"}));
        let chunk = line.repeat(1000);
        let mut sent = 0usize;
        // Send up to 200 MB of requests and never read a reply.
        while sent < 200 << 20 && stream.write_all(chunk.as_bytes()).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(500));
    let quick = Instant::now();
    still_serving(&daemon, 160);
    assert!(
        quick.elapsed() < Duration::from_secs(2),
        "others are not blocked"
    );
    let sent = flooder.join().unwrap();
    assert!(
        sent < 200 << 20,
        "the daemon stopped taking requests it could not answer"
    );
    let after = rss(daemon.pid());
    assert!(
        after < before + (64 << 20),
        "RSS grew from {before} to {after}"
    );
    still_serving(&daemon, 160);
}

#[test]
fn a_per_user_rate_limit_refuses_without_charging() {
    let daemon = started_with_balance(&["--rate-limit", "5/s"]);
    let mut conn = daemon.connect();
    let mut limited = 0;
    let mut delivered = 0;
    for _ in 0..20 {
        let reply = conn.request(r#"{"op":"get","user":"u"}"#);
        if reply["ok"] == true {
            delivered += 1;
        } else {
            assert_error(&reply, "rate_limited");
            limited += 1;
        }
    }
    assert!(
        limited > 0 && delivered >= 5,
        "{delivered} delivered, {limited} limited"
    );
    std::thread::sleep(Duration::from_millis(1100)); // reads are rate limited too
    assert_eq!(daemon.balance("u"), Some(160 - delivered));
    assert_eq!(
        daemon.memes(&["get", "--user", "v"]).code,
        0,
        "other users have their own bucket"
    );
    let mut over = 0;
    for _ in 0..10 {
        over += i32::from(daemon.memes(&["get", "--user", "w"]).code == 8);
    }
    assert!(over > 0, "the CLI reports rate_limited as exit 8");
}

#[test]
fn garbage_of_every_kind_gets_errors_and_changes_nothing() {
    let daemon = started_with_balance(&[]);
    let mut conn = daemon.connect();
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\xff\xfe\xfd{\"op\":\"topup\"}".to_vec(), "bad_request"),
        (
            br#"{"op":"topup","user":"u\xc3\x28","amount":5}"#.to_vec(),
            "bad_request",
        ),
        (nested.into_bytes(), "bad_request"),
        (
            format!(
                "{{\"id\":{}1{},\"op\":\"status\"}}",
                "[".repeat(20_000),
                "]".repeat(20_000)
            )
            .into_bytes(),
            "bad_request",
        ),
        (
            format!(
                "{{\"op\":\"get\",\"user\":\"u\",\"q\":{}}}",
                "[".repeat(5000)
            )
            .into_bytes(),
            "bad_request",
        ),
        (
            br#"{"op":"topup","user":"u","amount":1e999}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"topup","user":"u","amount":99999999999999999999999999}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"topup","user":"u","amount":-0}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"topup","user":"u","amount":"NaN"}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"get","user":"u","lat":NaN,"long":0}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"get","user":"u","lat":"Infinity","long":0}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"get","user":"u","lat":1e400,"long":0}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"get","user":"u\u0000","lat":0,"long":0}"#.to_vec(),
            "invalid_argument",
        ),
        (
            br#"{"op":"get","user":"u","count":4294967296}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"topup","user":"u","amount":5,"amount":6}"#.to_vec(),
            "bad_request",
        ),
        (
            br#"{"op":"get","user":"u","query":"zzqqyyxx"}"#.to_vec(),
            "not_found",
        ),
        (b"{}".to_vec(), "bad_request"),
        (b"null".to_vec(), "bad_request"),
        (b"\"just a string\"".to_vec(), "bad_request"),
    ];
    for (line, code) in cases {
        let mut bytes = line.clone();
        bytes.push(b'\n');
        assert!(conn.send(&bytes));
        let reply = conn.read_reply().expect("a reply");
        assert_error(&reply, code);
    }
    // Negative zero is a fine latitude; the get is delivered and charged.
    let zero = conn.request(r#"{"op":"get","user":"z","lat":-0.0,"long":-0.0}"#);
    assert_eq!(zero["ok"], true, "{zero}");
    still_serving(&daemon, 160);
}

#[test]
fn a_ten_megabyte_line_is_refused_and_the_daemon_keeps_serving() {
    let daemon = started_with_balance(&[]);
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    let junk = vec![b'a'; 10 << 20];
    let _ = stream.write_all(&junk); // the daemon closes early; a broken pipe is expected
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.contains("line_too_long"), "{reply:?}");
    still_serving(&daemon, 160);
}

#[test]
fn a_request_sent_byte_by_byte_is_answered() {
    let daemon = started_with_balance(&[]);
    let mut conn = daemon.connect();
    for byte in b"{\"op\":\"topup\",\"user\":\"u\",\"amount\":2}\n" {
        assert!(conn.send(&[*byte]));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(conn.read_reply().unwrap()["data"]["new_balance"], 162);
}

#[test]
fn ten_thousand_concurrent_connections() {
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if soft < 11_000 && hard >= 11_000 {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
            .unwrap();
    }
    let daemon = started_with_balance(&["--max-connections", "20000"]);
    let mut conns: Vec<UnixStream> = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        conns.push(UnixStream::connect(&daemon.socket).expect("connect"));
    }
    // Every one of them is served.
    for (i, stream) in conns.iter_mut().enumerate().step_by(97) {
        stream
            .write_all(format!("{{\"id\":{i},\"op\":\"balance\",\"user\":\"u\"}}\n").as_bytes())
            .unwrap();
    }
    for (i, stream) in conns.iter_mut().enumerate().step_by(97) {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["id"], i);
        assert_eq!(reply["data"]["balance"], 160);
    }
    drop(conns);
    still_serving(&daemon, 160);
}

/// Mounts a tiny tmpfs, or says why it cannot.
fn tiny_filesystem(dir: &std::path::Path, size: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).unwrap();
    let output = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    match output.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
    }
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_acknowledges_nothing_and_recovers_by_itself() {
    let dir = short_tempdir();
    let mount = dir.path().join("tiny");
    if let Err(why) = tiny_filesystem(&mount, "4m") {
        crate::harness::cannot_run_here(&format!(
            "mounting a small tmpfs is not permitted here ({why})"
        ));
        return;
    }
    let _unmount = Unmount(mount.clone());
    // The file store's journal on a full disk.
    let mut daemon = Daemon::start_file();
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon.data_dir = mount.join("data");
    daemon.restart();
    daemon.memes_json(&["topup", "--user", "u", "--amount", "10"]);
    // Fill the file system, leaving a little room.
    let filler = mount.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    drop(file);
    let _ = std::fs::remove_file(mount.join("slack"));
    let mut conn = daemon.connect();
    let reason = "r".repeat(450);
    let mut acknowledged = 160u64;
    let mut refused = 0;
    // The journal's zeroed space (up to 1 MiB, set aside before the filler) is used up first.
    for _ in 0..20_000 {
        if refused == 20 {
            break;
        }
        let reply = conn.request(
            &json!({"op": "topup", "user": "u", "amount": 1, "reason": reason}).to_string(),
        );
        if reply["ok"] == true {
            acknowledged = reply["data"]["new_balance"].as_u64().unwrap();
        } else {
            assert_error(&reply, "unavailable");
            refused += 1;
        }
    }
    assert!(refused > 0, "the disk never filled up");
    assert_eq!(
        daemon.balance("u"),
        Some(acknowledged),
        "reads work and show only durable changes"
    );
    let status = conn.request(r#"{"op":"status"}"#);
    assert_eq!(status["data"]["writable"], false, "{status}");
    let cli = daemon.memes(&["topup", "--user", "u", "--amount", "1"]);
    assert_eq!(cli.code, 8, "{}", cli.stderr);
    // Space comes back: the daemon resumes on its own.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = conn.request(r#"{"op":"topup","user":"u","amount":1}"#);
        if reply["ok"] == true {
            assert_eq!(reply["data"]["new_balance"], acknowledged + 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {reply}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(daemon.log().contains("writable again"), "{}", daemon.log());
    assert_eq!(daemon.memes_json(&["audit"])["ok"], true);
    daemon.kill9();
    daemon.restart();
    assert_eq!(daemon.balance("u"), Some(acknowledged + 1));
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_data_directory_is_served_by_its_owner_only() {
    if !is_root() {
        crate::harness::cannot_run_here(
            "acting as a second local user needs root (CI runs as root)",
        );
        return;
    }
    let dir = short_tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root on a directory that nobody owns: refused, naming the owner; nothing written.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let memesd = |data_dir: &std::path::Path, as_nobody: bool| {
        let mut command = Command::new(crate::harness::MEMESD);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .env_remove("MEMES_STORE");
        if as_nobody {
            command.uid(65534).gid(65534);
        }
        command.output().unwrap()
    };
    let refused = memesd(&theirs, false);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("belongs to nobody (uid 65534)") && why.contains("root"),
        "{why}"
    );
    assert_eq!(
        std::fs::read_dir(&theirs).unwrap().count(),
        0,
        "nothing written"
    );
    // Nobody on root's directory: a word about ownership, not a bare OS error.
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = memesd(&mine, true);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("belongs to root (uid 0)") && why.contains("nobody"),
        "{why}"
    );
}

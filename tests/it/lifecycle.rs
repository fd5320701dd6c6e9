//! Starting, stopping, crashing and restarting memesd.

use crate::harness::{Daemon, run_memes, short_tempdir};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn sigterm_exits_zero_removes_the_socket_and_keeps_balances() {
    let mut daemon = Daemon::start();
    daemon.memes_json(&["topup", "--user", "u1", "--amount", "50"]);
    daemon.memes_json(&["get", "--user", "u1"]);
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(!daemon.socket.exists(), "the socket file is removed");
    daemon.restart();
    assert_eq!(daemon.balance("u1"), Some(199));
    let status = daemon.signal_and_wait(Signal::SIGINT);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn requests_in_flight_at_sigterm_are_answered() {
    let mut daemon = Daemon::start();
    let mut conn = daemon.connect();
    let mut batch = String::new();
    for i in 0..300 {
        batch.push_str(&format!(
            "{{\"id\":{i},\"op\":\"topup\",\"user\":\"u\",\"amount\":1}}\n"
        ));
    }
    conn.send(batch.as_bytes());
    let first = conn.read_reply().unwrap();
    assert_eq!(first["ok"], true);
    daemon.signal(Signal::SIGTERM);
    let mut answered = 1;
    while let Some(reply) = conn.read_reply() {
        assert_eq!(reply["ok"], true, "{reply}");
        answered += 1;
    }
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon.restart();
    assert_eq!(
        daemon.balance("u"),
        Some(150 + answered),
        "every answered top-up is kept"
    );
}

#[test]
fn socket_and_data_directory_are_private() {
    // The file store's own files.
    let daemon = Daemon::start_file();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.socket), 0o600);
    assert_eq!(mode(&daemon.data_dir), 0o700);
    daemon.memes_json(&["get", "--user", "u"]);
    assert_eq!(mode(&daemon.data_dir.join("journal.ndjson")), 0o600);
    // A socket in a directory memesd creates gets a 0700 parent.
    let mut nested = Daemon::start_file();
    let status = nested.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    nested.socket = nested.dir.path().join("run/deeper/s.sock");
    nested.restart();
    assert_eq!(mode(nested.socket.parent().unwrap()), 0o700);
}

#[test]
fn a_second_daemon_is_refused_and_the_first_keeps_serving() {
    // The file store's data directory lock (PostgreSQL-backed hosts share on purpose).
    let daemon = Daemon::start_file();
    // Same data directory, another socket.
    let other_socket = daemon.dir.path().join("other.sock");
    let output = daemon
        .command_on(&other_socket, &daemon.data_dir)
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already using the data directory"),
        "{stderr}"
    );
    // Naming the one that does, as its lock file records it.
    assert!(
        stderr.contains(&format!(
            "(pid {}, serving {})",
            daemon.pid(),
            daemon.socket.display()
        )),
        "{stderr}"
    );
    // Same socket, another data directory.
    let output = daemon
        .command_on(&daemon.socket, &daemon.dir.path().join("other-data"))
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already listening"), "{stderr}");
    assert!(daemon.socket.exists());
    assert_eq!(daemon.connect().request(r#"{"op":"status"}"#)["ok"], true);
}

#[test]
fn a_failed_start_leaves_nothing_it_created() {
    let daemon = Daemon::start();
    // A busy socket: the fresh data directory it would have used is not left behind.
    let fresh = daemon.dir.path().join("fresh-data");
    let output = daemon.command_on(&daemon.socket, &fresh).output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(
        !fresh.exists(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A busy HTTP port: neither the data directory nor the socket it had bound stays.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = port.local_addr().unwrap().to_string();
    let socket = daemon.dir.path().join("other.sock");
    let output = daemon
        .command_on(&socket, &fresh)
        .args(["--http", &address])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&address), "{stderr}");
    assert!(!fresh.exists(), "{stderr}");
    assert!(!socket.exists(), "{stderr}");
    // An existing data directory is the operator's: a failed start keeps it.
    let output = daemon
        .command_on(&daemon.socket, &daemon.data_dir)
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(daemon.data_dir.exists());
    assert_eq!(daemon.connect().request(r#"{"op":"status"}"#)["ok"], true);
}

#[test]
fn a_postgresql_backed_start_records_no_owner_and_warns_of_nothing() {
    let daemon = Daemon::start_on(crate::harness::TestDatabase::create(), &[]);
    daemon.memes_json(&["status"]);
    let log = daemon.log();
    assert!(!log.contains("WARN"), "{log}");
    assert!(!daemon.data_dir.join("memesd.lock").exists());
}

#[test]
fn memes_stop_stops_the_daemon_on_its_socket_and_no_other() {
    let mut daemon = Daemon::start();
    let other = Daemon::start();
    daemon.memes_json(&["topup", "--user", "u", "--amount", "5"]);
    let run = daemon.memes(&["stop"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("pid {}", daemon.pid())),
        "{}",
        run.stdout
    );
    // A clean stop: exit 0, socket removed, balances kept; the other daemon still serves.
    assert_eq!(daemon.wait_exit().code(), Some(0));
    assert!(!daemon.socket.exists());
    assert_eq!(other.connect().request(r#"{"op":"status"}"#)["ok"], true);
    // Nothing to stop: the unreachable exit code, and no daemon started to be stopped.
    let run = daemon.memes(&["stop"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(!daemon.socket.exists());
    daemon.restart();
    assert_eq!(daemon.balance("u"), Some(155));
}

#[test]
fn a_stale_socket_left_by_a_crash_is_reclaimed() {
    let mut daemon = Daemon::start();
    daemon.memes_json(&["topup", "--user", "u", "--amount", "5"]);
    daemon.kill9();
    assert!(
        daemon.socket.exists(),
        "a crash leaves the socket file behind"
    );
    daemon.restart();
    assert_eq!(daemon.balance("u"), Some(155));
}

#[test]
fn without_a_daemon_the_cli_exits_3() {
    let dir = short_tempdir();
    let run = run_memes(
        Some(&dir.path().join("none.sock")),
        &["balance", "--user", "u"],
        &[],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("memes: error:") && run.stderr.contains("hint"),
        "{}",
        run.stderr
    );
    // MEMES_SOCKET counts as explicit too: no autostart.
    let run = run_memes(
        None,
        &["status"],
        &[("MEMES_SOCKET", dir.path().join("x.sock").to_str().unwrap())],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[test]
fn the_unreachable_hint_names_the_command_that_serves_that_socket() {
    let dir = short_tempdir();
    let socket = dir.path().join("no pe/x.sock");
    let run = run_memes(Some(&socket), &["status"], &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let serve = format!("`memesd --socket '{}'`", socket.display());
    assert!(run.stderr.contains(&serve), "{}", run.stderr);
    // The autostart never applies to an explicit socket, so its switch is not the cause.
    assert!(!run.stderr.contains("MEMES_NO_AUTOSTART"), "{}", run.stderr);
    // On the default socket with the autostart off, the switch is what stopped it.
    let env = [
        ("XDG_RUNTIME_DIR", dir.path().to_str().unwrap()),
        ("MEMES_NO_AUTOSTART", "1"),
    ];
    let run = run_memes(None, &["status"], &env);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("`memesd`") && run.stderr.contains("unset MEMES_NO_AUTOSTART"),
        "{}",
        run.stderr
    );
}

#[test]
fn kill_9_under_load_keeps_every_acknowledged_change() {
    let mut daemon = Daemon::start();
    let acknowledged: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (acknowledged, stop, socket) =
                (acknowledged.clone(), stop.clone(), daemon.socket.clone());
            std::thread::spawn(move || {
                let user = format!("crash-{c}");
                let Ok(mut conn) = crate::harness::Conn::open(&socket) else {
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    if !conn.send(
                        format!("{}\n", json!({"op": "topup", "user": user, "amount": 1}))
                            .as_bytes(),
                    ) {
                        return;
                    }
                    match conn.read_reply() {
                        Some(reply) if reply["ok"] == true => {
                            let balance = reply["data"]["new_balance"].as_u64().unwrap();
                            acknowledged.lock().unwrap().insert(user.clone(), balance);
                        }
                        _ => return, // the daemon died mid-request: not acknowledged
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    daemon.kill9();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    daemon.restart();
    let acknowledged = acknowledged.lock().unwrap();
    assert!(acknowledged.len() >= 8, "the load ran: {acknowledged:?}");
    for (user, balance) in acknowledged.iter() {
        let now = daemon.balance(user).unwrap();
        // Every acknowledged top-up is there; at most the one in flight may also be.
        assert!(
            now == *balance || now == balance + 1,
            "{user}: acknowledged {balance}, found {now}"
        );
    }
}

#[test]
fn an_autostart_refused_by_the_data_directory_lock_names_the_socket_that_is_live() {
    // The data directory's lock is the file store's.
    let daemon = Daemon::start_file();
    // Another runtime directory: another default socket, but the same data directory.
    let elsewhere = short_tempdir();
    let env = [
        ("HOME", elsewhere.path().to_str().unwrap()),
        ("XDG_RUNTIME_DIR", elsewhere.path().to_str().unwrap()),
        ("MEMES_DATA_DIR", daemon.data_dir.to_str().unwrap()),
        ("MEMES_NO_AUTOSTART", "0"),
    ];
    let run = run_memes(None, &["status"], &env);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let live = daemon.socket.display().to_string();
    assert!(
        run.stderr.contains(&format!(
            "already using the data directory {}",
            daemon.data_dir.display()
        )) && run.stderr.contains(&format!("serves socket {live}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("--socket {live}"))
            && run.stderr.contains(&format!("MEMES_SOCKET={live}")),
        "{}",
        run.stderr
    );
    // One true story: it did not say it started a daemon that could not start.
    assert!(!run.stderr.contains("started memesd"), "{}", run.stderr);
    // The advice works.
    let run = run_memes(None, &["status"], &[("MEMES_SOCKET", &live)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    let mut daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u"]);
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    let log = daemon.log();
    assert!(log.contains("memesd stopped cleanly"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "escape codes in the log file: {log:?}"
    );
}

#[test]
fn a_read_only_data_directory_is_refused_naming_the_cause_once() {
    let dir = short_tempdir();
    let mount = match crate::mounts::tmpfs(&dir.path().join("ro"), "ro,size=1m") {
        Ok(mount) => mount,
        Err(why) => {
            crate::harness::cannot_run_here(&format!(
                "mounting a read-only tmpfs is not permitted here ({why})"
            ));
            return;
        }
    };
    for data_dir in [mount.path().to_path_buf(), mount.path().join("data")] {
        let output = std::process::Command::new(crate::harness::MEMESD)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("MEMES_SOCKET")
            .env_remove("MEMES_DATA_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.matches("Read-only file system").count(),
            1,
            "the cause once: {stderr}"
        );
        assert!(stderr.contains(&data_dir.display().to_string()), "{stderr}");
    }
}

#[test]
fn memesd_refuses_a_flag_out_of_range_by_name_before_starting() {
    let dir = short_tempdir();
    for (flag, value) in [
        ("--welcome-tokens", "99999999999999999"),
        ("--idle-timeout", "nan"),
        ("--max-connections", "0"),
        ("--store-pool", "0"),
        ("--store", "mysql://x"),
    ] {
        let mut child = std::process::Command::new(crate::harness::MEMESD)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args([flag, value])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A daemon that accepted the value would serve forever: give it a moment, then stop it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(!dir.path().join("data").exists(), "nothing was started");
    }
    // Plain seconds and units both still work.
    let daemon = Daemon::start_with(&["--idle-timeout", "300", "--generator-timeout", "30s"]);
    assert_eq!(daemon.connect().request(r#"{"op":"status"}"#)["ok"], true);
}

#[test]
fn a_log_file_is_reopened_on_sighup_for_rotation() {
    let dir = crate::harness::short_tempdir();
    let log = dir.path().join("memesd.log");
    let log_arg = log.to_str().unwrap().to_string();
    let daemon = Daemon::start_with(&["--log-file", &log_arg]);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !read(&log).contains("listening on") {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing logged to the file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // What logrotate does: rename, then SIGHUP.
    let rotated = dir.path().join("memesd.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    while !read(&log).contains("catalogue reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "the log did not move to a new file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        read(&rotated).contains("listening on"),
        "the old lines stay where they were"
    );
    assert!(!read(&rotated).contains("catalogue reloaded"));
    assert!(!read(&log).contains('\u{1b}'), "no colour codes in a file");
}

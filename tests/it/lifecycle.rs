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

//! Start-up: signals that arrive while memesd is still recovering its ledger.

use crate::harness::{MEMESD, short_tempdir};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A journal of `accounts` accounts, one top-up each: enough to keep recovery busy for a
/// while (about a second for 200,000 in a debug build).
fn write_journal(data_dir: &Path, accounts: u64) {
    std::fs::create_dir_all(data_dir).unwrap();
    let file = std::fs::File::create(data_dir.join("journal.ndjson")).unwrap();
    let mut out = std::io::BufWriter::new(file);
    for i in 0..accounts {
        writeln!(
            out,
            r#"{{"seq":{},"time":0,"user":"u{i}","entries":[{{"kind":"welcome","delta":150,"balance":150}},{{"kind":"topup","delta":1,"balance":151}}]}}"#,
            2 * i + 1
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// Starts memesd on a big ledger and sends `signal` while it recovers.
fn signal_during_start_up(signal: Signal) -> (tempfile::TempDir, Child, std::path::PathBuf) {
    let dir = short_tempdir();
    let data_dir = dir.path().join("data");
    write_journal(&data_dir, 200_000);
    let socket = dir.path().join("s.sock");
    let log = std::fs::File::create(dir.path().join("memesd.log")).unwrap();
    let child = std::process::Command::new(MEMESD)
        .arg("--socket")
        .arg(&socket)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("MEMES_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Well past exec, well before a 200,000-account recovery is done.
    std::thread::sleep(Duration::from_millis(60));
    assert!(
        !socket.exists(),
        "the ledger recovered too fast for this test to mean anything"
    );
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    (dir, child, socket)
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "memesd did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_reload_asked_for_during_start_up_is_done_once_serving() {
    let (dir, mut child, socket) = signal_during_start_up(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::harness::run_memes(Some(&socket), &["status"], &[]).code != 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("memesd.log")).unwrap();
            panic!("memesd died of the SIGHUP ({status}):\n{log}");
        }
        assert!(Instant::now() < deadline, "memesd never answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = crate::harness::run_memes(Some(&socket), &["--json", "status"], &[]);
    assert!(
        status.json()["accounts"].as_u64() == Some(200_000),
        "{}",
        status.stdout
    );
    let log_has_reload = || {
        std::fs::read_to_string(dir.path().join("memesd.log"))
            .unwrap()
            .contains("catalogue reloaded")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_has_reload() {
        assert!(Instant::now() < deadline, "the reload never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_for_exit(&mut child).code(), Some(0));
}

#[test]
fn a_stop_asked_for_during_start_up_is_a_clean_stop() {
    let (dir, mut child, socket) = signal_during_start_up(Signal::SIGTERM);
    let status = wait_for_exit(&mut child);
    let log = std::fs::read_to_string(dir.path().join("memesd.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{status}:\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(!socket.exists(), "the socket is removed");
    // Nothing was lost, and the stop wrote a checkpoint of all of it.
    let snapshot = std::fs::read_to_string(dir.path().join("data/snapshot.json")).unwrap();
    assert!(
        snapshot.contains(r#"["u199999",151,"#),
        "the last account is in the checkpoint"
    );
}

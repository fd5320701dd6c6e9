//! Checkpoints on a disk that fills up: a checkpoint never takes the space the journal
//! needs, leaves nothing behind when it fails, and everything resumes by itself once space
//! returns.

use crate::harness::{Daemon, assert_error, short_tempdir};
use serde_json::json;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Mounts a tiny tmpfs, or says why it cannot.
fn tiny_filesystem(dir: &Path, size: &str) -> Result<(), String> {
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

/// The journal offset that the checkpoint in `data_dir` covers, 0 if there is none.
fn checkpoint_offset(data_dir: &Path) -> u64 {
    let mut head = [0u8; 256];
    let Ok(mut file) = std::fs::File::open(data_dir.join("snapshot.json")) else {
        return 0;
    };
    let read = file.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..read]);
    let (_, rest) = head
        .split_once(r#""journal_offset":"#)
        .unwrap_or_else(|| panic!("not a checkpoint: {head}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

#[test]
fn a_checkpoint_that_does_not_fit_never_starves_the_journal_and_all_resumes_by_itself() {
    let dir = short_tempdir();
    let mount = dir.path().join("tiny");
    if let Err(why) = tiny_filesystem(&mount, "40m") {
        crate::harness::cannot_run_here(&format!(
            "mounting a small tmpfs is not permitted here ({why})"
        ));
        return;
    }
    let _unmount = Unmount(mount.clone());
    let mut daemon = Daemon::start_file_with(&["--checkpoint-mib", "1"]);
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon.data_dir = mount.join("data");
    daemon.restart();
    // 50,000 accounts: a checkpoint of about 3 MB, written again after every MiB of journal.
    let mut conn = daemon.connect();
    let users = 50_000;
    for batch in (0..users).collect::<Vec<_>>().chunks(1000) {
        let lines: String = batch
            .iter()
            .map(|i| {
                format!(
                    "{{\"op\":\"topup\",\"user\":\"checkpoint-test-user-{i:06}\",\"amount\":10}}\n"
                )
            })
            .collect();
        assert!(conn.send(lines.as_bytes()));
        for _ in batch {
            let reply = conn.read_reply().expect("a reply");
            assert_eq!(reply["ok"], true, "{reply}");
        }
    }
    let tmp = daemon.data_dir.join("snapshot.json.tmp");
    // Let the checkpoints the set-up asked for finish.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    while checkpoint_offset(&daemon.data_dir) == 0
        || quiet_since.elapsed() < Duration::from_millis(500)
    {
        if tmp.exists() {
            quiet_since = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let checkpointed = checkpoint_offset(&daemon.data_dir);

    // Fill the file system but for 2 MiB: room for the journal, not for a checkpoint.
    let filler = mount.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 << 10];
    while file.write_all(&block).is_ok() {}
    let filled = file.metadata().unwrap().len();
    file.set_len(filled - (2 << 20)).unwrap();
    drop(file);
    let reason = "r".repeat(450);
    let mut acknowledged = 160u64;
    let mut refused = 0;
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
    assert!(
        acknowledged > 160 + 3000,
        "the journal got the space left ({} changes), not a checkpoint:\n{}",
        acknowledged - 160,
        daemon.log()
    );
    // Nothing of the daemon's own is left in the way.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmp.exists() {
        assert!(
            Instant::now() < deadline,
            "{} left behind:\n{}",
            tmp.display(),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Space comes back: changes resume on their own, and stay accepted.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = conn.request(r#"{"op":"topup","user":"u","amount":1}"#);
        if reply["ok"] == true {
            acknowledged += 1;
            assert_eq!(reply["data"]["new_balance"], acknowledged);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {reply}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..3000 {
        let reply = conn.request(
            &json!({"op": "topup", "user": "u", "amount": 1, "reason": reason}).to_string(),
        );
        assert_eq!(reply["ok"], true, "{reply}\n{}", daemon.log());
        acknowledged += 1;
    }
    // And so do checkpoints.
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint_offset(&daemon.data_dir) <= checkpointed {
        assert!(
            Instant::now() < deadline,
            "checkpoints never resumed:\n{}",
            daemon.log()
        );
        conn.request(r#"{"op":"topup","user":"u","amount":1}"#);
        acknowledged += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Said once, not at every flush.
    let log = daemon.log();
    let warnings = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("checkpoint"))
        .count();
    assert!(warnings <= 2, "{warnings} warnings:\n{log}");
    assert_eq!(daemon.memes_json(&["audit"])["ok"], true);
    daemon.kill9();
    daemon.restart();
    assert_eq!(daemon.balance("u"), Some(acknowledged));
    assert_eq!(daemon.balance("checkpoint-test-user-049999"), Some(160));
}

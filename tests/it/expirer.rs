//! The expirer (`memesd --expire-every`): a lot's `expire` entry and an expired hold's
//! `release` entry are written shortly after the instant they are dated, with no request
//! for the account (here only reads: `lots`, `balance`, `history`), and reads saw the
//! balance drop at that instant either way. On the store `MEMES_TEST_STORE` names.

use crate::harness::Daemon;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A user's entries as (kind, delta, balance), oldest first, and the entries themselves.
fn history(daemon: &Daemon, user: &str) -> (Vec<(String, i64, u64)>, Vec<Value>) {
    let history = daemon.memes_json(&["history", "--user", user]);
    let entries = history.as_array().expect("a list of entries").clone();
    let kinds = entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["delta"].as_i64().unwrap(),
                e["balance"].as_u64().unwrap(),
            )
        })
        .collect();
    (kinds, entries)
}

/// Reads `user`'s history until it has an entry of `kind` (20 s at most); the history then.
fn wait_for(daemon: &Daemon, user: &str, kind: &str) -> (Vec<(String, i64, u64)>, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = history(daemon, user);
        if read.0.iter().any(|(k, _, _)| k == kind) {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} entry was written: {:?}",
            read.0
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn owned(list: &[(&str, i64, u64)]) -> Vec<(String, i64, u64)> {
    list.iter()
        .map(|(k, d, b)| (k.to_string(), *d, *b))
        .collect()
}

fn audit_passes(daemon: &Daemon) {
    let audit = daemon.memes_json(&["audit"]);
    assert_eq!(audit["ok"], true, "{audit}");
}

#[test]
fn an_expired_lot_is_written_off_with_no_request_for_the_account() {
    let mut daemon = Daemon::start_with(&["--expire-every", "200ms"]);
    daemon.memes(&[
        "topup",
        "--user",
        "x1",
        "--amount",
        "40",
        "--expires-in",
        "2s",
    ]);
    let lots = daemon.memes_json(&["lots", "--user", "x1"]);
    let lot = lots["lots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lot| lot["remaining"] == 40)
        .expect("the top-up's lot")
        .clone();
    assert_eq!(daemon.balance("x1"), Some(190));
    let (kinds, entries) = wait_for(&daemon, "x1", "expire");
    assert_eq!(
        kinds,
        owned(&[
            ("welcome", 150, 150),
            ("topup", 40, 190),
            ("expire", -40, 150)
        ])
    );
    assert_eq!(entries[2]["time"], lot["expires_at"], "dated the expiry");
    assert_eq!(
        entries[2]["from"],
        serde_json::json!([{"lot": lot["id"], "tokens": 40}])
    );
    assert_eq!(daemon.balance("x1"), Some(150));
    // Written once: the expirer's later rounds find nothing, and reads write nothing.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(history(&daemon, "x1").0, kinds);
    audit_passes(&daemon);
    // Killed and restarted: the journal (or the database) has it.
    daemon.kill9();
    daemon.restart();
    assert_eq!(history(&daemon, "x1").0, kinds);
    assert_eq!(daemon.balance("x1"), Some(150));
    audit_passes(&daemon);
}

#[test]
fn an_expired_hold_is_released_with_no_request_for_the_account() {
    let daemon = Daemon::start_with(&["--expire-every", "200ms"]);
    daemon.memes(&["get", "--user", "x2"]);
    let held = daemon.memes_json(&["hold", "--user", "x2", "--amount", "20", "--ttl", "2s"]);
    assert_eq!(daemon.balance("x2"), Some(129));
    let (kinds, entries) = wait_for(&daemon, "x2", "release");
    assert_eq!(
        kinds,
        owned(&[
            ("welcome", 150, 150),
            ("charge", -1, 149),
            ("hold", -20, 129),
            ("release", 20, 149)
        ])
    );
    assert_eq!(entries[3]["time"], held["expires_at"], "dated the expiry");
    assert_eq!(entries[3]["hold"], held["hold"]);
    assert_eq!(daemon.balance("x2"), Some(149));
    let listed = daemon.memes_json(&["lots", "--user", "x2"]);
    assert_eq!(listed["holds"], serde_json::json!([]), "{listed}");
    audit_passes(&daemon);
}

/// `--expire-every off`: nothing is written until the account's next change, which writes
/// the expiry first, dated as the expirer would have.
#[test]
fn off_leaves_the_expiry_to_the_next_change() {
    let daemon = Daemon::start_with(&["--expire-every", "off"]);
    daemon.memes(&[
        "topup",
        "--user",
        "x3",
        "--amount",
        "40",
        "--expires-in",
        "1s",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.balance("x3") != Some(150) {
        assert!(Instant::now() < deadline, "the lot never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Well past the expiry, and past what a default expirer would take.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        history(&daemon, "x3").0,
        owned(&[("welcome", 150, 150), ("topup", 40, 190)])
    );
    daemon.memes(&["get", "--user", "x3"]);
    assert_eq!(
        history(&daemon, "x3").0,
        owned(&[
            ("welcome", 150, 150),
            ("topup", 40, 190),
            ("expire", -40, 150),
            ("charge", -1, 149)
        ])
    );
    audit_passes(&daemon);
}

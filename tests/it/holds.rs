//! Holds (issue 26): `memes hold`, `capture` and `void` through the real binaries, on the
//! socket (NDJSON and the CLI) and over HTTP: the balance drops at once, exactly one end,
//! expiry at the ttl whatever ran, idempotent keys, refusals that change nothing, the
//! entries in history, the audit, a restart, and an export that audits offline (and, from
//! PostgreSQL, imports into a fresh database). On the store `MEMES_TEST_STORE` names.

use crate::harness::{Daemon, assert_error};
use crate::http::{AdminKey, Api};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The kinds and deltas of a user's entries, oldest first.
fn entries(daemon: &Daemon, user: &str) -> Vec<(String, i64)> {
    let history = daemon.memes_json(&["history", "--user", user]);
    history
        .as_array()
        .expect("a list of entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["delta"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn kinds(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(k, d)| (k.to_string(), *d)).collect()
}

fn audit_passes(daemon: &Daemon) {
    let audit = daemon.memes_json(&["audit"]);
    assert_eq!(audit["ok"], true, "{audit}");
}

/// Exports the daemon's ledger (version 5: hold entries, chained) and checks the export
/// offline with `memes audit --export`, which replays every hold and its end. A file ledger
/// is exported once the daemon has stopped; PostgreSQL's from a snapshot while it serves,
/// and the export is then imported into a fresh database, whose import audits the holds it
/// rebuilt (each in its one state, with its parts) before it commits.
fn export_audits_offline(daemon: &mut Daemon) {
    let export = daemon.dir.path().join("ledger.ndjson");
    let out = export.to_str().unwrap();
    let memesd = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_memesd"))
            .args(args)
            .env_remove("MEMES_STORE")
            .env_remove("MEMES_DATA_DIR")
            .output()
            .expect("run memesd")
    };
    let exported = match &daemon.database {
        Some(database) => memesd(&["export", "--store", &database.url, "--out", out]),
        None => {
            let stopped = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
            assert_eq!(stopped.code(), Some(0));
            let data_dir = daemon.data_dir.to_str().unwrap().to_string();
            memesd(&["export", "--data-dir", &data_dir, "--out", out])
        }
    };
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let stream = std::fs::read_to_string(&export).unwrap();
    assert!(stream.contains(r#""version":5"#), "{stream}");
    assert!(stream.contains(r#""kind":"hold""#), "{stream}");
    let audit = crate::harness::run_memes(None, &["--json", "audit", "--export", out], &[]);
    assert_eq!(audit.code, 0, "{}{}\n{stream}", audit.stdout, audit.stderr);
    assert_eq!(audit.json()["version"], 5);
    if daemon.database.is_some() {
        let fresh = crate::harness::TestDatabase::create();
        let imported = memesd(&["import", "--store", &fresh.url, "--in", out]);
        let said = String::from_utf8_lossy(&imported.stderr);
        assert!(imported.status.success(), "{said}");
        assert!(said.contains("audit passed"), "{said}");
    }
}

#[test]
fn a_hold_drops_the_balance_at_once_and_ends_once_captured_or_voided() {
    let mut daemon = Daemon::start();
    daemon.memes(&["get", "--user", "h1"]);
    let held = daemon.memes_json(&["hold", "--user", "h1", "--amount", "10", "--ttl", "5m"]);
    assert_eq!(
        (held["amount"].clone(), held["state"].clone()),
        (json!(10), json!("open"))
    );
    assert_eq!(held["new_balance"], 139);
    assert_eq!(daemon.balance("h1"), Some(139), "the balance drops at once");
    let id = held["hold"].as_u64().expect("the hold's id").to_string();
    // `lots` lists the open hold beside the lots it took from.
    let listed = daemon.memes_json(&["lots", "--user", "h1"]);
    assert_eq!(listed["holds"][0]["hold"].to_string(), id, "{listed}");
    assert_eq!(listed["holds"][0]["amount"], 10, "{listed}");
    assert_eq!(
        listed["holds"][0]["expires_at"], held["expires_at"],
        "{listed}"
    );
    let table = daemon.memes(&["lots", "--user", "h1"]);
    assert!(
        table.stdout.contains("Held until captured"),
        "{}",
        table.stdout
    );

    let captured = daemon.memes_json(&["capture", &id, "--amount", "4"]);
    assert_eq!(
        (
            captured["state"].clone(),
            captured["captured"].clone(),
            captured["returned"].clone()
        ),
        (json!("captured"), json!(4), json!(6))
    );
    assert_eq!(daemon.balance("h1"), Some(145));
    let listed = daemon.memes_json(&["lots", "--user", "h1"]);
    assert_eq!(listed["holds"], json!([]), "ended: {listed}");
    // Exactly one end: a second capture, or a void, is refused (exit 7) and changes nothing.
    for again in [vec!["capture", id.as_str()], vec!["void", id.as_str()]] {
        let refused = daemon.memes(&again);
        assert_eq!(refused.code, 7, "{again:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("captured"), "{}", refused.stderr);
    }
    assert_eq!(daemon.balance("h1"), Some(145));

    let second = daemon.memes_json(&["hold", "--user", "h1", "--amount", "145", "--ttl", "1h"]);
    assert_eq!(daemon.balance("h1"), Some(0));
    // What is held cannot be charged.
    let refused = daemon.memes(&["get", "--user", "h1"]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    let second = second["hold"].as_u64().unwrap().to_string();
    let voided = daemon.memes(&["void", &second]);
    assert_eq!(voided.code, 0, "{}", voided.stderr);
    assert!(
        voided.stdout.contains("145 tokens went back"),
        "{}",
        voided.stdout
    );
    assert_eq!(daemon.balance("h1"), Some(145));
    let lots = daemon.memes_json(&["lots", "--user", "h1"]);
    assert_eq!(
        lots["lots"][0]["remaining"], 145,
        "back in the welcome lot: {lots}"
    );

    let expected = kinds(&[
        ("welcome", 150),
        ("charge", -1),
        ("hold", -10),
        ("capture", 6),
        ("hold", -145),
        ("void", 145),
    ]);
    assert_eq!(entries(&daemon, "h1"), expected);
    let history = daemon.memes_json(&["history", "--user", "h1"]);
    assert_eq!(history[2]["hold"].to_string(), id, "{history}");
    // A hold entry is dated when it was made, not its expiry.
    let time = |value: &Value| value.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(
        time(&history[2]["time"]) <= time(&history[3]["time"]),
        "{history}"
    );
    assert!(
        time(&history[2]["time"]) < time(&held["expires_at"]),
        "{history}"
    );
    assert_eq!(history[3]["hold"].to_string(), id, "{history}");
    audit_passes(&daemon);

    // A restart (its checkpoint, taken at shutdown) recovers the holds (ended ones stay
    // ended) and the audit still passes.
    let stopped = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(stopped.code(), Some(0));
    daemon.restart();
    assert_eq!(daemon.balance("h1"), Some(145));
    assert_eq!(daemon.memes(&["capture", &id]).code, 7);
    assert_eq!(entries(&daemon, "h1"), expected);
    audit_passes(&daemon);
    export_audits_offline(&mut daemon);
}

#[test]
fn a_hold_expires_at_its_ttl_even_if_nothing_ran_and_cannot_be_captured_after() {
    // Without the expirer, so that the next change writes the release (tests/it/expirer.rs
    // has it on).
    let mut daemon = Daemon::start_with(&["--expire-every", "off"]);
    daemon.memes(&["get", "--user", "h2"]);
    let held = daemon.memes_json(&["hold", "--user", "h2", "--amount", "20", "--ttl", "2s"]);
    let id = held["hold"].as_u64().unwrap().to_string();
    assert_eq!(daemon.balance("h2"), Some(129));
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.balance("h2") != Some(149) {
        assert!(Instant::now() < deadline, "the hold never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut conn = daemon.connect();
    let late =
        conn.request(&json!({"op": "capture", "hold": id.parse::<u64>().unwrap()}).to_string());
    assert_error(&late, "hold_expired");
    assert_eq!(daemon.memes(&["void", &id]).code, 7);
    // The next change writes the release first, dated the expiry.
    daemon.memes(&["get", "--user", "h2"]);
    assert_eq!(daemon.balance("h2"), Some(148));
    assert_eq!(
        entries(&daemon, "h2"),
        kinds(&[
            ("welcome", 150),
            ("charge", -1),
            ("hold", -20),
            ("release", 20),
            ("charge", -1)
        ])
    );
    let history = daemon.memes_json(&["history", "--user", "h2"]);
    assert_eq!(history[3]["time"], held["expires_at"], "{history}");
    audit_passes(&daemon);
    // Killed: the journal alone rebuilds it.
    daemon.kill9();
    daemon.restart();
    assert_eq!(daemon.balance("h2"), Some(148));
    audit_passes(&daemon);
    export_audits_offline(&mut daemon);
}

#[test]
fn hold_ops_are_idempotent_by_key_and_bad_input_changes_nothing() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    conn.request(r#"{"op":"get","user":"h3"}"#);
    conn.request(r#"{"op":"get","user":"other"}"#);
    let hold = r#"{"op":"hold","user":"h3","amount":5,"ttl":"5m","idempotency_key":"k1"}"#;
    let first = conn.request(hold);
    assert_eq!(first["ok"], true, "{first}");
    let again = conn.request(hold);
    assert_eq!(again["data"]["replayed"], true, "{again}");
    assert_eq!(again["data"]["hold"], first["data"]["hold"]);
    assert_eq!(daemon.balance("h3"), Some(144), "held once");
    let other =
        conn.request(r#"{"op":"hold","user":"h3","amount":6,"ttl":"5m","idempotency_key":"k1"}"#);
    assert_error(&other, "idempotency_conflict");

    let id = first["data"]["hold"].as_u64().unwrap();
    for (bad, code) in [
        (
            json!({"op": "capture", "hold": id, "user": "other"}),
            "not_found",
        ),
        (
            json!({"op": "capture", "hold": id, "amount": 6}),
            "invalid_argument",
        ),
        (
            json!({"op": "capture", "hold": id, "amount": 0}),
            "invalid_argument",
        ),
        (json!({"op": "void", "hold": 999_999}), "not_found"),
        (
            json!({"op": "hold", "user": "h3", "amount": 5, "ttl": "0s"}),
            "invalid_argument",
        ),
        (
            json!({"op": "hold", "user": "h3", "amount": 5, "ttl": "30d"}),
            "invalid_argument",
        ),
        (
            json!({"op": "hold", "user": "h3", "amount": 0, "ttl": "5m"}),
            "invalid_argument",
        ),
        (
            json!({"op": "hold", "user": "h3", "amount": 145, "ttl": "5m"}),
            "insufficient_tokens",
        ),
        (
            json!({"op": "void", "hold": id, "user": "h3", "idempotency_key": "k1"}),
            "idempotency_conflict",
        ),
    ] {
        let reply = conn.request(&bad.to_string());
        assert_error(&reply, code);
    }
    assert_eq!(daemon.balance("h3"), Some(144));
    assert_eq!(daemon.balance("other"), Some(149));

    let capture =
        json!({"op": "capture", "hold": id, "amount": 2, "user": "h3", "idempotency_key": "c1"})
            .to_string();
    let captured = conn.request(&capture);
    assert_eq!(captured["data"]["new_balance"], 147, "{captured}");
    let replayed = conn.request(&capture);
    assert_eq!(replayed["data"]["replayed"], true, "{replayed}");
    assert_eq!(replayed["data"]["captured"], 2);
    assert_eq!(daemon.balance("h3"), Some(147));
    audit_passes(&daemon);
}

#[test]
fn holds_over_http_answer_their_statuses() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_with(&["--http", "127.0.0.1:0", "--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    daemon.memes(&["get", "--user", "h4"]);
    let key = Some(admin.key.as_str());
    let held = api
        .post("/v1/users/h4/holds", key, r#"{"amount":9,"ttl":"1s"}"#)
        .ok();
    assert_eq!(held["new_balance"], 140, "{held}");
    let id = held["hold"].as_u64().unwrap();
    api.post(&format!("/v1/holds/{id}/capture"), None, "")
        .problem(401, "unauthorized");
    api.post(&format!("/v1/holds/{id}/capture"), Some("h4"), "")
        .problem(403, "not_allowed");
    api.post("/v1/users/h4/holds", key, r#"{"amount":1000,"ttl":"1m"}"#)
        .problem(402, "insufficient_tokens");
    api.post("/v1/users/h4/holds", key, r#"{"amount":-1,"ttl":"1m"}"#)
        .problem(400, "invalid_argument");
    api.post("/v1/holds/123456/void", key, "")
        .problem(404, "not_found");
    api.post("/v1/holds/x/void", key, "")
        .problem(400, "bad_request");
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.balance("h4") != Some(149) {
        assert!(Instant::now() < deadline, "the hold never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    api.post(&format!("/v1/holds/{id}/capture"), key, r#"{"amount":1}"#)
        .problem(409, "hold_expired");
    let second = api
        .post("/v1/users/h4/holds", key, r#"{"amount":3,"ttl":"1m"}"#)
        .ok();
    // A body of `null` is no body, as the document's nullable body says.
    let voided: Value = api
        .post(&format!("/v1/holds/{}/void", second["hold"]), key, "null")
        .ok();
    assert_eq!(
        (voided["state"].clone(), voided["returned"].clone()),
        (json!("voided"), json!(3))
    );
    api.post(&format!("/v1/holds/{}/void", second["hold"]), key, "")
        .problem(409, "hold_closed");
    audit_passes(&daemon);
}

/// A generated meme goes through a hold: its price is held before the render, captured (with
/// the image named) once it is made, voided when the render fails; nothing is charged for a
/// failed render, and the audit passes.
#[test]
fn a_generated_meme_holds_its_price_and_a_failed_render_voids_it() {
    let generator = |name: &str| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/generators")
            .join(name);
        format!("sh {}", script.display())
    };
    let failing = Daemon::start_with(&["--generator-cmd", &generator("fail.sh")]);
    failing.memes_json(&["entitle", "--user", "p1", "--tier", "premium"]);
    let run = failing.memes(&["get", "--user", "p1", "--generate", "--query", "x"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        failing.balance("p1"),
        Some(150),
        "a failed render charges nothing"
    );
    assert_eq!(
        entries(&failing, "p1"),
        kinds(&[("welcome", 150), ("entitle", 0), ("hold", -5), ("void", 5)])
    );
    audit_passes(&failing);

    let daemon = Daemon::start_with(&["--generator-cmd", &generator("tiny-png.sh")]);
    daemon.memes_json(&["entitle", "--user", "p2", "--tier", "premium"]);
    let got = daemon.memes_json(&["get", "--user", "p2", "--generate", "--query", "hello"]);
    assert_eq!(
        (got["charged"].clone(), got["balance"].clone()),
        (json!(5), json!(145))
    );
    let history = daemon.memes_json(&["history", "--user", "p2"]);
    let capture = &history[3];
    assert_eq!(
        (capture["kind"].clone(), capture["delta"].clone()),
        (json!("capture"), json!(0))
    );
    assert!(
        capture["memes"][0]
            .as_str()
            .unwrap()
            .starts_with("generated:"),
        "{history}"
    );
    assert_eq!(history[2]["kind"], "hold", "{history}");
    audit_passes(&daemon);
}

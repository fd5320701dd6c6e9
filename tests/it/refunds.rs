//! Refunds (issue 26): `memes refund` through the real binaries, on the socket (NDJSON and
//! the CLI) and over HTTP: (part of) a charge goes back to the lots it came from, never more
//! than is left of it; idempotent keys; refusals that change nothing; the entry in history;
//! the audit, a restart after SIGTERM and kill -9, and the offline audit of an export (which,
//! from PostgreSQL, also imports into a fresh database). On the store `MEMES_TEST_STORE`
//! names; the last test moves a file ledger with refunds to PostgreSQL, whatever it says.

use crate::harness::{Daemon, TestDatabase, assert_error};
use crate::http::{AdminKey, Api};
use serde_json::{Value, json};

/// A user's entries, oldest first (`memes history --json`).
fn history(daemon: &Daemon, user: &str) -> Vec<Value> {
    daemon
        .memes_json(&["history", "--user", user])
        .as_array()
        .expect("a list of entries")
        .clone()
}

/// The seq and delta of `user`'s latest entry.
fn last_entry(daemon: &Daemon, user: &str) -> (u64, i64) {
    let entries = history(daemon, user);
    let last = entries.last().expect("an entry");
    (
        last["seq"].as_u64().unwrap(),
        last["delta"].as_i64().unwrap(),
    )
}

/// `user`'s lots as `(id, left)`, in burn order.
fn lots(daemon: &Daemon, user: &str) -> Vec<(u64, u64)> {
    let listed = daemon.memes_json(&["lots", "--user", user]);
    listed["lots"]
        .as_array()
        .expect("lots")
        .iter()
        .map(|lot| {
            (
                lot["id"].as_u64().unwrap(),
                lot["remaining"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn audit_passes(daemon: &Daemon) {
    let audit = daemon.memes_json(&["audit"]);
    assert_eq!(audit["ok"], true, "{audit}");
}

fn memesd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_memesd"))
        .args(args)
        .env_remove("MEMES_STORE")
        .env_remove("MEMES_DATA_DIR")
        .output()
        .expect("run memesd")
}

/// Exports the daemon's ledger to a file in its directory: a file ledger once the daemon
/// has stopped, PostgreSQL's from a snapshot while it serves. The path and the stream.
fn export(daemon: &mut Daemon) -> (std::path::PathBuf, String) {
    let export = daemon.dir.path().join("ledger.ndjson");
    let out = export.to_str().unwrap().to_string();
    let exported = match &daemon.database {
        Some(database) => memesd(&["export", "--store", &database.url, "--out", &out]),
        None => {
            let stopped = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
            assert_eq!(stopped.code(), Some(0));
            let data_dir = daemon.data_dir.to_str().unwrap().to_string();
            memesd(&["export", "--data-dir", &data_dir, "--out", &out])
        }
    };
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let stream = std::fs::read_to_string(&export).unwrap();
    (export, stream)
}

/// Imports an export into a fresh PostgreSQL database: the import's own audit, run before
/// it commits, checks every refund against its charge.
fn import(export: &std::path::Path) -> (TestDatabase, std::process::Output) {
    let fresh = TestDatabase::create();
    let imported = memesd(&[
        "import",
        "--store",
        &fresh.url,
        "--in",
        export.to_str().unwrap(),
    ]);
    (fresh, imported)
}

#[test]
fn a_refund_gives_back_to_the_lots_the_charge_took_from_never_more_than_is_left() {
    let mut daemon = Daemon::start();
    // Lot 1 the welcome grant (150, priority 50); lot 2 a top-up of 3 at priority 10, spent
    // first.
    daemon.memes(&["topup", "--user", "r1", "--amount", "3", "--priority", "10"]);
    let got = daemon.memes(&["get", "--user", "r1", "--count", "5"]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    let (charge, delta) = last_entry(&daemon, "r1");
    let cost = delta.unsigned_abs();
    assert!(cost > 3, "the charge spans both lots: {delta}");
    let after_charge = 153 - cost;
    assert_eq!(daemon.balance("r1"), Some(after_charge));
    assert_eq!(lots(&daemon, "r1"), [(1, after_charge)], "lot 2 is emptied");
    let entry = charge.to_string();

    // Part of it: the last taken go back first (lot 1's).
    let part = daemon.memes_json(&["refund", "--entry", &entry, "--amount", "1", "--user", "r1"]);
    assert_eq!(
        (
            part["reverses"].clone(),
            part["refunded"].clone(),
            part["returned"].clone()
        ),
        (json!(charge), json!(1), json!(1)),
        "{part}"
    );
    assert_eq!(part["left"], cost - 1);
    assert_eq!(part["new_balance"], after_charge + 1);
    assert_eq!(lots(&daemon, "r1"), [(1, after_charge + 1)]);

    // Bad input changes nothing: too much, a top-up, an unknown entry, another user's.
    let (topup, _) = (history(&daemon, "r1")[1]["seq"].as_u64().unwrap(), ());
    let other = daemon.memes(&["get", "--user", "other"]);
    assert_eq!(other.code, 0);
    let before = history(&daemon, "r1").len();
    let too_much = (cost).to_string();
    for (args, exit, says) in [
        (
            vec!["--entry", &entry, "--amount", &too_much],
            2,
            "refund gives back 1 to",
        ),
        (
            vec!["--entry", &entry, "--amount", "0"],
            2,
            "amount must be between 1",
        ),
        (
            vec!["--entry", &topup.to_string(), "--user", "r1"],
            2,
            "only a charge",
        ),
        (vec!["--entry", "999999"], 5, "no entry 999999"),
        (vec!["--entry", &entry, "--user", "other"], 5, "no entry"),
    ] {
        let mut command = vec!["refund"];
        command.extend(args.iter().map(|s| &**s));
        let refused = daemon.memes(&command);
        assert_eq!(refused.code, exit, "{command:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(says),
            "{command:?}: {}",
            refused.stderr
        );
    }
    assert_eq!(history(&daemon, "r1").len(), before, "nothing was written");
    assert_eq!(daemon.balance("r1"), Some(after_charge + 1));

    // Keys: a retry replays, marked; another refund with the key is a conflict.
    let keyed = ["refund", "--entry", &entry, "--amount", "1", "--key", "rk1"];
    let first = daemon.memes_json(&keyed);
    assert_eq!(first["left"], cost - 2);
    let again = daemon.memes_json(&keyed);
    assert_eq!(again["replayed"], true, "{again}");
    assert_eq!(again["refund"], first["refund"]);
    // The reply, first and replayed, names the refund's own entry.
    let (written, _) = last_entry(&daemon, "r1");
    assert_eq!(first["refund"], json!(written), "{first}");
    let conflict = daemon.memes(&["refund", "--entry", &entry, "--amount", "2", "--key", "rk1"]);
    assert_eq!(conflict.code, 7, "{}", conflict.stderr);
    assert_eq!(daemon.balance("r1"), Some(after_charge + 2));

    // Restarts keep what was refunded: after SIGTERM and after kill -9.
    let stopped = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(stopped.code(), Some(0));
    daemon.restart();
    assert_eq!(daemon.balance("r1"), Some(after_charge + 2));
    daemon.kill9();
    daemon.restart();
    let too_much = (cost - 1).to_string();
    let refused = daemon.memes(&["refund", "--entry", &entry, "--amount", &too_much]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);

    // All that is left: lot 1's, then lot 2's 3, re-opened as it was.
    let rest = daemon.memes(&["refund", "--entry", &entry]);
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    assert!(
        rest.stdout.contains("0 tokens left to refund"),
        "{}",
        rest.stdout
    );
    assert_eq!(daemon.balance("r1"), Some(153));
    assert_eq!(lots(&daemon, "r1"), [(2, 3), (1, 150)]);
    let nothing = daemon.memes(&["refund", "--entry", &entry]);
    assert_eq!(nothing.code, 2);
    assert!(
        nothing.stderr.contains("nothing is left"),
        "{}",
        nothing.stderr
    );

    // History: each refund names what it reverses.
    let refunds: Vec<Value> = history(&daemon, "r1")
        .into_iter()
        .filter(|e| e["kind"] == "refund")
        .collect();
    assert_eq!(refunds.len(), 3);
    assert!(refunds.iter().all(|e| e["reverses"] == json!(charge)));
    let total: u64 = refunds
        .iter()
        .map(|e| e["refunded"].as_u64().unwrap())
        .sum();
    assert_eq!(total, cost);
    let table = daemon.memes(&["history", "--user", "r1"]);
    assert!(
        table.stdout.contains(&format!("reverses {charge}")),
        "{}",
        table.stdout
    );
    audit_passes(&daemon);

    // The export (version 5) passes the offline audit, which checks every refund against
    // its charge; from PostgreSQL, it imports into a fresh database too.
    let (export, stream) = export(&mut daemon);
    assert!(stream.contains(r#""kind":"refund""#), "{stream}");
    if daemon.database.is_some() {
        let (_fresh, imported) = import(&export);
        let said = String::from_utf8_lossy(&imported.stderr);
        assert!(imported.status.success(), "{said}");
        assert!(said.contains("audit passed"), "{said}");
    }
    let audit = crate::harness::run_memes(
        None,
        &["--json", "audit", "--export", export.to_str().unwrap()],
        &[],
    );
    assert_eq!(audit.code, 0, "{}{}\n{stream}", audit.stdout, audit.stderr);
    assert_eq!(audit.json()["version"], 5);
    // A refund edited to give back more than its charge is left is named at its line.
    let forged: String = stream
        .lines()
        .map(|line| match line.contains(r#""kind":"refund""#) && line.contains(r#""refunded":1,"#) {
            true => line.replacen(r#""refunded":1,"#, &format!(r#""refunded":{},"#, cost + 1), 1),
            false => line.to_string(),
        } + "\n")
        .collect();
    let forged_path = daemon.dir.path().join("forged.ndjson");
    std::fs::write(&forged_path, forged).unwrap();
    let audit = crate::harness::run_memes(
        None,
        &["audit", "--export", forged_path.to_str().unwrap()],
        &[],
    );
    assert_eq!(audit.code, 1, "{}{}", audit.stdout, audit.stderr);
    let (_fresh, imported) = import(&forged_path);
    assert!(
        !imported.status.success(),
        "a forged refund is not imported"
    );
}

#[test]
fn refunds_over_the_socket_and_http_answer_their_statuses() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_with(&["--http", "127.0.0.1:0", "--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    let mut conn = daemon.connect();
    conn.request(r#"{"op":"get","user":"r2","count":4}"#);
    let (charge, delta) = last_entry(&daemon, "r2");
    let cost = delta.unsigned_abs();
    // The socket: a refund line and its reply.
    let line =
        json!({"id": "r", "op": "refund", "entry": charge, "amount": 1, "user": "r2"}).to_string();
    let reply = conn.request(&line);
    assert_eq!(
        reply,
        json!({"id": "r", "ok": true, "data": {
            "refund": charge + 1, "reverses": charge, "refunded": 1, "returned": 1,
            "left": cost - 1, "new_balance": 150 - cost + 1
        }})
    );
    assert_error(
        &conn.request(&json!({"op": "refund", "entry": charge, "amount": cost}).to_string()),
        "invalid_argument",
    );
    assert_error(
        &conn.request(r#"{"op":"refund","entry":999999}"#),
        "not_found",
    );
    assert_error(&conn.request(r#"{"op":"refund"}"#), "bad_request");
    // HTTP.
    let key = Some(admin.key.as_str());
    let path = format!("/v1/entries/{charge}/refund");
    api.post(&path, None, "").problem(401, "unauthorized");
    api.post(&path, Some("r2"), "").problem(403, "not_allowed");
    api.post("/v1/entries/999999/refund", key, "")
        .problem(404, "not_found");
    api.post("/v1/entries/x/refund", key, "")
        .problem(400, "bad_request");
    api.post(&path, key, &format!(r#"{{"amount":{cost}}}"#))
        .problem(400, "invalid_argument");
    api.post(&path, key, r#"{"amount":1,"user":"nobody"}"#)
        .problem(404, "not_found");
    let keyed = |body: &str| {
        api.send(
            "POST",
            &path,
            key,
            &[("idempotency-key", "hk1")],
            Some(body),
        )
    };
    let refunded = keyed(r#"{"amount":1}"#).ok();
    assert_eq!(refunded["left"], cost - 2, "{refunded}");
    let replayed = keyed(r#"{"amount":1}"#).ok();
    assert_eq!(replayed["replayed"], true, "{replayed}");
    keyed(r#"{"amount":2}"#).problem(409, "idempotency_conflict");
    let rest = api.post(&path, key, "").ok();
    assert_eq!(
        (rest["left"].clone(), rest["new_balance"].clone()),
        (json!(0), json!(150))
    );
    assert_eq!(daemon.balance("r2"), Some(150));
    audit_passes(&daemon);
}

/// A file ledger whose refunds re-opened a lot moves to PostgreSQL (export, import): history
/// and lots read the same, and the refunds go on there from what was refunded before.
#[test]
fn a_file_ledger_with_refunds_moves_to_postgresql_and_its_refunds_go_on_there() {
    let mut daemon = Daemon::start_file();
    // Lot 2: 3 tokens at priority 10, spent first; the charge empties it.
    daemon.memes(&["topup", "--user", "m1", "--amount", "3", "--priority", "10"]);
    let got = daemon.memes(&["get", "--user", "m1", "--count", "5"]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    let (charge, delta) = last_entry(&daemon, "m1");
    let cost = delta.unsigned_abs();
    assert!(cost > 3 + 1, "the charge spans both lots: {delta}");
    let entry = charge.to_string();
    // Lot 1's share and 1 of lot 2's back: lot 2 re-opens (holding 1 of its 3).
    let back = (cost - 3 + 1).to_string();
    let part = daemon.memes_json(&[
        "refund", "--entry", &entry, "--amount", &back, "--key", "mk",
    ]);
    assert_eq!(part["left"], 2, "{part}");
    let read = |daemon: &Daemon| {
        (
            daemon.memes_json(&["history", "--user", "m1"]),
            lots(daemon, "m1"),
        )
    };
    let before = read(&daemon);
    assert_eq!(before.1, [(2, 1), (1, 150)]);

    let (export, _) = export(&mut daemon);
    let (database, imported) = import(&export);
    let said = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{said}");
    assert!(said.contains("audit passed"), "{said}");
    let on_postgres = Daemon::start_on(database, &[]);
    assert_eq!(read(&on_postgres), before, "the same ledger, read back");
    // The key still replays; what is left is what the file store left.
    let again = on_postgres.memes_json(&[
        "refund", "--entry", &entry, "--amount", &back, "--key", "mk",
    ]);
    assert_eq!(
        (again["replayed"].clone(), again["refund"].clone()),
        (json!(true), part["refund"].clone())
    );
    let too_much = on_postgres.memes(&["refund", "--entry", &entry, "--amount", "5"]);
    assert_eq!(too_much.code, 2, "{}", too_much.stderr);
    let rest = on_postgres.memes_json(&["refund", "--entry", &entry]);
    assert_eq!(
        (rest["refunded"].clone(), rest["left"].clone()),
        (json!(2), json!(0)),
        "{rest}"
    );
    assert_eq!(lots(&on_postgres, "m1"), [(2, 3), (1, 150)]);
    assert_eq!(on_postgres.balance("m1"), Some(153));
    audit_passes(&on_postgres);
}

//! Moving a file-store ledger into PostgreSQL with `memesd export` and `memesd import`:
//! afterwards every balance, history entry and stored idempotent reply reads the same, and
//! the audit passes. Always file store → PostgreSQL, whatever `MEMES_TEST_STORE` says.

use crate::harness::{Daemon, MEMESD, TestDatabase, run_memes};
use serde_json::{Value, json};
use std::process::{Command, Output};

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn memesd(args: &[&str]) -> Output {
    Command::new(MEMESD)
        .args(args)
        .env_remove("MEMES_STORE")
        .env_remove("MEMES_DATA_DIR")
        .output()
        .expect("run memesd")
}

/// Everything a client can read back about the ledger.
fn snapshot(daemon: &Daemon, keyed: &[Value]) -> Vec<Value> {
    let mut seen = Vec::new();
    for user in USERS {
        seen.push(daemon.memes_json(&["balance", "--user", user]));
        // Lots cross the import too: the lot each credit opened, what each charge took.
        seen.push(daemon.memes_json(&["history", "--user", user]));
    }
    let mut conn = daemon.connect();
    for request in keyed {
        let reply = conn.request(&request.to_string());
        assert_eq!(reply["ok"], true, "{reply}");
        seen.push(reply["data"].clone());
    }
    seen
}

#[test]
fn an_exported_file_ledger_imports_into_postgres_and_reads_the_same() {
    let mut daemon = Daemon::start_file();
    let mut keyed = Vec::new();
    let mut conn = daemon.connect();
    for (i, user) in USERS.iter().enumerate() {
        for request in [
            json!({"op": "get", "user": user, "query": "cats", "count": 2}),
            json!({"op": "topup", "user": user, "amount": 40 + i, "reason": format!("stripe evt_{i}")}),
            json!({"op": "topup", "user": user, "amount": -3, "reason": "refund"}),
            json!({"op": "get", "user": user, "query": "grumpy", "idempotency_key": format!("get-{i}")}),
            json!({"op": "topup", "user": user, "amount": 7, "idempotency_key": format!("pay-{i}")}),
        ] {
            let reply = conn.request(&request.to_string());
            assert_eq!(reply["ok"], true, "{request}: {reply}");
            if request.get("idempotency_key").is_some() {
                keyed.push(request);
            }
        }
    }
    daemon.memes_json(&[
        "entitle",
        "--user",
        "bob",
        "--tier",
        "premium",
        "--until",
        "2031-01-31T00:00:00Z",
    ]);
    daemon.memes_json(&["entitle", "--user", "carol", "--tier", "premium"]);
    let before = snapshot(&daemon, &keyed);

    // A running daemon holds the data directory: export refuses.
    let data_dir = daemon.data_dir.to_str().unwrap().to_string();
    let busy = memesd(&["export", "--data-dir", &data_dir]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("already using"));

    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    let export = daemon.dir.path().join("ledger.ndjson");
    let export_path = export.to_str().unwrap();
    let exported = memesd(&["export", "--data-dir", &data_dir, "--out", export_path]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let stream = std::fs::read_to_string(&export).unwrap();
    assert!(stream.starts_with(r#"{"format":"memes-ledger","version":5,"source":{"#));
    assert!(
        stream
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with(r#"{"end":"#)
    );

    let database = TestDatabase::create();
    let imported = memesd(&["import", "--store", &database.url, "--in", export_path]);
    let said = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{said}");
    assert!(said.contains("audit passed"), "{said}");
    // The imported tables have planner statistics (ANALYZE sets reltuples; never-analyzed
    // tables have -1).
    memes::store::pg::testing::cluster()
        .execute(
            &database.name,
            "DO $$ BEGIN
               IF EXISTS (SELECT 1 FROM pg_class
                          WHERE relname IN ('accounts', 'entries') AND reltuples < 0) THEN
                 RAISE EXCEPTION 'the imported tables were not analyzed';
               END IF;
             END $$",
        )
        .expect("statistics after the import");
    // Not into a database that holds a ledger, unless told.
    let again = memesd(&["import", "--store", &database.url, "--in", export_path]);
    assert!(!again.status.success());
    let refused = String::from_utf8_lossy(&again.stderr);
    assert!(refused.contains("--replace"), "{refused}");
    // Each kind counted by itself.
    assert!(refused.contains("(4 accounts, "), "{refused}");
    assert!(refused.contains(" entries)"), "{refused}");
    let replaced = memesd(&[
        "import",
        "--store",
        &database.url,
        "--in",
        export_path,
        "--replace",
    ]);
    assert!(
        replaced.status.success(),
        "{}",
        String::from_utf8_lossy(&replaced.stderr)
    );
    // A stream cut short is refused, and changes nothing.
    let cut = daemon.dir.path().join("cut.ndjson");
    let keep = stream.lines().count() - 1;
    std::fs::write(
        &cut,
        stream.lines().take(keep).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let refused = memesd(&[
        "import",
        "--store",
        &database.url,
        "--in",
        cut.to_str().unwrap(),
        "--replace",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cut short"));

    let on_postgres = Daemon::start_on(database, &[]);
    assert_eq!(
        snapshot(&on_postgres, &keyed),
        before,
        "the same ledger, read back"
    );
    let report = on_postgres.memes_json(&["audit"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["accounts"], 4);
    assert_eq!(report["keys"], 8);
    assert_eq!(report["store"], "postgres");
    // The table names what PostgreSQL's audit counts, not the file store's journal lines.
    let table = on_postgres.memes(&["audit"]);
    assert!(
        table.stdout.contains("changes other than welcome grants")
            && !table.stdout.contains("journal lines"),
        "{}",
        table.stdout
    );
    // New entries continue after the imported ones.
    on_postgres.memes_json(&["topup", "--user", "alice", "--amount", "1"]);
    let history = on_postgres.memes_json(&["history", "--user", "alice"]);
    let seqs: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// `memes audit --export FILE`, offline: the export of a real ledger (credits with and
/// without expiry, an expiry, charges across lots, deductions, keys, an entitlement), from
/// the store `MEMES_TEST_STORE` names, passes; an amount edited, a line removed, two lines
/// swapped, the stream cut short are each reported at their line, with exit 1; an import
/// refuses each, and loads the sound one.
#[test]
fn an_export_is_audited_offline_and_any_tampering_is_named_by_its_line() {
    let mut daemon = Daemon::start();
    let data_dir = daemon.data_dir.to_str().unwrap().to_string();
    let mut conn = daemon.connect();
    for (i, user) in USERS.iter().enumerate() {
        for request in [
            json!({"op": "get", "user": user}),
            json!({"op": "topup", "user": user, "amount": 40 + i, "expires_in": "1s", "priority": 10}),
            json!({"op": "topup", "user": user, "amount": 7, "idempotency_key": format!("pay-{i}")}),
            json!({"op": "get", "user": user, "count": 3}),
        ] {
            let reply = conn.request(&request.to_string());
            assert_eq!(reply["ok"], true, "{request}: {reply}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    for user in USERS {
        // Writes the expiry of what is left of the 1s lot, then takes from the rest.
        let reply = conn.request(&json!({"op": "topup", "user": user, "amount": -5}).to_string());
        assert_eq!(reply["ok"], true, "{reply}");
    }
    daemon.memes_json(&["entitle", "--user", "bob", "--tier", "premium"]);
    let export = daemon.dir.path().join("ledger.ndjson");
    let out = export.to_str().unwrap();
    let exported = match &daemon.database {
        // From a snapshot, while the host serves.
        Some(database) => memesd(&["export", "--store", &database.url, "--out", out]),
        None => {
            let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
            assert_eq!(status.code(), Some(0));
            memesd(&["export", "--data-dir", &data_dir, "--out", out])
        }
    };
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let stream = std::fs::read_to_string(&export).unwrap();
    assert!(stream.contains(r#""kind":"expire""#), "{stream}");
    // A request's entries in one line (from PostgreSQL too, which keeps entries only).
    assert!(
        stream.contains(r#""entries":[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}},{"kind":"charge","#),
        "{stream}"
    );

    // No daemon: the CLI alone.
    let audit = |path: &std::path::Path| {
        run_memes(
            None,
            &["--json", "audit", "--export", path.to_str().unwrap()],
            &[],
        )
    };
    let sound = audit(&export);
    assert_eq!(sound.code, 0, "{}{}", sound.stdout, sound.stderr);
    let report = sound.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        (report["version"].clone(), report["accounts"].clone()),
        (json!(5), json!(4))
    );
    let table = run_memes(None, &["audit", "--export", export.to_str().unwrap()], &[]);
    assert_eq!(table.code, 0, "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains("chain of line hashes and every sum hold"),
        "{}",
        table.stdout
    );

    let lines: Vec<&str> = stream.lines().collect();
    let last = lines.len(); // the end line's number
    // Line numbers from 1 (the header); the first line of bob's with the 41-token top-up.
    let topup = lines
        .iter()
        .position(|l| l.contains(r#""kind":"topup","delta":41,"#))
        .expect("bob's top-up")
        + 1;
    let edited = lines[topup - 1].replace(r#""delta":41,"#, r#""delta":42,"#);
    let mut cases: Vec<(&str, Vec<String>, usize)> = Vec::new();
    let mut with = |what, change: &dyn Fn(&mut Vec<String>), line| {
        let mut changed: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        change(&mut changed);
        cases.push((what, changed, line));
    };
    with(
        "an amount edited",
        &|l| l[topup - 1] = edited.clone(),
        topup,
    );
    with("a line removed", &|l| drop(l.remove(4)), 5);
    with("two lines swapped", &|l| l.swap(6, 7), 7);
    with(
        "the last transaction removed",
        &|l| drop(l.remove(last - 2)),
        last - 1,
    );
    with("cut short", &|l| l.truncate(last - 3), last - 2);
    let database = TestDatabase::create();
    for (what, changed, line) in cases {
        let path = daemon.dir.path().join("tampered.ndjson");
        std::fs::write(&path, changed.join("\n") + "\n").unwrap();
        let run = audit(&path);
        assert_eq!(run.code, 1, "{what}: {}{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(report["ok"], false, "{what}: {report}");
        let problem = report["discrepancy"].as_str().unwrap();
        assert!(
            problem.starts_with(&format!("line {line}: ")),
            "{what}: expected line {line}: {problem}"
        );
        let table = run_memes(None, &["audit", "--export", path.to_str().unwrap()], &[]);
        assert_eq!(table.code, 1, "{what}");
        assert!(
            table
                .stdout
                .contains(&format!("Audit FAILED: {}: line {line}: ", path.display())),
            "{}",
            table.stdout
        );
        // The import reads the same stream and refuses it.
        let imported = memesd(&[
            "import",
            "--store",
            &database.url,
            "--in",
            path.to_str().unwrap(),
        ]);
        assert!(!imported.status.success(), "{what}: imported");
    }
    let imported = memesd(&[
        "import",
        "--store",
        &database.url,
        "--in",
        export.to_str().unwrap(),
    ]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
}

/// A password in the connection string, in any of its three forms, reaches neither the log
/// nor `--print-config`.
#[test]
fn the_database_password_reaches_no_log_and_no_printed_config() {
    let database = TestDatabase::create();
    let url = &database.url; // postgres://postgres@/NAME?host=DIR (trusted: any password works)
    let (rest, host) = url.split_once("?host=").expect("a socket directory");
    let name = rest.rsplit('/').next().unwrap();
    let secret = "hunter2-0xSECRET";
    let forms = [
        format!("{url}&password={secret}"),
        url.replacen("postgres@", &format!("postgres:{secret}@"), 1),
        format!("host={host} user=postgres password={secret} dbname={name}"),
    ];
    for form in forms {
        let printed = memesd(&["--store", &form, "--print-config"]);
        assert!(printed.status.success(), "{printed:?}");
        let printed = String::from_utf8(printed.stdout).unwrap();
        assert!(!printed.contains(secret), "{form}: {printed}");
        assert!(printed.contains("***"), "{printed}");

        let daemon = Daemon::start_file_with(&["--store", &form]);
        daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
        drop(daemon.connect());
        let log = daemon.log();
        assert!(
            log.contains("ledger in PostgreSQL at postgres://postgres@/"),
            "{log}"
        );
        assert!(!log.contains(secret), "{form}: {log}");
    }
}

/// Following README: stop memesd, export, import into PostgreSQL. The file ledger is then
/// marked as moved: no memesd serves it again (the CLI's autostart included) unless its
/// marker is removed; and `import --replace` refuses while hosts serve the database.
#[test]
fn a_moved_ledger_stays_moved() {
    let mut daemon = Daemon::start_file();
    daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
    daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    let data_dir = daemon.data_dir.to_str().unwrap().to_string();
    let export = daemon.dir.path().join("ledger.ndjson");
    let export = export.to_str().unwrap();
    let exported = memesd(&["export", "--data-dir", &data_dir, "--out", export]);
    assert!(exported.status.success(), "{exported:?}");
    let database = TestDatabase::create();
    let imported = memesd(&["import", "--store", &database.url, "--in", export]);
    let said = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{said}");
    assert!(said.contains("marked the ledger in"), "{said}");

    // The old ledger refuses to be served, saying where it went and how to override.
    let refused = Command::new(MEMESD)
        .args(["--data-dir", &data_dir, "--socket"])
        .arg(daemon.dir.path().join("again.sock"))
        .env_remove("MEMES_STORE")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("was moved to postgres://postgres@/") && why.contains("moved.json"),
        "{why}"
    );
    assert!(!why.contains("password"), "{why}");
    // The autostart meets the same refusal, and nothing is charged anywhere.
    let home = crate::harness::short_tempdir();
    let run = crate::harness::run_memes(
        None,
        &["get", "--user", "u1", "--query", "dogs"],
        &[
            ("HOME", home.path().to_str().unwrap()),
            ("XDG_RUNTIME_DIR", home.path().to_str().unwrap()),
            ("MEMES_DATA_DIR", &data_dir),
            ("MEMES_NO_AUTOSTART", "0"),
        ],
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("moved"), "{}", run.stderr);

    // Served from PostgreSQL: the balance moved with it, and a replace is refused meanwhile.
    let on_postgres = Daemon::start_on(database, &[]);
    assert_eq!(on_postgres.balance("u1"), Some(149));
    let url = on_postgres.database.as_ref().unwrap().url.clone();
    let replace = memesd(&["import", "--store", &url, "--in", export, "--replace"]);
    let said = String::from_utf8_lossy(&replace.stderr);
    assert!(!replace.status.success(), "{said}");
    assert!(
        said.contains("memesd hosts are serving this database"),
        "{said}"
    );
    assert_eq!(on_postgres.balance("u1"), Some(149));

    // Deliberately serving the old copy: remove the marker.
    std::fs::remove_file(daemon.data_dir.join("moved.json")).unwrap();
    daemon.restart();
    assert_eq!(daemon.balance("u1"), Some(149));
}

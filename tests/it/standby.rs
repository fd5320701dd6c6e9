//! Reads during a failover, on a real streaming standby: a primary of the test's own and its
//! standby (`pg_basebackup -R`), both in the connection string with
//! `target_session_attrs=read-write`. While the primary is down and the standby not promoted,
//! `balance` and `history` still answer (through `memes`, raw NDJSON and HTTP) with the
//! standby's data, marked `stale` with who answered and as of when, and counted in the
//! metrics; changes are refused as `unavailable` and change nothing; `status` and `search`
//! answer. Once the standby is promoted, replies are the normal ones again, byte for byte.

use crate::harness::Daemon;
use crate::http::Api;
use memes::store::pg::testing::Cluster;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Waits until `standby` has replayed `user`'s balance of `balance`.
fn wait_replayed(standby: &Cluster, user: &str, balance: u64) {
    let check = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM accounts WHERE user_id = '{user}' AND balance = {balance})
           THEN RAISE EXCEPTION 'not replayed yet'; END IF;
         END $$"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(why) = standby.execute("memes", &check) {
        assert!(
            Instant::now() < deadline,
            "the standby never caught up: {why}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The NDJSON reply to `line`, as sent.
fn raw(daemon: &Daemon, line: &str) -> String {
    let mut conn = daemon.connect();
    assert!(conn.send(format!("{line}\n").as_bytes()));
    conn.read_line()
}

#[test]
fn without_a_primary_balance_and_history_come_from_the_standby_marked_stale() {
    let primary = Cluster::private();
    primary.create_database("memes");
    let standby = primary.standby();
    let url = format!(
        "host={},{} user=postgres dbname=memes target_session_attrs=read-write",
        primary.socket_dir().display(),
        standby.socket_dir().display()
    );
    let daemon = Daemon::start_file_with(&["--store", &url, "--http", "127.0.0.1:0"]);
    let api = Api::new(&daemon);
    assert_eq!(
        daemon
            .memes(&["topup", "--user", "u1", "--amount", "50"])
            .code,
        0
    );
    assert_eq!(daemon.memes(&["get", "--user", "u1"]).code, 0);
    let balance_line = r#"{"op":"balance","user":"u1"}"#;
    let normal_balance = raw(&daemon, balance_line);
    assert_eq!(
        normal_balance,
        concat!(
            r#"{"ok":true,"data":{"user_id":"u1","balance":199,"tier":"free"}}"#,
            "\n"
        )
    );
    let normal_history = daemon.memes_json(&["history", "--user", "u1"]);
    assert_eq!(normal_history.as_array().map(Vec::len), Some(3));
    let normal_http = api.get("/v1/users/u1/balance", Some("u1")).ok();
    wait_replayed(&standby, "u1", 199);
    let committed = jiff::Timestamp::now();

    primary.stop();
    // The first read may still meet the connection the stop is closing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale_balance = loop {
        let reply: Value = serde_json::from_str(&raw(&daemon, balance_line)).unwrap();
        if reply["ok"] == true {
            break reply["data"].clone();
        }
        assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
        assert!(Instant::now() < deadline, "never served: {reply}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stale_balance["balance"], 199, "{stale_balance}");
    let standby_host = format!("{}:5432", standby.socket_dir().display());
    let stale = &stale_balance["stale"];
    assert_eq!(stale["from"], standby_host.as_str(), "{stale_balance}");
    // The standby's last replayed commit: the charge, just before `committed`.
    let as_of: jiff::Timestamp = stale["as_of"].as_str().unwrap().parse().unwrap();
    assert!(
        as_of <= committed && as_of > committed - jiff::SignedDuration::from_secs(30),
        "{as_of} vs {committed}"
    );
    assert!(stale["age_secs"].as_f64().is_some_and(|age| age >= 0.0));

    let cli = daemon.memes(&["balance", "--user", "u1"]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    assert!(cli.stdout.contains("199"), "{}", cli.stdout);
    let note =
        format!("no primary could be reached: read from the standby at {standby_host}, as of ");
    assert!(cli.stderr.contains(&note), "{}", cli.stderr);
    let json = daemon.memes(&["--json", "balance", "--user", "u1"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_eq!(json.json()["stale"]["from"], standby_host.as_str());

    let history = daemon.memes(&["--json", "history", "--user", "u1"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert_eq!(history.json(), normal_history, "the same entries");
    assert!(history.stderr.contains(&note), "{}", history.stderr);
    let human = daemon.memes(&["history", "--user", "u1"]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout.contains("welcome"), "{}", human.stdout);
    assert!(human.stderr.contains(&note), "{}", human.stderr);

    let http = api.get("/v1/users/u1/balance", Some("u1")).ok();
    assert_eq!(http["balance"], normal_http["balance"]);
    assert_eq!(http["stale"]["from"], standby_host.as_str(), "{http}");
    let page = api.get("/v1/users/u1/history", Some("u1")).ok();
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(3), "{page}");
    assert_eq!(page["stale"]["from"], standby_host.as_str(), "{page}");

    // Changes are refused at once and change nothing.
    let charge = daemon.memes(&["get", "--user", "u1"]);
    assert_eq!(charge.code, 8, "{}", charge.stderr);
    assert!(
        charge.stderr.contains("no PostgreSQL primary answers"),
        "{}",
        charge.stderr
    );
    let topup = daemon.memes(&["topup", "--user", "u1", "--amount", "5"]);
    assert_eq!(topup.code, 8, "{}", topup.stderr);
    assert_eq!(daemon.balance("u1"), Some(199));
    // What needs no ledger, or says itself that it is out of date, still answers.
    assert_eq!(daemon.memes(&["status"]).code, 9);
    assert_eq!(daemon.memes(&["search", "cats"]).code, 0);
    assert_eq!(api.get("/readyz", None).status, 503);
    let metrics = String::from_utf8_lossy(&api.get("/metrics", None).body).to_string();
    let served = |read: &str| {
        metrics.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            (series.starts_with("memes_store_standby_reads_total{")
                && series.contains(&format!("read=\"{read}\"")))
            .then(|| value.parse::<f64>().unwrap())
        })
    };
    assert!(served("account").is_some_and(|n| n >= 4.0), "{metrics}");
    assert!(served("history").is_some_and(|n| n >= 3.0), "{metrics}");

    standby.promote();
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw(&daemon, balance_line) != normal_balance {
        assert!(
            Instant::now() < deadline,
            "never the primary's reply again:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        daemon.memes_json(&["history", "--user", "u1"]),
        normal_history
    );
    assert_eq!(
        api.get("/v1/users/u1/balance", Some("u1")).ok(),
        normal_http
    );
    let cli = daemon.memes(&["balance", "--user", "u1"]);
    assert_eq!((cli.code, cli.stderr.as_str()), (0, ""));
    assert_eq!(
        daemon
            .memes(&["topup", "--user", "u1", "--amount", "5"])
            .code,
        0
    );
    assert_eq!(daemon.balance("u1"), Some(204));
}

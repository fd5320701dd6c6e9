//! memesd without a PostgreSQL primary and after one is back, as clients and operators see it:
//! changes refused at once (not each after its full deadline), `/readyz` not ready, the time
//! without a primary in the metrics, and the log saying why writes stopped and when they
//! resumed, and `status` and `get` saying the database is unreachable, where and since when
//! (not a disk problem, not a pool library's phrase). Always on PostgreSQL (a cluster of the
//! test's own where it stops the server; elsewhere a database of the shared cluster reached
//! through [`crate::proxy`], which cuts and refuses connections).

use crate::harness::{Daemon, TestDatabase};
use crate::http::Api;
use crate::proxy::Proxy;
use memes::store::pg::testing::{Cluster, cluster};
use std::time::{Duration, Instant};

/// The value of the series with exactly this name and these labels, if exposed.
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

/// Polls `/readyz` until it answers `status`, for at most `within`.
fn wait_ready(api: &Api, daemon: &Daemon, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while api.get("/readyz", None).status != status {
        assert!(
            Instant::now() < deadline,
            "/readyz never {status}:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_a_primary_a_host_is_not_ready_refuses_changes_at_once_and_logs_when_writes_resume() {
    let server = Cluster::private();
    server.create_database("memes");
    let url = format!(
        "host={} user=postgres dbname=memes target_session_attrs=read-write",
        server.socket_dir().display()
    );
    let daemon = Daemon::start_file_with(&["--store", &url, "--http", "127.0.0.1:0"]);
    let api = Api::new(&daemon);
    let topup = r#"{"op":"topup","user":"u","amount":1}"#;
    assert_eq!(daemon.connect().request(topup)["ok"], true);
    wait_ready(&api, &daemon, 200, Duration::from_secs(5));

    server.stop();
    wait_ready(&api, &daemon, 503, Duration::from_secs(5));
    let mut conn = daemon.connect();
    for _ in 0..3 {
        let asked = Instant::now();
        let refused = conn.request(topup);
        assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("no PostgreSQL primary"), "{message}");
        assert!(message.contains("database is unreachable at"), "{message}");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
    }
    let metrics = api.get("/metrics", None);
    let body = String::from_utf8_lossy(&metrics.body).to_string();
    let without = value(
        &body,
        r#"memes_store_without_primary_seconds{store="postgres"}"#,
    );
    assert!(without.is_some_and(|s| s > 0.0), "{body}");
    assert_eq!(
        value(&body, r#"memes_store_changes_waiting{store="postgres"}"#),
        Some(0.0),
        "{body}"
    );

    server.start_again();
    wait_ready(&api, &daemon, 200, Duration::from_secs(5));
    assert_eq!(conn.request(topup)["ok"], true);
    assert_eq!(daemon.balance("u"), Some(152));
    let log = daemon.log();
    let stopped = format!(
        "writes stopped: no PostgreSQL host gives a writable connection (last primary: {}:5432): {}:5432: ",
        server.socket_dir().display(),
        server.socket_dir().display()
    );
    assert!(log.contains(&stopped), "{log}");
    assert!(
        log.contains("writes resumed: PostgreSQL primary at"),
        "{log}"
    );
}

/// `memes status` while the database cannot be reached: exit 9 with the database named
/// (without its password), since when and why, and the counts read before, marked as the
/// last known with their time; never "Accounts 0", a disk problem or "disk full". A `get`
/// meanwhile says the same in our words, never deadpool's "Error occurred while creating a
/// new object", and says "try again later" once. Once the database is back, all is as before.
#[test]
fn status_and_get_say_the_database_is_unreachable_where_and_since_when() {
    let database = TestDatabase::create();
    let proxy = Proxy::start(cluster().socket_dir().join(".s.PGSQL.5432"));
    let secret = "hunter2-not-for-logs";
    let url = format!(
        "host={} user=postgres password={secret} dbname={} target_session_attrs=read-write",
        proxy.dir().display(),
        database.name
    );
    let daemon = Daemon::start_file_with(&["--store", &url]);
    assert_eq!(daemon.memes(&["get", "--user", "u1"]).code, 0);
    daemon.memes(&["topup", "--user", "u2", "--amount", "5"]);
    let before = daemon.memes_json(&["status"]);
    assert_eq!(
        (before["accounts"].as_u64(), before["entries"].as_u64()),
        (Some(2), Some(4))
    );
    assert!(before.get("unreachable").is_none(), "{before}");

    let cut_at = std::time::SystemTime::now();
    proxy.refuse(true);
    proxy.cut_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = daemon.memes(&["--json", "status"]);
        if status.code == 9 {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "status never degraded: {}",
            status.stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let json = status.json();
    let lost = &json["unreachable"];
    let place = lost["store"].as_str().unwrap_or_default();
    assert!(
        place.contains(&proxy.dir().display().to_string()) && place.contains(&database.name),
        "{json}"
    );
    let since: jiff::Timestamp = lost["since"].as_str().unwrap().parse().unwrap();
    let cut_at = jiff::Timestamp::try_from(cut_at).unwrap();
    assert!(
        since >= cut_at - jiff::SignedDuration::from_secs(1) && since <= jiff::Timestamp::now(),
        "{json}"
    );
    assert!(lost["for_secs"].as_f64().is_some(), "{json}");
    assert!(!lost["reason"].as_str().unwrap().is_empty(), "{json}");
    assert!(lost["counted_at"].is_string(), "{json}");
    assert_eq!(json["writable"], false);
    assert_eq!(
        (json["accounts"].as_u64(), json["entries"].as_u64()),
        (Some(2), Some(4)),
        "the last known counts, not 0: {json}"
    );

    let human = daemon.memes(&["status"]);
    assert_eq!(human.code, 9, "{}", human.stderr);
    let said = format!("{}{}", human.stdout, human.stderr);
    for wrong in ["disk", "Accounts       0", secret] {
        assert!(!said.contains(wrong), "{wrong:?} in:\n{said}");
    }
    assert!(
        human.stderr.contains("is unreachable since"),
        "{}",
        human.stderr
    );
    assert!(human.stderr.contains(place), "{}", human.stderr);
    assert!(
        human.stdout.contains("2 (last known, counted "),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("4 (last known, counted "),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("UNREACHABLE since"),
        "{}",
        human.stdout
    );

    let get = daemon.memes(&["get", "--user", "u1"]);
    assert_eq!(get.code, 8, "{}", get.stderr);
    assert!(
        get.stderr.contains("database is unreachable at"),
        "{}",
        get.stderr
    );
    assert!(get.stderr.contains(place), "{}", get.stderr);
    assert!(
        !get.stderr.contains("creating a new object"),
        "{}",
        get.stderr
    );
    assert!(!get.stderr.contains(secret), "{}", get.stderr);
    assert_eq!(
        get.stderr.matches("try again later").count(),
        1,
        "{}",
        get.stderr
    );
    assert!(!daemon.log().contains(secret));

    proxy.refuse(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.memes(&["status"]).code != 0 {
        assert!(
            Instant::now() < deadline,
            "status never recovered:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = daemon.memes_json(&["status"]);
    assert!(after.get("unreachable").is_none(), "{after}");
    assert_eq!(after["writable"], true);
}

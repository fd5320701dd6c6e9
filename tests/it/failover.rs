//! memesd without a PostgreSQL primary and after one is back, as clients and operators see it:
//! changes refused at once (not each after its full deadline), `/readyz` not ready, the time
//! without a primary in the metrics, and the log saying why writes stopped and when they
//! resumed. Always on PostgreSQL (a cluster of the test's own, since it stops the server).

use crate::harness::Daemon;
use crate::http::Api;
use memes::store::pg::testing::Cluster;
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

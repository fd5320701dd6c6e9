//! The daemon's own metrics, as Prometheus scrapes them: every family the alert rules and
//! the dashboard in deploy/ read is there, and the counts follow what happened.

use crate::harness::Daemon;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over a fresh connection: status line and body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the series with exactly this name and these labels, if exposed.
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}

#[test]
fn a_socket_only_daemon_serves_its_metrics_on_the_metrics_address() {
    let port = free_port();
    let daemon = Daemon::start_with(&["--metrics", &format!("127.0.0.1:{port}")]);
    daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
    daemon.memes_json(&["topup", "--user", "u1", "--amount", "7"]);
    daemon.memes_json(&["topup", "--user", "u1", "--amount", "-3"]);
    let refused = daemon
        .connect()
        .request(r#"{"op":"get","user":"u1","count":11}"#);
    assert_eq!(refused["error"]["code"], "invalid_argument");
    let (status, body) = get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    let has =
        |series: &str| value(&body, series).unwrap_or_else(|| panic!("no {series} in:\n{body}"));
    assert_eq!(
        has(r#"memes_requests_total{front="unix",op="get",code="ok"}"#),
        1.0
    );
    assert_eq!(
        has(r#"memes_requests_total{front="unix",op="topup",code="ok"}"#),
        2.0
    );
    assert_eq!(
        has(r#"memes_requests_total{front="unix",op="get",code="invalid_argument"}"#),
        1.0
    );
    assert_eq!(has(r#"memes_tokens_total{kind="charged"}"#), 1.0);
    assert_eq!(has(r#"memes_tokens_total{kind="topped_up"}"#), 7.0);
    assert_eq!(has(r#"memes_tokens_total{kind="deducted"}"#), 3.0);
    let store = match crate::harness::test_store() {
        crate::harness::TestStore::File => "file",
        crate::harness::TestStore::Postgres => "postgres",
    };
    assert_eq!(
        has(&format!(r#"memes_store_writable{{store="{store}"}}"#)),
        1.0
    );
    assert_eq!(has("memes_accounts"), 1.0);
    assert_eq!(has("memes_catalogue_memes"), 357.0);
    assert!(has("memes_catalogue_reload_timestamp_seconds") > 1.7e9);
    assert_eq!(
        has(r#"memes_build_info{version="0.1.0",protocol="1"}"#),
        1.0
    );
    // Latency buckets that resolve the service levels: 0.25 ms to 1 s.
    for le in ["0.00025", "0.001", "0.01", "0.05", "0.1", "1", "+Inf"] {
        has(&format!(
            r#"memes_request_duration_seconds_bucket{{front="unix",op="get",le="{le}"}}"#
        ));
    }
    assert!(
        has(&format!(
            r#"memes_store_commit_duration_seconds_count{{store="{store}"}}"#
        )) >= 3.0
    );
    assert!(
        has(&format!(
            r#"memes_store_commit_batch_size_bucket{{store="{store}",le="1"}}"#
        )) >= 1.0
    );
    // Only the metrics are served there.
    assert!(get(port, "/v1/status").0.contains("404"));
    promtool_accepts(&body);
}

/// Prometheus' own check of an exposition (`promtool check metrics`, from Debian's
/// `prometheus`, installed by scripts/install-test-deps.sh): every family has its HELP text,
/// counters end in `_total`, units are base units in the name.
fn promtool_accepts(exposition: &str) {
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, see scripts/install-test-deps.sh)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

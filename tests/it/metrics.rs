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
    assert_eq!(has(r#"memes_store_writable{store="file"}"#), 1.0);
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
    assert!(has(r#"memes_store_commit_duration_seconds_count{store="file"}"#) >= 3.0);
    assert!(has(r#"memes_store_commit_batch_size_bucket{store="file",le="1"}"#) >= 1.0);
    // Only the metrics are served there.
    assert!(get(port, "/v1/status").0.contains("404"));
}

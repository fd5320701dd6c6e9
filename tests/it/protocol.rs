//! The wire protocol, spoken raw over the socket.

use crate::harness::{Daemon, assert_error};
use serde_json::json;

#[test]
fn every_op_answers_with_the_documented_shape() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    let got =
        conn.request(r#"{"id":1,"op":"get","user":"u1","lat":40.0,"long":-73.0,"query":"cats"}"#);
    assert_eq!(got["id"], 1);
    assert_eq!(got["ok"], true);
    let data = &got["data"];
    assert_eq!(data["user_id"], "u1");
    assert_eq!(data["charged"], 1);
    assert_eq!(data["balance"], 149);
    for field in ["id", "title", "image", "source"] {
        assert!(
            data["meme"][field].as_str().is_some_and(|s| !s.is_empty()),
            "{got}"
        );
    }
    assert!(
        data["meme"]["image"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let topup = conn.request(r#"{"id":"t","op":"topup","user":"u1","amount":50}"#);
    assert_eq!(
        topup,
        json!({"id": "t", "ok": true, "data": {"user_id": "u1", "amount": 50, "new_balance": 199}})
    );
    let balance = conn.request(r#"{"op":"balance","user":"u1"}"#);
    assert_eq!(balance["data"]["balance"], 199);
    assert_eq!(balance["data"]["user_id"], "u1");
    let status = conn.request(r#"{"op":"status"}"#);
    let status = &status["data"];
    assert_eq!(status["protocol"], 1);
    assert_eq!(status["accounts"], 1);
    assert!(status["memes"].as_u64().unwrap() >= 300);
    assert!(status["uptime_secs"].as_f64().unwrap() >= 0.0);
    assert!(status["version"].is_string());
}

#[test]
fn lon_is_accepted_for_long() {
    let daemon = Daemon::start();
    let got = daemon
        .connect()
        .request(r#"{"op":"get","user":"u1","lat":48.8566,"lon":2.3522}"#);
    assert_eq!(got["ok"], true, "{got}");
}

#[test]
fn malformed_requests_get_errors_change_nothing_and_keep_the_connection() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    conn.request(r#"{"op":"topup","user":"u1","amount":5}"#);
    let cases = [
        ("not json at all", "bad_request"),
        (r#"["op","get"]"#, "bad_request"),
        (r#"{"op":"get"}"#, "bad_request"),
        (r#"{"op":"get","user":7}"#, "bad_request"),
        (r#"{"op":"topup","user":"u1","amount":"5"}"#, "bad_request"),
        (r#"{"op":"topup","user":"u1","amount":2.5}"#, "bad_request"),
        (
            r#"{"op":"topup","user":"u1","amount":0}"#,
            "invalid_argument",
        ),
        (r#"{"op":"get","user":""}"#, "invalid_argument"),
        (
            r#"{"op":"get","user":"u1","lat":-90.5,"long":0}"#,
            "invalid_argument",
        ),
        (
            r#"{"op":"get","user":"u1","lat":1,"long":"east"}"#,
            "bad_request",
        ),
        (r#"{"op":"balance","user":"ghost"}"#, "not_found"),
        (r#"{"op":"levitate","user":"u1"}"#, "unknown_op"),
        (
            r#"{"id":5,"op":"get","user":"u1","query":"zzqqxxyy"}"#,
            "not_found",
        ),
    ];
    for (line, code) in cases {
        assert_error(&conn.request(line), code);
    }
    let echoed = conn.request(r#"{"id":"keep-me","op":"nope"}"#);
    assert_eq!(echoed["id"], "keep-me");
    assert_eq!(
        daemon.balance("u1"),
        Some(155),
        "no bad request changed anything"
    );
    assert_eq!(
        conn.request(r#"{"op":"status"}"#)["ok"],
        true,
        "the connection is still usable"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    let mut batch = String::new();
    for i in 0..500 {
        let line = match i % 3 {
            0 => json!({"id": i, "op": "get", "user": format!("p{}", i % 7)}),
            1 => json!({"id": i, "op": "topup", "user": format!("p{}", i % 7), "amount": 1}),
            _ => json!({"id": i, "op": "balance", "user": "nobody"}),
        };
        batch.push_str(&line.to_string());
        batch.push('\n');
    }
    conn.send(batch.as_bytes());
    for i in 0..500 {
        let reply = conn.read_reply().unwrap();
        assert_eq!(reply["id"], i, "{reply}");
    }
}

#[test]
fn an_over_long_line_gets_its_error_and_the_connection_closes() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    let long = format!(
        "{{\"op\":\"get\",\"user\":\"{}\"}}\n",
        "x".repeat(70 * 1024)
    );
    // The daemon may close while we are still writing; that is fine.
    let _ = std::io::Write::write_all(&mut conn.stream(), long.as_bytes());
    let reply = conn.read_reply().expect("an error line before the close");
    assert_error(&reply, "line_too_long");
    assert!(conn.read_reply().is_none(), "connection closed");
    assert_eq!(daemon.connect().request(r#"{"op":"status"}"#)["ok"], true);
}

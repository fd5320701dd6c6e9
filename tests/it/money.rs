//! The rules of the money, checked from outside.

use crate::harness::{Daemon, assert_error};
use serde_json::json;

#[test]
fn first_sight_grants_the_welcome_once_ever() {
    let daemon = Daemon::start();
    let got = daemon.memes_json(&["get", "--user", "u1"]);
    assert_eq!(got["charged"], 1);
    assert_eq!(got["balance"], 149);
    assert_eq!(
        daemon.memes_json(&["topup", "--user", "u1", "--amount", "-149"])["new_balance"],
        0
    );
    // Spent down to zero: no second grant.
    let refused = daemon.memes(&["get", "--user", "u1"]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("memes: error:"),
        "{}",
        refused.stderr
    );
    assert_eq!(daemon.balance("u1"), Some(0));
    // A top-up opens an account too, with its grant.
    assert_eq!(
        daemon.memes_json(&["topup", "--user", "u2", "--amount", "50"])["new_balance"],
        200
    );
}

/// An admin who tops up a user never seen before gets more than the amount back: the reply
/// says why (the welcome grant was recorded first), on the socket and in the CLI's words,
/// and only for the top-up that opened the account. A keyed one replays exactly that.
#[test]
fn a_top_up_that_opens_an_account_says_the_welcome_grant_is_in_it() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    let opened = conn.request(r#"{"op":"topup","user":"new","amount":10}"#);
    assert_eq!(
        opened["data"],
        json!({"user_id": "new", "amount": 10, "new_balance": 160, "welcome_grant": 150}),
        "{opened}"
    );
    let again = conn.request(r#"{"op":"topup","user":"new","amount":10}"#);
    assert_eq!(
        again["data"],
        json!({"user_id": "new", "amount": 10, "new_balance": 170}),
        "{again}"
    );
    // An account opened by a charge: its first top-up includes no grant.
    conn.request(r#"{"op":"get","user":"getter"}"#);
    let topped = conn.request(r#"{"op":"topup","user":"getter","amount":1}"#);
    assert_eq!(topped["data"].get("welcome_grant"), None, "{topped}");

    let cli = daemon.memes(&["topup", "--user", "cli-new", "--amount", "10"]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    assert!(
        cli.stdout.contains("balance 160 tokens")
            && cli.stdout.contains("welcome grant of 150 tokens"),
        "{}",
        cli.stdout
    );
    let cli = daemon.memes(&["topup", "--user", "cli-new", "--amount", "10"]);
    assert!(!cli.stdout.contains("welcome"), "{}", cli.stdout);
    let json = daemon.memes_json(&["topup", "--user", "json-new", "--amount", "1"]);
    assert_eq!(json["welcome_grant"], 150, "{json}");

    // Keyed: the replay is the first reply, byte for byte, marked as a replay.
    let keyed = r#"{"id":1,"op":"topup","user":"keyed","amount":10,"idempotency_key":"k1"}"#;
    conn.send(format!("{keyed}\n").as_bytes());
    let first = conn.read_line();
    conn.send(format!("{keyed}\n").as_bytes());
    let replay = conn.read_line();
    assert!(first.contains(r#""welcome_grant":150"#), "{first}");
    assert_eq!(
        replay,
        first.replace(
            r#""welcome_grant":150}"#,
            r#""welcome_grant":150,"replayed":true}"#
        )
    );
    assert_eq!(daemon.balance("keyed"), Some(160));
}

#[test]
fn a_charge_happens_only_when_a_meme_is_delivered() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1"]);
    let no_match = daemon.memes(&["get", "--user", "u1", "--query", "qqqqxxxzzz"]);
    assert_eq!(no_match.code, 5, "{}", no_match.stderr);
    let bad_lat = daemon.memes(&["get", "--user", "u1", "--lat", "91", "--long", "0"]);
    assert_eq!(bad_lat.code, 2);
    let mut conn = daemon.connect();
    assert_error(
        &conn.request(r#"{"op":"get","user":"u1","lat":0,"long":181}"#),
        "invalid_argument",
    );
    assert_eq!(daemon.balance("u1"), Some(149));
    // An unknown user that gets nothing has no account.
    assert_eq!(
        daemon
            .memes(&["get", "--user", "nobody", "--query", "qqqqxxxzzz"])
            .code,
        5
    );
    assert_eq!(daemon.balance("nobody"), None);
}

#[test]
fn no_balance_goes_below_zero() {
    let daemon = Daemon::start_with(&["--meme-cost", "100"]);
    daemon.memes_json(&["get", "--user", "u1"]);
    let refused = daemon.memes(&["get", "--user", "u1"]);
    assert_eq!(refused.code, 4);
    assert!(
        refused.stderr.contains("50 tokens, 100 needed"),
        "{}",
        refused.stderr
    );
    let deduct = daemon.memes(&["topup", "--user", "u1", "--amount", "-51"]);
    assert_eq!(deduct.code, 4);
    assert_eq!(daemon.balance("u1"), Some(50));
    assert_eq!(
        daemon.memes_json(&["topup", "--user", "u1", "--amount=-50"])["new_balance"],
        0
    );
}

#[test]
fn concurrent_top_ups_lose_no_update() {
    let daemon = Daemon::start();
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let mut conn = daemon.connect();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let reply = conn.request(r#"{"op":"topup","user":"shared","amount":1}"#);
                    assert_eq!(reply["ok"], true, "{reply}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(daemon.balance("shared"), Some(150 + 64_000));
}

#[test]
fn amounts_and_balances_are_bounded() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    let big = json!({"op": "topup", "user": "rich", "amount": 1_000_000_000_000i64}).to_string();
    // 2^53 - 1 holds 9007 top-ups of 10^12 (plus the grant), not 9008.
    let mut last = json!(null);
    for _ in 0..(9008 / 16) {
        conn.send(format!("{big}\n").repeat(16).as_bytes());
        for _ in 0..16 {
            last = conn.read_reply().unwrap();
        }
    }
    assert_error(&last, "invalid_argument");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum"),
        "{last}"
    );
    assert_error(
        &conn.request(r#"{"op":"topup","user":"rich","amount":1000000000001}"#),
        "invalid_argument",
    );
    assert_error(
        &conn.request(r#"{"op":"topup","user":"rich","amount":0}"#),
        "invalid_argument",
    );
}

#[test]
fn a_deduction_for_a_user_never_seen_is_not_found_and_opens_nothing() {
    let daemon = Daemon::start();
    let refused = daemon.memes(&["topup", "--user", "ghost", "--amount", "-5"]);
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(refused.stderr.contains("ghost"), "{}", refused.stderr);
    assert_eq!(
        daemon.balance("ghost"),
        None,
        "no account, no welcome grant"
    );
    let status = daemon.memes_json(&["status"]);
    assert_eq!(
        (status["accounts"].as_u64(), status["entries"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn an_entitlement_that_already_ended_is_refused() {
    let daemon = Daemon::start();
    let refused = daemon.memes(&[
        "entitle",
        "--user",
        "u",
        "--tier",
        "premium",
        "--until",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("in the past"), "{}", refused.stderr);
    assert_eq!(daemon.balance("u"), None, "nothing was opened");
    let future = daemon.memes_json(&[
        "entitle",
        "--user",
        "u",
        "--tier",
        "premium",
        "--until",
        "2099-01-01T00:00:00Z",
    ]);
    assert_eq!(future["until"], "2099-01-01T00:00:00Z");
}

#[test]
fn user_ids_that_only_look_alike_are_refused_and_open_nothing() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1"]);
    let mut conn = daemon.connect();
    for id in [" u1", "u1 ", "\u{200B}u1", "u1\u{202E}", "Zoe\u{0308}"] {
        let reply = conn.request(&json!({"op": "get", "user": id}).to_string());
        assert_error(&reply, "invalid_argument");
    }
    let nfd = daemon.memes(&["get", "--user", "Zoe\u{0308}"]);
    assert_eq!(nfd.code, 2, "{}", nfd.stderr);
    assert!(nfd.stderr.contains("NFC"), "{}", nfd.stderr);
    let status = daemon.memes_json(&["status"]);
    assert_eq!(status["accounts"], 1, "only u1 has an account");
    assert_eq!(daemon.balance("u1"), Some(149));
}

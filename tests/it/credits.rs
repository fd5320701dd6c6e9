//! Credits (issue 26): top-up terms and `lots` as README documents them on the wire, and the
//! welcome grant's expiry (`memesd --welcome-expires`), on the store `MEMES_TEST_STORE` names.

use crate::harness::Daemon;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// An RFC 3339 time in a reply, as an instant.
fn instant(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// README's lines for a top-up with terms and for `lots`: the replies exactly, but for the
/// times (which must be RFC 3339 in UTC, the expiry 30 days after the top-up).
#[test]
fn the_documented_lines_for_top_up_terms_and_lots_answer_as_documented() {
    let daemon = Daemon::start();
    let mut conn = daemon.connect();
    conn.request(r#"{"op":"get","user":"u1"}"#);
    let topup = conn.request(
        r#"{"id":15,"op":"topup","user":"u1","amount":30,"expires_in":"30d","priority":10,"promo":true}"#,
    );
    assert_eq!(
        topup,
        json!({"id": 15, "ok": true, "data": {"user_id": "u1", "amount": 30, "new_balance": 179}})
    );
    let mut lots = conn.request(r#"{"id":16,"op":"lots","user":"u1"}"#);
    let listed = lots["data"]["lots"].as_array_mut().expect("a list of lots");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let mut times = Vec::new();
    for lot in listed.iter_mut() {
        let lot = lot.as_object_mut().unwrap();
        let effective = lot.remove("effective_at").expect("effective_at");
        assert!(effective.as_str().unwrap().ends_with('Z'), "{effective}");
        times.push((instant(&effective), lot.remove("expires_at")));
        assert!(lot["id"].as_u64().is_some(), "{lot:?}");
        lot.remove("id");
    }
    assert_eq!(
        lots,
        json!({"id": 16, "ok": true, "data": {"user_id": "u1", "lots": [
            {"amount": 30, "remaining": 30, "priority": 10, "kind": "promo"},
            {"amount": 150, "remaining": 149, "priority": 50, "kind": "promo"},
        ], "holds": []}}),
        "burn order: the priority 10 lot first; the welcome grant, charged once, never expires"
    );
    let (effective, expires) = &times[0];
    let expires = instant(expires.as_ref().expect("the top-up's lot expires"));
    // `expires_in` counts from when memesd took the request; the lot is dated when its
    // change is decided, a few milliseconds later under load.
    let lived = expires.duration_since(*effective);
    let thirty_days = jiff::SignedDuration::from_hours(30 * 24);
    assert!(
        lived <= thirty_days && lived > thirty_days - jiff::SignedDuration::from_secs(1),
        "the lot expires 30 days after the request, not {lived:?} after it is dated"
    );
    assert_eq!(times[1].1, None, "the welcome grant has no expires_at");
}

/// `memesd --welcome-expires`: what is left of the welcome grant leaves the balance at its
/// expiry, whether or not anything runs then; without the expirer (`--expire-every off`;
/// tests/it/expirer.rs has it on) the account's next change records it as an `expire` entry
/// dated at the expiry, and the audit passes.
#[test]
fn the_welcome_grant_expires_when_memesd_says() {
    let daemon = Daemon::start_with(&["--welcome-expires", "2s", "--expire-every", "off"]);
    daemon.memes(&["get", "--user", "w1"]);
    assert_eq!(daemon.balance("w1"), Some(149));
    let lots = daemon.memes_json(&["lots", "--user", "w1"]);
    let lot = &lots["lots"][0];
    assert_eq!(
        (lot["remaining"].clone(), lot["kind"].clone()),
        (json!(149), json!("promo"))
    );
    let expires_at = instant(&lot["expires_at"]);
    assert_eq!(
        expires_at.duration_since(instant(&lot["effective_at"])),
        jiff::SignedDuration::from_secs(2)
    );

    // Nothing runs at the expiry: a read after it no longer counts the grant.
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.balance("w1") != Some(0) {
        assert!(Instant::now() < deadline, "the welcome grant never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(jiff::Timestamp::now() >= expires_at);
    let empty = daemon.memes_json(&["lots", "--user", "w1"]);
    assert_eq!(empty["lots"], json!([]), "{empty}");
    let refused = daemon.memes(&["get", "--user", "w1"]);
    assert_ne!(
        refused.code, 0,
        "a charge after the expiry: {}",
        refused.stdout
    );
    assert_eq!(daemon.balance("w1"), Some(0));

    // The next change records the expiry first, dated at it.
    daemon.memes(&["topup", "--user", "w1", "--amount", "10"]);
    assert_eq!(daemon.balance("w1"), Some(10));
    let history = daemon.memes_json(&["history", "--user", "w1"]);
    let kinds: Vec<(&str, i64, u64)> = history
        .as_array()
        .expect("a list of entries")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["delta"].as_i64().unwrap(),
                e["balance"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("welcome", 150, 150),
            ("charge", -1, 149),
            ("expire", -149, 0),
            ("topup", 10, 10)
        ],
        "{history}"
    );
    let expired = &history[2];
    assert_eq!(instant(&expired["time"]), expires_at, "{expired}");
    let audit = daemon.memes(&["audit"]);
    assert_eq!(audit.code, 0, "{}{}", audit.stdout, audit.stderr);

    // A new account opened now gets a fresh grant with its own expiry.
    assert_eq!(daemon.balance("w1"), Some(10));
    daemon.memes(&["get", "--user", "w2"]);
    assert_eq!(daemon.balance("w2"), Some(149));
}

/// `balance --at` (the socket's `at`, `GET /v1/users/{user}/balance?at=`): at each entry's
/// time the balance is the history's running balance there, with the lots spendable then;
/// before the first entry there is no account (and asking opens none); a lot is counted until
/// its expiry and not at it; after now, what expiry alone leaves; a time that is not RFC 3339
/// is refused. The three ways answer alike.
#[test]
fn the_balance_at_any_time_is_the_history_then() {
    let daemon = Daemon::start_http(&[]);
    let api = crate::http::Api::new(&daemon);
    daemon.memes(&["get", "--user", "p1"]);
    daemon.memes(&[
        "topup",
        "--user",
        "p1",
        "--amount",
        "40",
        "--expires-in",
        "1s",
        "--priority",
        "10",
    ]);
    daemon.memes(&["get", "--user", "p1"]);
    std::thread::sleep(Duration::from_millis(1_100));
    daemon.memes(&["topup", "--user", "p1", "--amount", "-20"]);
    let history = daemon.memes_json(&["history", "--user", "p1"]);
    let entries = history.as_array().expect("a list of entries");
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["welcome", "charge", "topup", "charge", "expire", "deduct"],
        "{history}"
    );
    let ms = |e: &Value| instant(&e["time"]).as_millisecond();
    let running = |t: i64| {
        entries
            .iter()
            .rfind(|e| ms(e) <= t)
            .map(|e| e["balance"].as_u64().unwrap())
    };
    let mut conn = daemon.connect();
    for entry in entries {
        let t = ms(entry);
        for t in [t - 1, t] {
            let at = jiff::Timestamp::from_millisecond(t).unwrap().to_string();
            let cli = daemon.memes(&["--json", "balance", "--user", "p1", "--at", &at]);
            let socket =
                conn.request(&json!({"op": "balance", "user": "p1", "at": at}).to_string());
            let http = api.get(&format!("/v1/users/p1/balance?at={at}"), Some("p1"));
            match running(t) {
                Some(balance) => {
                    assert_eq!(cli.code, 0, "{}", cli.stderr);
                    let data = cli.json();
                    assert_eq!(data["balance"], balance, "at {at}: {data}");
                    assert_eq!(data["at"], json!(at), "{data}");
                    let lots: u64 = data["lots"]
                        .as_array()
                        .expect("the lots then")
                        .iter()
                        .map(|lot| lot["remaining"].as_u64().unwrap())
                        .sum();
                    assert_eq!(lots, balance, "{data}");
                    assert_eq!(socket["data"], data, "the socket answers alike");
                    assert_eq!(http.ok(), data, "HTTP answers alike");
                }
                None => {
                    assert_eq!(
                        cli.code, 5,
                        "no account before the first entry: {}",
                        cli.stdout
                    );
                    crate::harness::assert_error(&socket, "not_found");
                    http.problem(404, "not_found");
                }
            }
        }
    }
    // The top-up's lot: counted the instant before its expiry, gone at it.
    let topup = &entries[2];
    let lot = topup["lot"].as_u64().expect("the lot it opened");
    let expired = &entries[4];
    let expiry = instant(&expired["time"]);
    let lots_at = |t: jiff::Timestamp| {
        let data = daemon.memes_json(&["balance", "--user", "p1", "--at", &t.to_string()]);
        data["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let just_before = expiry - jiff::SignedDuration::from_millis(1);
    assert!(lots_at(just_before).contains(&lot));
    assert!(!lots_at(expiry).contains(&lot));

    // After now: the projected view, said so.
    let ahead = daemon.memes_json(&["balance", "--user", "p1", "--at", "2999-01-01T00:00:00Z"]);
    assert_eq!(ahead["balance"], daemon.balance("p1").unwrap(), "{ahead}");
    assert_eq!(ahead["projected"], true, "{ahead}");
    let table = daemon.memes(&["balance", "--user", "p1", "--at", "2999-01-01T00:00:00Z"]);
    assert!(table.stdout.contains("projected"), "{}", table.stdout);

    // Refused and read-only.
    let bad = conn.request(r#"{"op":"balance","user":"p1","at":"yesterday"}"#);
    crate::harness::assert_error(&bad, "invalid_argument");
    api.get("/v1/users/p1/balance?at=yesterday", Some("p1"))
        .problem(400, "invalid_argument");
    api.get("/v1/users/p1/balance?at=", Some("p1"))
        .problem(400, "invalid_argument");
    let nobody = daemon.memes(&[
        "balance",
        "--user",
        "nobody",
        "--at",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!(nobody.code, 5, "{}", nobody.stdout);
    assert_eq!(daemon.balance("nobody"), None, "asking opened no account");
    let audit = daemon.memes(&["audit"]);
    assert_eq!(audit.code, 0, "{}{}", audit.stdout, audit.stderr);
}

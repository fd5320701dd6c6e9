//! `memes --url`: every subcommand against a memesd's HTTP API, compared with the same
//! commands on the socket of a twin daemon (same start, same requests): the same output and
//! the same exit codes. And `memes admin-key new`.

use super::{AdminKey, Api};
use crate::harness::{Daemon, Run, run_memes};
use serde_json::Value;

/// The socket twin and the HTTP twin, and how to run `memes` against each.
struct Twins {
    socket: Daemon,
    http: Daemon,
    url: String,
    admin: AdminKey,
}

impl Twins {
    fn start() -> Twins {
        let admin = AdminKey::new("ops");
        let http = Daemon::start_http(&["--admin-keys", admin.path()]);
        Twins {
            // The same keys file on both, so that a reload reports the same keys.
            socket: Daemon::start_with(&["--admin-keys", admin.path()]),
            url: http.http_url(),
            http,
            admin,
        }
    }

    /// The command on both; asserts the same exit code; returns (socket, http).
    #[track_caller]
    fn both(&self, args: &[&str]) -> (Run, Run) {
        let over_socket = self.socket.memes(args);
        let mut remote = vec!["--url", self.url.as_str()];
        remote.extend_from_slice(args);
        let over_http = run_memes(None, &remote, &[("MEMES_TOKEN", &self.admin.key)]);
        assert_eq!(
            over_socket.code,
            over_http.code,
            "memes {args:?}: exit {} on the socket, {} over HTTP\nsocket: {}{}\nhttp: {}{}",
            over_socket.code,
            over_http.code,
            over_socket.stdout,
            over_socket.stderr,
            over_http.stdout,
            over_http.stderr
        );
        (over_socket, over_http)
    }

    /// The command on both, with the same stdout (after `normalise`) and stderr.
    #[track_caller]
    fn same(&self, args: &[&str], normalise: fn(&mut Value)) -> i32 {
        let (socket, http) = self.both(args);
        if args.contains(&"--json") {
            let (mut a, mut b) = (socket.json(), http.json());
            normalise(&mut a);
            normalise(&mut b);
            assert_eq!(a, b, "memes {args:?}");
        } else {
            assert_eq!(socket.stdout, http.stdout, "memes {args:?}");
        }
        assert_eq!(socket.stderr, http.stderr, "memes {args:?}");
        socket.code
    }
}

fn as_is(_: &mut Value) {}

/// Ledger times differ between the twins, and the HTTP twin's top-ups say which admin key
/// made them.
fn history(value: &mut Value) {
    for entry in value.as_array_mut().into_iter().flatten() {
        entry["time"] = Value::Null;
        if let Some(reason) = entry["reason"].as_str() {
            let reason = reason.trim_end_matches(" (by admin key ops)").to_string();
            if reason == "by admin key ops" {
                entry.as_object_mut().unwrap().remove("reason");
            } else {
                entry["reason"] = reason.into();
            }
        }
    }
}

fn status(value: &mut Value) {
    value["uptime_secs"] = Value::Null;
}

fn generated(value: &mut Value) {
    if value.get("generated").is_some() {
        value["generated"]["path"] = Value::Null;
    }
}

#[test]
fn every_subcommand_over_http_is_the_same_as_on_the_socket() {
    let twins = Twins::start();
    let json = |args: &[&'static str]| {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        all
    };
    // Human output and --json, success and refusal, for each subcommand.
    for args in [
        vec!["get", "--user", "u1", "--query", "cats"],
        vec![
            "get", "--user", "u1", "--lat", "40", "--long", "-73", "--count", "2",
        ],
        vec!["get", "--user", "u1", "--lon", "2.35", "--lat", "48.85"],
        vec!["get", "--user", "u1", "--query", "qqqzzzxxyy"],
        vec![
            "topup",
            "--user",
            "u1",
            "--amount",
            "50",
            "--reason",
            "gift",
            "--idempotency-key",
            "k1",
        ],
        vec![
            "topup",
            "--user",
            "u1",
            "--amount",
            "50",
            "--reason",
            "gift",
            "--idempotency-key",
            "k1",
        ],
        vec![
            "topup",
            "--user",
            "u1",
            "--amount",
            "51",
            "--idempotency-key",
            "k1",
        ],
        vec!["topup", "--user", "u1", "--amount", "-100000"],
        vec!["topup", "--user", "u1", "--amount", "-3"],
        vec!["topup", "--user", "ghost", "--amount", "-3"],
        vec!["balance", "--user", "u1"],
        vec!["balance", "--user", "ghost"],
        vec!["search", "grumpy cat", "--limit", "3"],
        vec!["search", "zzzzqqqq"],
        vec!["similar", "this-is-fine", "--limit", "3"],
        vec!["similar", "no-such-meme"],
        vec![
            "entitle",
            "--user",
            "u1",
            "--tier",
            "premium",
            "--until",
            "2099-01-31T00:00:00Z",
        ],
        vec![
            "entitle",
            "--user",
            "u1",
            "--tier",
            "premium",
            "--until",
            "2001-01-31T00:00:00Z",
        ],
        vec![
            "get",
            "--user",
            "u1",
            "--generate",
            "--query",
            "monday meeting",
        ],
        vec!["get", "--user", "u1", "--count", "11"],
        vec!["get", "--user", " u1"],
        vec!["reload"],
    ] {
        if args.contains(&"--generate") {
            // Its human output names the image where the reader can get it: a path on the
            // socket's host, a URL over HTTP (the daemon's paths mean nothing to a remote CLI).
            let (socket, http) = twins.both(&args);
            assert!(socket.stdout.contains("/generated/"), "{}", socket.stdout);
            assert!(
                http.stdout.contains("http://") && http.stdout.contains("/v1/images/"),
                "{}",
                http.stdout
            );
            assert!(!http.stdout.contains("/generated/"), "{}", http.stdout);
        } else {
            twins.same(&args, as_is);
        }
        twins.same(&json(&args), as_is_or_generated(&args));
    }
    for code in [
        twins.same(&json(&["history", "--user", "u1"]), history),
        twins.same(&json(&["history", "--user", "u1", "--limit", "3"]), history),
        twins.same(&json(&["status"]), status),
        twins.same(&json(&["audit"]), as_is),
    ] {
        assert_eq!(code, 0);
    }
    let (socket, http) = twins.both(&["history", "--user", "u1"]);
    assert_eq!(socket.stdout.lines().count(), http.stdout.lines().count());
    let (socket, http) = twins.both(&["status"]);
    assert_eq!(socket.code, 0, "{}", socket.stderr);
    assert!(http.stdout.contains("357"), "{}", http.stdout);

    // A generated image written to a file: the same bytes.
    let dir = crate::harness::short_tempdir();
    let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
    let socket = twins.socket.memes(&[
        "get",
        "--user",
        "u2",
        "--query",
        "x",
        "--generate",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert_eq!(socket.code, 6, "u2 is not premium: {}", socket.stderr);
    twins.both(&["entitle", "--user", "u2", "--tier", "premium"]);
    let socket = twins.socket.memes(&[
        "get",
        "--user",
        "u2",
        "--query",
        "x",
        "--generate",
        "--out",
        a.to_str().unwrap(),
    ]);
    let http = run_memes(
        None,
        &[
            "--url",
            &twins.url,
            "get",
            "--user",
            "u2",
            "--query",
            "x",
            "--generate",
            "--out",
            b.to_str().unwrap(),
        ],
        &[("MEMES_TOKEN", &twins.admin.key)],
    );
    assert_eq!(
        (socket.code, http.code),
        (0, 0),
        "{}{}",
        socket.stderr,
        http.stderr
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // Both ledgers went through the same changes.
    assert_eq!(twins.socket.balance("u1"), twins.http.balance("u1"));
    assert_eq!(twins.socket.balance("u2"), twins.http.balance("u2"));
}

/// `get --generate` replies name the image's path on the daemon's host, which differs.
fn as_is_or_generated(args: &[&str]) -> fn(&mut Value) {
    if args.contains(&"--generate") {
        generated
    } else {
        as_is
    }
}

#[test]
fn credentials_come_from_memes_token_or_the_user_and_their_refusals_say_what_to_do() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let url = daemon.http_url();
    let memes = |args: &[&str], token: Option<&str>| {
        let mut all = vec!["--url", url.as_str()];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = token.map(|t| vec![("MEMES_TOKEN", t)]).unwrap_or_default();
        run_memes(None, &all, &env)
    };
    // Development mode: without MEMES_TOKEN the user id is the bearer.
    let got = memes(&["--json", "get", "--user", "u1"], None);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.json()["balance"], 149);
    assert_eq!(
        memes(&["--json", "balance", "--user", "u1"], None).json()["balance"],
        149
    );
    // Admin operations need a key: 401 is exit 6, with a hint.
    let refused = memes(&["topup", "--user", "u1", "--amount", "5"], None);
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    assert!(refused.stderr.contains("MEMES_TOKEN"), "{}", refused.stderr);
    let refused = memes(&["--json", "audit"], Some("u1"));
    assert_eq!(refused.code, 6);
    assert_eq!(refused.json()["error"]["code"], "not_allowed");
    let wrong = memes(&["audit"], Some("memes_admin_0000"));
    assert_eq!(wrong.code, 6, "{}", wrong.stderr);
    assert_eq!(memes(&["audit"], Some(&admin.key)).code, 0);
    // Another user's balance is theirs only.
    let other = memes(&["balance", "--user", "u1"], Some("u2"));
    assert_eq!(other.code, 6, "{}", other.stderr);

    // MEMES_URL works like --url; an unreachable or malformed URL is exit 3 or 2.
    let env = [("MEMES_URL", url.as_str())];
    assert_eq!(run_memes(None, &["balance", "--user", "u1"], &env).code, 0);
    let gone = run_memes(None, &["--url", "http://127.0.0.1:1", "status"], &[]);
    assert_eq!(gone.code, 3, "{}", gone.stderr);
    assert!(gone.stderr.contains("127.0.0.1:1"), "{}", gone.stderr);
    let tls = run_memes(None, &["--url", "https://example.com", "status"], &[]);
    assert_eq!(tls.code, 2, "{}", tls.stderr);
    assert_eq!(daemon.balance("u1"), Some(149));
}

#[test]
fn a_jwt_in_memes_token_is_the_users_credential() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let dir = crate::harness::short_tempdir();
    let key = dir.path().join("claims");
    std::fs::write(&key, "cli-claims-secret-0123456789").unwrap();
    let daemon = Daemon::start_http(&["--claims-key", key.to_str().unwrap()]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "u1", "tier": "premium", "exp": now + 600}),
        &EncodingKey::from_secret(b"cli-claims-secret-0123456789"),
    )
    .unwrap();
    let url = daemon.http_url();
    let env = [("MEMES_URL", url.as_str()), ("MEMES_TOKEN", token.as_str())];
    let made = run_memes(
        None,
        &[
            "--json",
            "get",
            "--user",
            "u1",
            "--generate",
            "--query",
            "x",
        ],
        &env,
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(
        made.json()["charged"],
        5,
        "the token's tier makes it premium"
    );
    let mine = run_memes(None, &["--json", "history", "--user", "u1"], &env);
    // The welcome grant, then the price held before the render and captured after it.
    assert_eq!(mine.json().as_array().unwrap().len(), 3);
    let theirs = run_memes(None, &["get", "--user", "u2"], &env);
    assert_eq!(theirs.code, 6, "{}", theirs.stderr);
    // `get --token` is the credential when MEMES_TOKEN is not set.
    let env = [("MEMES_URL", url.as_str())];
    let with_token = run_memes(
        None,
        &["--json", "get", "--user", "u1", "--token", &token],
        &env,
    );
    assert_eq!(with_token.code, 0, "{}", with_token.stderr);
    let without = run_memes(None, &["get", "--user", "u1"], &env);
    assert_eq!(
        without.code, 6,
        "a user id is no credential here: {}",
        without.stderr
    );
}

#[test]
fn admin_key_new_prints_a_key_and_the_line_that_lets_memesd_take_it() {
    let made = run_memes(None, &["--json", "admin-key", "new", "billing-bot"], &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let made = made.json();
    let (key, line) = (
        made["key"].as_str().unwrap(),
        made["line"].as_str().unwrap(),
    );
    assert_eq!(made["name"], "billing-bot");
    assert!(key.starts_with("memes_admin_") && key.len() == "memes_admin_".len() + 64);
    assert!(line.starts_with("billing-bot ") && !line.contains(key));
    let again = run_memes(None, &["--json", "admin-key", "new", "billing-bot"], &[]).json();
    assert_ne!(again["key"], made["key"], "a fresh random key each time");

    // The line, in a keys file, makes memesd take the key, and history names it.
    let dir = crate::harness::short_tempdir();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("{line}\n")).unwrap();
    let daemon = Daemon::start_http(&["--admin-keys", keys.to_str().unwrap()]);
    let api = Api::new(&daemon);
    api.post("/v1/users/u1/topups", Some(key), r#"{"amount":5}"#)
        .ok();
    let history = api.get("/v1/users/u1/history", Some(key)).ok();
    assert_eq!(history["entries"][1]["reason"], "by admin key billing-bot");

    let human = run_memes(None, &["admin-key", "new", "ops"], &[]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("memes_admin_") && human.stdout.contains("ops "));
    assert!(human.stderr.contains("--admin-keys"), "{}", human.stderr);
    for bad in ["", "two words", "#x"] {
        let refused = run_memes(None, &["admin-key", "new", bad], &[]);
        assert_eq!(refused.code, 2, "{bad:?}: {}", refused.stderr);
    }
}

/// Top-ups with lot terms and `memes lots`, alike on the socket and over HTTP; bad terms are
/// refused as invalid arguments and change nothing.
#[test]
fn lots_with_their_terms_are_listed_alike_on_both_fronts() {
    let twins = Twins::start();
    let (socket, http) = twins.both(&[
        "--json",
        "topup",
        "--user",
        "lotty",
        "--amount",
        "30",
        "--expires-in",
        "30d",
        "--priority",
        "10",
        "--promo",
    ]);
    assert_eq!(socket.code, 0, "{}", socket.stderr);
    assert_eq!(socket.json()["new_balance"], 180);
    assert_eq!(http.json()["new_balance"], 180);
    twins.both(&[
        "topup",
        "--user",
        "lotty",
        "--amount",
        "5",
        "--expires-at",
        "2099-01-31T00:00:00Z",
    ]);
    let listed = |run: &Run| -> Vec<(u64, u64, u64, String, bool)> {
        run.json()["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|lot| {
                (
                    lot["remaining"].as_u64().unwrap(),
                    lot["amount"].as_u64().unwrap(),
                    lot["priority"].as_u64().unwrap(),
                    lot["kind"].as_str().unwrap().to_string(),
                    lot["expires_at"].is_string(),
                )
            })
            .collect()
    };
    let (socket, http) = twins.both(&["--json", "lots", "--user", "lotty"]);
    // Burn order: priority 10 first, then the expiring paid lot, then the welcome grant.
    let expected = vec![
        (30, 30, 10, "promo".to_string(), true),
        (5, 5, 50, "paid".to_string(), true),
        (150, 150, 50, "promo".to_string(), false),
    ];
    assert_eq!(listed(&socket), expected);
    assert_eq!(listed(&http), expected);
    let expiry = socket.json()["lots"][1]["expires_at"].clone();
    assert_eq!(expiry, "2099-01-31T00:00:00Z");
    // A deduction takes from the first lot in burn order.
    twins.both(&["topup", "--user", "lotty", "--amount", "-12"]);
    let (socket, _) = twins.both(&["--json", "lots", "--user", "lotty"]);
    assert_eq!(listed(&socket)[0].0, 18);
    // For people: a table in burn order (the twins' times differ by milliseconds).
    let (socket, http) = twins.both(&["lots", "--user", "lotty"]);
    for run in [&socket, &http] {
        let first = run.stdout.lines().nth(3).unwrap_or_default();
        assert!(
            first.contains("18 tokens") && first.contains("promo"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("2099-01-31T00:00:00Z"),
            "{}",
            run.stdout
        );
    }

    // Bad terms: refused as invalid arguments (exit 2 is clap's usage error), nothing changed.
    for (bad, code) in [
        (
            &[
                "--expires-in",
                "30d",
                "--expires-at",
                "2099-01-31T00:00:00Z",
            ][..],
            2,
        ),
        (&["--expires-at", "2001-01-01T00:00:00Z"][..], 0),
        (&["--priority", "101"][..], 0),
        (&["--expires-in", "soon"][..], 0),
    ] {
        let mut args = vec!["topup", "--user", "lotty", "--amount", "7"];
        args.extend_from_slice(bad);
        let (socket, http) = twins.both(&args);
        assert_ne!(socket.code, 0, "{bad:?} accepted");
        if code == 0 {
            for run in [&socket, &http] {
                assert!(
                    run.stderr.contains("memes: error:"),
                    "{bad:?}: {}",
                    run.stderr
                );
            }
        } else {
            assert_eq!(socket.code, code, "{bad:?}: {}", socket.stderr);
        }
    }
    let (socket, http) = twins.both(&["--json", "lots", "--user", "lotty"]);
    assert_eq!(listed(&socket)[0].0, 18);
    assert_eq!(listed(&socket), listed(&http));
    assert_eq!(socket.json()["lots"].as_array().unwrap().len(), 3);
    assert_eq!(twins.socket.balance("lotty"), Some(173));
}

/// `hold`, `capture`, `void` and `refund` over HTTP (the hold or the entry in the path; the
/// amount and the user in the body; the key as a header) answer as on the socket: success,
/// replay and refusal alike, and leave the same balances.
#[test]
fn holds_and_refunds_over_http_are_the_same_as_on_the_socket() {
    fn expiry(value: &mut Value) {
        value.as_object_mut().unwrap().remove("expires_at");
    }
    let twins = Twins::start();
    twins.same(&["topup", "--user", "u7", "--amount", "20"], as_is);
    twins.same(&["get", "--user", "u7", "--query", "cats"], as_is);
    let hold = |twins: &Twins| {
        let args = [
            "--json", "hold", "--user", "u7", "--amount", "5", "--ttl", "5m",
        ];
        twins.same(&args, expiry);
        twins
            .socket
            .memes(&["--json", "lots", "--user", "u7"])
            .json()["holds"][0]["hold"]
            .as_u64()
            .expect("the hold is open")
            .to_string()
    };
    let captured = hold(&twins);
    let capture = ["capture", &captured, "--amount", "3", "--user", "u7"];
    assert_eq!(twins.same(&capture, as_is), 0);
    assert_ne!(twins.same(&capture, as_is), 0, "a hold ends once");
    let voided = hold(&twins);
    assert_eq!(twins.same(&["void", &voided, "--user", "u7"], as_is), 0);
    assert_ne!(twins.same(&["void", &voided], as_is), 0, "a hold ends once");

    let entries = twins
        .socket
        .memes(&["--json", "history", "--user", "u7"])
        .json();
    let charge = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["kind"] == "charge")
        .expect("the get's charge")["seq"]
        .to_string();
    let refund = [
        "refund", "--entry", &charge, "--amount", "1", "--user", "u7", "--key", "r1",
    ];
    assert_eq!(twins.same(&refund, as_is), 0);
    assert_eq!(twins.same(&refund, as_is), 0, "replayed");
    assert_ne!(
        twins.same(&["refund", "--entry", &charge], as_is),
        0,
        "nothing left"
    );
    assert_eq!(twins.socket.balance("u7"), twins.http.balance("u7"));
}

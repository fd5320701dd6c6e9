//! Who a request comes from: development-mode bearers (user ids), signed JWTs through the
//! claims cache, admin keys, and signed payment webhooks.

use super::{AdminKey, Api};
use crate::harness::{Daemon, short_tempdir};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use sha2::Sha256;

const CLAIMS_SECRET: &str = "http-claims-secret-0123456789";
const WEBHOOK_SECRET: &str = "whsec_http_test_0123456789";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(CLAIMS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A file holding `contents`, kept as long as the returned directory.
fn secret_file(contents: &str) -> (tempfile::TempDir, String) {
    let dir = short_tempdir();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{contents}\n")).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn development_mode_is_refused_beyond_loopback_unless_asked_for() {
    let daemon = Daemon::start();
    let dir = short_tempdir();
    let output = daemon
        .command_on(&dir.path().join("s.sock"), &dir.path().join("data"))
        .args(["--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for why in [
        "0.0.0.0:0",
        "--claims-key",
        "any user",
        "--http-insecure-user-bearer",
    ] {
        assert!(stderr.contains(why), "memesd says why ({why}): {stderr}");
    }
    assert!(!dir.path().join("s.sock").exists(), "it never served");

    // Asked for explicitly, or with a claims key, it starts.
    let insecure = Daemon::start_with(&["--http", "0.0.0.0:0", "--http-insecure-user-bearer"]);
    let url = insecure.http_url().replace("0.0.0.0", "127.0.0.1");
    assert_eq!(Api::at(url).get("/memes", Some("u1")).ok()["balance"], 149);
    let (_key_dir, key) = secret_file(CLAIMS_SECRET);
    let verified = Daemon::start_with(&["--http", "0.0.0.0:0", "--claims-key", &key]);
    let url = verified.http_url().replace("0.0.0.0", "127.0.0.1");
    Api::at(url)
        .get("/memes", Some("u1"))
        .problem(401, "unauthorized");
}

#[test]
fn development_mode_bearers_are_user_ids_checked_like_the_socket_checks_them() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    // Ids beyond ASCII work (the header carries UTF-8); look-alikes are refused.
    let (status, meme) = api.get_as("/memes", "Zo\u{00EB}".as_bytes());
    assert_eq!((status, &meme["balance"]), (200, &json!(149)), "{meme}");
    assert_eq!(daemon.balance("Zo\u{00EB}"), Some(149));
    for look_alike in ["Zoe\u{0308}", "u\u{200B}1", "u1\u{202E}"] {
        let (status, problem) = api.get_as("/memes", look_alike.as_bytes());
        assert_eq!(
            (status, &problem["code"]),
            (401, &json!("unauthorized")),
            "{look_alike:?}"
        );
    }
    let (status, _) = api.get_as("/memes", b"\xc3\x28");
    assert_eq!(status, 401, "not UTF-8");
    for bad in [
        "Basic dTE6cHc=".to_string(),
        "Bearer".to_string(),
        "u1".to_string(),
        format!("Bearer {}", "x".repeat(129)),
    ] {
        api.send("GET", "/memes", None, &[("authorization", &bad)], None)
            .problem(401, "unauthorized");
    }
    assert_eq!(
        daemon.connect().request(r#"{"op":"status"}"#)["data"]["accounts"],
        1
    );
}

#[test]
fn jwt_bearers_name_the_user_and_their_tier_and_are_checked() {
    let (_dir, key) = secret_file(CLAIMS_SECRET);
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--claims-key", &key, "--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    let u1 = jwt(json!({"sub": "u1", "exp": now() + 600}));
    // The same token again and again: verified once, then from the claims cache.
    for balance in [149, 148, 147] {
        assert_eq!(
            api.get("/memes?query=cats", Some(&u1)).ok()["balance"],
            balance
        );
    }
    assert_eq!(daemon.balance("u1"), Some(147));
    assert_eq!(
        api.get("/v1/users/u1/balance", Some(&u1)).ok()["balance"],
        147
    );
    api.get("/v1/users/u2/balance", Some(&u1))
        .problem(403, "not_allowed");
    api.post("/v1/users/u1/topups", Some(&u1), r#"{"amount":5}"#)
        .problem(403, "not_allowed");

    // With a claims key, a bare user id is no credential.
    let refused = api.get("/memes", Some("u1")).problem(401, "unauthorized");
    assert!(
        refused["detail"].as_str().unwrap().contains("malformed"),
        "{refused}"
    );
    let expired = jwt(json!({"sub": "u1", "exp": now() - 120}));
    let refused = api
        .get("/memes", Some(&expired))
        .problem(401, "unauthorized");
    assert!(
        refused["detail"].as_str().unwrap().contains("expired"),
        "{refused}"
    );
    let no_exp = jwt(json!({"sub": "u1"}));
    api.get("/memes", Some(&no_exp))
        .problem(401, "unauthorized");
    let early = jwt(json!({"sub": "u1", "exp": now() + 7200, "nbf": now() + 3600}));
    api.get("/memes", Some(&early)).problem(401, "unauthorized");
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u1", "exp": now() + 600}),
        &EncodingKey::from_secret(b"some-other-secret-entirely"),
    )
    .unwrap();
    let refused = api
        .get("/memes", Some(&forged))
        .problem(401, "unauthorized");
    assert!(
        refused["detail"].as_str().unwrap().contains("signature"),
        "{refused}"
    );
    let bad_sub = jwt(json!({"sub": " u1", "exp": now() + 600}));
    api.get("/memes", Some(&bad_sub))
        .problem(401, "unauthorized");
    assert_eq!(daemon.balance("u1"), Some(147), "refusals charge nothing");

    // The tier claim: premium generates, free does not (and is not charged).
    let free = api.post(
        "/v1/memes",
        Some(&u1),
        r#"{"generate":true,"query":"monday"}"#,
    );
    free.problem(403, "not_allowed");
    let premium = jwt(json!({"sub": "u1", "tier": "premium", "exp": now() + 600}));
    let made = api
        .post(
            "/v1/memes",
            Some(&premium),
            r#"{"generate":true,"query":"monday"}"#,
        )
        .ok();
    assert_eq!(
        (made["charged"].as_u64(), made["balance"].as_u64()),
        (Some(5), Some(142))
    );

    // Admin keys still work beside tokens.
    assert_eq!(
        api.post("/v1/users/u1/topups", Some(&admin.key), r#"{"amount":8}"#)
            .ok()["new_balance"],
        150
    );
}

#[test]
fn the_claims_leeway_is_30_seconds_and_set_by_flag_or_config_file() {
    let (dir, key) = secret_file(CLAIMS_SECRET);
    let expired_ago = |secs: i64| jwt(json!({"sub": "u1", "exp": now() - secs}));
    let serves = |daemon: &Daemon, token: &str| {
        let reply = Api::new(daemon).get("/memes", Some(token));
        match reply.status {
            200 => true,
            401 => {
                let problem = reply.problem(401, "unauthorized");
                assert!(
                    problem["detail"].as_str().unwrap().contains("expired"),
                    "{problem}"
                );
                false
            }
            other => panic!("status {other}"),
        }
    };

    let default = Daemon::start_http(&["--claims-key", &key]);
    assert!(serves(&default, &expired_ago(10)));
    assert!(!serves(&default, &expired_ago(90)));

    let strict = Daemon::start_http(&["--claims-key", &key, "--claims-leeway", "0"]);
    assert!(!serves(&strict, &expired_ago(10)));
    assert!(serves(
        &strict,
        &jwt(json!({"sub": "u1", "exp": now() + 60}))
    ));

    let config = dir.path().join("memesd.toml");
    std::fs::write(&config, "claims-leeway = \"2m\"\n").unwrap();
    let wide = Daemon::start_http(&["--claims-key", &key, "--config", config.to_str().unwrap()]);
    assert!(serves(&wide, &expired_ago(90)));
    assert!(!serves(&wide, &expired_ago(150)));
}

#[test]
fn an_ed25519_claims_key_verifies_eddsa_bearers() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let public = fixtures.join("ed25519-public.pem");
    let daemon = Daemon::start_http(&["--claims-key", public.to_str().unwrap()]);
    let api = Api::new(&daemon);
    let private = std::fs::read(fixtures.join("ed25519-private.pem")).unwrap();
    let signed = encode(
        &Header::new(Algorithm::EdDSA),
        &json!({"sub": "u9", "exp": now() + 600}),
        &EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(api.get("/memes", Some(&signed)).ok()["balance"], 149);
    let hs256 = jwt(json!({"sub": "u9", "exp": now() + 600}));
    api.get("/memes", Some(&hs256)).problem(401, "unauthorized");
}

#[test]
fn admin_keys_are_checked_by_hash_and_a_bad_keys_file_stops_memesd() {
    let ops = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", ops.path()]);
    let api = Api::new(&daemon);
    assert_eq!(
        api.post("/v1/users/u/topups", Some(&ops.key), r#"{"amount":5}"#)
            .ok()["new_balance"],
        155
    );
    let mut wrong = ops.key.clone();
    wrong.pop();
    wrong.push(if ops.key.ends_with('0') { '1' } else { '0' });
    for bearer in [
        wrong.as_str(),
        "memes_admin_",
        &ops.key[..ops.key.len() - 1],
    ] {
        api.post("/v1/users/u/topups", Some(bearer), r#"{"amount":5}"#)
            .problem(401, "unauthorized");
    }
    let text = std::fs::read_to_string(&ops.file).unwrap();
    assert!(
        !text.contains(&ops.key),
        "the file holds hashes, never keys"
    );

    let dir = short_tempdir();
    let bad = dir.path().join("keys");
    std::fs::write(&bad, "ops not-a-hash\n").unwrap();
    let output = std::process::Command::new(crate::harness::MEMESD)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--http", "127.0.0.1:0", "--admin-keys"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn a_reload_reads_the_admin_keys_again_revoking_and_adding_keys_at_once() {
    use nix::sys::signal::Signal;
    use std::time::{Duration, Instant};
    let ops = AdminKey::new("ops");
    let ops_line = std::fs::read_to_string(&ops.file).unwrap();
    let ops_line = ops_line.lines().find(|l| l.starts_with("ops ")).unwrap();
    let (new_key, new_line) = memes::fronts::http::auth::new_admin_key("ops-2");
    let write = |lines: &[&str]| std::fs::write(&ops.file, lines.join("\n") + "\n").unwrap();
    let daemon = Daemon::start_http(&["--admin-keys", ops.path()]);
    let api = Api::new(&daemon);
    // The admin's view of a balance: 200 for a key in service, 401 for any other.
    let admits = |key: &str| match api.get("/v1/users/u/balance", Some(key)).status {
        200 => true,
        401 => false,
        other => panic!("status {other}"),
    };
    let balance = || api.get("/v1/users/u/balance", Some("u")).ok()["balance"].clone();
    let topup = |key: &str| api.post("/v1/users/u/topups", Some(key), r#"{"amount":1}"#);
    // SIGHUP is acted on by another task: wait (bounded) for what it must change.
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    api.get("/memes", Some("u")).ok();
    assert_eq!(topup(&ops.key).ok()["new_balance"], 150);
    assert!(!admits(&new_key));

    // A key added to the file works after SIGHUP, without a restart.
    write(&[ops_line, &new_line]);
    daemon.signal(Signal::SIGHUP);
    until("the added key never worked", &|| admits(&new_key));
    assert_eq!(topup(&new_key).ok()["new_balance"], 151);
    assert!(admits(&ops.key));

    // A line removed, then POST /v1/reload: the removed key is refused from the next request.
    write(&[&new_line]);
    let reply = api
        .send("POST", "/v1/reload", Some(&new_key), &[], None)
        .ok();
    assert_eq!(reply["admin_keys"], 1, "{reply}");
    topup(&ops.key).problem(401, "unauthorized");
    assert!(!admits(&ops.key));
    assert_eq!(balance(), 151, "a revoked key changes nothing");

    // `memes reload` (the socket) reads it too.
    write(&[ops_line]);
    let reload = daemon.memes(&["reload"]);
    assert_eq!(reload.code, 0, "{}", reload.stderr);
    assert!(reload.stdout.contains("1 admin keys"), "{}", reload.stdout);
    assert!(admits(&ops.key));
    topup(&new_key).problem(401, "unauthorized");

    // And SIGHUP revokes as well.
    write(&[&new_line]);
    daemon.signal(Signal::SIGHUP);
    until("the removed key kept working", &|| !admits(&ops.key));
    assert!(admits(&new_key));

    // A malformed file keeps the keys in service, and every way of reloading says why.
    write(&[&new_line, "ops not-a-hash"]);
    let refused = api
        .send("POST", "/v1/reload", Some(&new_key), &[], None)
        .problem(400, "invalid_argument");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("admin keys") && detail.contains("line 2"),
        "{refused}"
    );
    let reload = daemon.memes(&["reload"]);
    assert_eq!(reload.code, 2, "{}", reload.stderr);
    assert!(reload.stderr.contains("line 2"), "{}", reload.stderr);
    daemon.signal(Signal::SIGHUP);
    until("SIGHUP's rejection was not logged", &|| {
        daemon.log().matches("reload rejected").count() >= 3
    });
    assert!(admits(&new_key), "the keys in service stay");
    assert!(!admits(&ops.key));
    assert_eq!(topup(&new_key).ok()["new_balance"], 152);
}

/// A `Memes-Signature` header for `body` at `t`.
fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[test]
fn signed_webhooks_top_up_once_and_anything_else_changes_nothing() {
    let (_dir, secret) = secret_file(WEBHOOK_SECRET);
    let daemon = Daemon::start_http(&["--webhook-secret", &secret]);
    let api = Api::new(&daemon);
    let hook = |signature: Option<&str>, body: &str| {
        let headers: Vec<(&str, &str)> = signature
            .map(|s| vec![("memes-signature", s)])
            .unwrap_or_default();
        api.send("POST", "/v1/webhooks/topup", None, &headers, Some(body))
    };
    let body = r#"{"id":"evt_1","user_id":"u1","amount":40}"#;
    let reply = hook(Some(&signature(WEBHOOK_SECRET, now(), body)), body);
    assert_eq!(
        reply.ok(),
        json!({"user_id": "u1", "amount": 40, "new_balance": 190, "welcome_grant": 150}),
        "the webhook's top-up opened u1's account: the grant is in the balance, and said so"
    );

    // The provider retries: a new timestamp and signature, the same event. Credited once.
    let retry = hook(Some(&signature(WEBHOOK_SECRET, now() - 5, body)), body);
    assert_eq!(retry.ok()["replayed"], true);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(daemon.balance("u1"), Some(190));
    let changed = r#"{"id":"evt_1","user_id":"u1","amount":400}"#;
    hook(Some(&signature(WEBHOOK_SECRET, now(), changed)), changed)
        .problem(409, "idempotency_conflict");

    // Bad, stale, future, missing or malformed signatures: 401, nothing changed.
    let other = r#"{"id":"evt_2","user_id":"u1","amount":1000}"#;
    let good = signature(WEBHOOK_SECRET, now(), other);
    for header in [
        Some(signature("whsec_some_other_secret", now(), other)),
        Some(signature(WEBHOOK_SECRET, now() - 301, other)),
        Some(signature(WEBHOOK_SECRET, now() + 600, other)),
        Some(signature(
            WEBHOOK_SECRET,
            now(),
            r#"{"id":"evt_2","user_id":"u1","amount":1}"#,
        )),
        Some(good.replace("v1=", "v0=")),
        Some(good.split(',').nth(1).unwrap().to_string()),
        Some(format!("t=x,{}", good.split(',').nth(1).unwrap())),
        Some(String::new()),
        None,
    ] {
        let refused = hook(header.as_deref(), other);
        refused.problem(401, "unauthorized");
    }
    let tampered = other.replace("1000", "1001");
    hook(Some(&good), &tampered).problem(401, "unauthorized");
    assert_eq!(daemon.balance("u1"), Some(190));

    // Signed but not an event: 400; a deduction for nobody: 404.
    let junk = "not json";
    hook(Some(&signature(WEBHOOK_SECRET, now(), junk)), junk).problem(400, "bad_request");
    let nobody = r#"{"id":"evt_3","user_id":"nobody","amount":-5}"#;
    hook(Some(&signature(WEBHOOK_SECRET, now(), nobody)), nobody).problem(404, "not_found");

    let history = daemon.memes_json(&["history", "--user", "u1"]);
    let topup = &history[1];
    assert_eq!(
        (topup["key"].as_str(), topup["reason"].as_str()),
        (Some("evt_1"), Some("webhook evt_1 (by payment webhook)")),
        "{history}"
    );
    assert_eq!(daemon.memes_json(&["audit"])["ok"], true);
}

#[test]
fn idempotency_keys_belong_to_the_caller_that_sent_them() {
    let (_dir, secret) = secret_file(WEBHOOK_SECRET);
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--webhook-secret", &secret, "--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    let get = |user: &str, key: &str| {
        api.send(
            "GET",
            "/memes?query=cats",
            Some(user),
            &[("idempotency-key", key)],
            None,
        )
    };
    // Mallory takes the event id a payment provider will send for a victim's payment.
    get("mallory", "evt_1001").ok();
    let body = r#"{"id":"evt_1001","user_id":"victim","amount":500}"#;
    let paid = api.send(
        "POST",
        "/v1/webhooks/topup",
        None,
        &[("memes-signature", &signature(WEBHOOK_SECRET, now(), body))],
        Some(body),
    );
    assert_eq!(
        paid.ok(),
        json!({"user_id": "victim", "amount": 500, "new_balance": 650, "welcome_grant": 150}),
        "the payment is credited"
    );
    // An admin's key of the same name is the admins' own.
    let topup = api.send(
        "POST",
        "/v1/users/victim/topups",
        Some(&admin.key),
        &[("idempotency-key", "evt_1001")],
        Some(r#"{"amount":5}"#),
    );
    assert_eq!(topup.ok()["new_balance"], 655);
    assert_eq!(topup.header("idempotent-replayed"), None);

    // Alice's key is not Bob's: neither sees a conflict, each is charged once.
    let alice = get("alice", "req-1").ok();
    let bob = get("bob", "req-1");
    assert_eq!(bob.header("idempotent-replayed"), None);
    assert_eq!(bob.ok()["balance"], 149);
    // Each caller's retry still replays its own reply, over the socket too.
    let again = get("alice", "req-1");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.ok()["id"], alice["id"]);
    let socket = daemon
        .connect()
        .request(r#"{"op":"get","user":"mallory","query":"cats","idempotency_key":"evt_1001"}"#);
    assert_eq!(socket["data"]["replayed"], true, "{socket}");
    assert_eq!(
        [
            daemon.balance("mallory"),
            daemon.balance("alice"),
            daemon.balance("bob"),
            daemon.balance("victim")
        ],
        [Some(149), Some(149), Some(149), Some(655)]
    );
    let history = daemon.memes_json(&["history", "--user", "victim"]);
    assert_eq!(history[1]["key"], "evt_1001", "{history}");
    assert_eq!(history[2]["key"], "evt_1001", "{history}");
    assert_eq!(daemon.memes_json(&["audit"])["ok"], true);
}

#[test]
fn webhooks_are_off_without_a_secret_and_never_run_other_operations() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    let body = r#"{"id":"evt_1","user_id":"u1","amount":40}"#;
    let signed = signature(WEBHOOK_SECRET, now(), body);
    api.send(
        "POST",
        "/v1/webhooks/topup",
        None,
        &[("memes-signature", &signed)],
        Some(body),
    )
    .problem(404, "not_found");
    // A webhook signature is no bearer credential anywhere else.
    api.send(
        "POST",
        "/v1/audit",
        None,
        &[("memes-signature", &signed)],
        None,
    )
    .problem(401, "unauthorized");
    assert_eq!(daemon.balance("u1"), None);
}

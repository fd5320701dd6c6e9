//! Premium: entitlements, signed claims, generated memes and external generators.

use crate::harness::Daemon;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const SECRET: &str = "integration-test-secret-0123456789";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn decode_png(path: &str) -> image::RgbaImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{path} is not an image: {e}"))
        .to_rgba8()
}

#[test]
fn only_premium_users_get_generated_memes() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1"]);
    let refused = daemon.memes(&[
        "get",
        "--user",
        "u1",
        "--generate",
        "--query",
        "monday meeting",
    ]);
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    assert!(refused.stderr.contains("premium"), "{}", refused.stderr);
    assert_eq!(daemon.balance("u1"), Some(149), "a refusal charges nothing");

    daemon.memes_json(&["entitle", "--user", "u1", "--tier", "premium"]);
    let balance = daemon.memes_json(&["balance", "--user", "u1"]);
    assert_eq!(balance["tier"], "premium");
    let dir = crate::harness::short_tempdir();
    let out = dir.path().join("meme.png");
    let args = [
        "get",
        "--user",
        "u1",
        "--generate",
        "--query",
        "monday meeting",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = daemon.memes_json(&args);
    assert_eq!(first["charged"], 5);
    assert_eq!(first["balance"], 144);
    let generated = &first["generated"];
    let image = decode_png(generated["path"].as_str().unwrap());
    assert_eq!(
        (image.width() as u64, image.height() as u64),
        (
            generated["width"].as_u64().unwrap(),
            generated["height"].as_u64().unwrap()
        )
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len() as u64, generated["bytes"].as_u64().unwrap());
    assert!(
        generated.get("png_base64").is_none(),
        "--json output stays small"
    );
    // The caption is drawn: the image differs from the bare template in its top band.
    let template = image::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/templates")
            .join(format!("{}.png", generated["template"].as_str().unwrap())),
    )
    .unwrap()
    .to_rgba8();
    let changed = (0..image.width())
        .flat_map(|x| (0..image.height() / 5).map(move |y| (x, y)))
        .filter(|&(x, y)| image.get_pixel(x, y) != template.get_pixel(x, y))
        .count();
    assert!(
        changed > 500,
        "only {changed} pixels differ from the template"
    );
    let second = daemon.memes_json(&args);
    assert_eq!(
        second["generated"]["sha256"], generated["sha256"],
        "identical inputs, identical bytes"
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert_eq!(second["balance"], 139);
}

#[test]
fn an_expired_entitlement_counts_as_free() {
    let daemon = Daemon::start();
    // An entitlement in the past is refused, so let one run out: a second from now.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    daemon.memes_json(&[
        "entitle",
        "--user",
        "u1",
        "--tier",
        "premium",
        "--until",
        &soon.to_string(),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon.memes_json(&["balance", "--user", "u1"])["tier"] != "free" {
        assert!(std::time::Instant::now() < deadline, "never expired");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let refused = daemon.memes(&["get", "--user", "u1", "--generate"]);
    assert_eq!(refused.code, 6);
    daemon.memes_json(&[
        "entitle",
        "--user",
        "u1",
        "--tier",
        "premium",
        "--until",
        "2099-01-31T00:00:00Z",
    ]);
    let balance = daemon.memes_json(&["balance", "--user", "u1"]);
    assert_eq!(balance["tier_until"], "2099-01-31T00:00:00Z");
    assert_eq!(daemon.memes(&["get", "--user", "u1", "--generate"]).code, 0);
}

#[test]
fn a_signed_premium_claim_works_and_a_tampered_one_does_not() {
    let dir = crate::harness::short_tempdir();
    let key = dir.path().join("claims.key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    let daemon = Daemon::start_with(&["--claims-key", key.to_str().unwrap()]);
    let good = token(json!({"sub": "u1", "tier": "premium", "exp": now() + 600}));
    let got = daemon.memes_json(&["get", "--user", "u1", "--generate", "--token", &good]);
    assert_eq!(got["charged"], 5);
    let mut tampered = good.into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refused = daemon.memes(&["get", "--user", "u1", "--generate", "--token", &tampered]);
    assert_eq!(refused.code, 6, "{}", refused.stderr);
    let expired = token(json!({"sub": "u1", "tier": "premium", "exp": now() - 3600}));
    let refused = daemon.memes(&["get", "--user", "u1", "--generate", "--token", &expired]);
    assert_eq!(refused.code, 6);
    assert!(refused.stderr.contains("expired"), "{}", refused.stderr);
    let someone_else = token(json!({"sub": "u2", "tier": "premium", "exp": now() + 600}));
    assert_eq!(
        daemon
            .memes(&[
                "get",
                "--user",
                "u1",
                "--generate",
                "--token",
                &someone_else
            ])
            .code,
        6
    );
    let free_claim = token(json!({"sub": "u1", "exp": now() + 600}));
    assert_eq!(
        daemon
            .memes(&["get", "--user", "u1", "--generate", "--token", &free_claim])
            .code,
        6
    );
    assert_eq!(
        daemon.balance("u1"),
        Some(145),
        "only the good token was charged"
    );
}

fn script(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/generators")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn an_external_generator_is_used_and_its_failures_charge_nothing() {
    for (name, code, needle) in [
        ("fail.sh", 1, "failed"),
        ("not-png.sh", 1, "PNG"),
        ("slow.sh", 8, "did not finish"),
    ] {
        let command = format!("sh {}", script(name));
        let daemon = Daemon::start_with(&["--generator-cmd", &command, "--generator-timeout", "1"]);
        daemon.memes_json(&["entitle", "--user", "u1", "--tier", "premium"]);
        let run = daemon.memes(&["get", "--user", "u1", "--generate", "--query", "x"]);
        assert_eq!(run.code, code, "{name}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{name}: {}", run.stderr);
        assert_eq!(daemon.balance("u1"), Some(150), "{name} charged");
    }
    let command = format!("sh {}", script("tiny-png.sh"));
    let daemon = Daemon::start_with(&["--generator-cmd", &command]);
    daemon.memes_json(&["entitle", "--user", "u1", "--tier", "premium"]);
    let got = daemon.memes_json(&["get", "--user", "u1", "--generate", "--query", "hello"]);
    assert_eq!(got["charged"], 5);
    assert_eq!(
        (
            got["generated"]["width"].as_u64(),
            got["generated"]["height"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn a_replayed_generated_meme_is_the_same_image_even_where_the_file_is_gone() {
    let daemon = Daemon::start();
    daemon.memes_json(&["entitle", "--user", "p", "--tier", "premium"]);
    let mut conn = daemon.connect();
    let request = json!({"op": "get", "user": "p", "generate": true, "query": "deploy on friday",
        "idempotency_key": "gen-1", "inline": true})
    .to_string();
    let first = conn.request(&request);
    assert_eq!(first["ok"], true, "{first}");
    let image = first["data"]["generated"].clone();
    let path = image["path"].as_str().unwrap().to_string();
    let png = image["png_base64"].as_str().unwrap().to_string();
    // As on another host sharing the ledger, or after the file was cleaned up.
    std::fs::remove_file(&path).unwrap();
    let again = conn.request(&request);
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["data"]["replayed"], true);
    assert_eq!(again["data"]["balance"], first["data"]["balance"]);
    assert_eq!(again["data"]["generated"]["sha256"], image["sha256"]);
    assert_eq!(
        again["data"]["generated"]["png_base64"],
        png.as_str(),
        "the same bytes"
    );
    assert_eq!(
        std::fs::read(&path).unwrap().len() as u64,
        image["bytes"].as_u64().unwrap(),
        "made again, where the reply says"
    );
    assert_eq!(daemon.balance("p"), Some(145), "charged once");
}

//! Memes worth paying for: search, variety, location, counts, nsfw, and catalogue reloads.

use crate::harness::{Daemon, assert_error};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::HashSet;

fn shipped() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/catalogue.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn entry(id: &str) -> Value {
    shipped()["memes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
        .unwrap()
}

#[test]
fn a_typo_still_finds_distracted_boyfriend() {
    let daemon = Daemon::start();
    let got = daemon.memes_json(&["get", "--user", "u1", "--query", "distracted boyfirend"]);
    assert_eq!(got["meme"]["id"], "distracted-boyfriend");
    assert_eq!(got["meme"]["title"], "Distracted Boyfriend");
}

#[test]
fn cats_finds_cat_memes_and_repeats_bring_different_ones() {
    let daemon = Daemon::start();
    let mut seen = HashSet::new();
    for _ in 0..5 {
        let got = daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
        let id = got["meme"]["id"].as_str().unwrap().to_string();
        let meme = entry(&id);
        let is_cat = meme["tags"]
            .as_array()
            .unwrap()
            .iter()
            .chain(meme["categories"].as_array().unwrap())
            .any(|t| t == "cat");
        assert!(is_cat, "{id} is not a cat meme");
        seen.insert(id);
    }
    assert_eq!(seen.len(), 5, "five asks, five different cats: {seen:?}");
}

#[test]
fn locations_mean_something() {
    let daemon = Daemon::start();
    let paris = daemon.memes_json(&[
        "get", "--user", "u1", "--lat", "48.8566", "--long", "2.3522",
    ]);
    assert_eq!(paris["location"]["city"], "Paris", "{paris}");
    assert_eq!(paris["location"]["country"], "France");
    assert_eq!(paris["location"]["country_code"], "FR");
    let sea = daemon.memes_json(&["get", "--user", "u1", "--lat", "40", "--long", "-73"]);
    assert_eq!(sea["location"]["at_sea"], true, "{sea}");
    assert_eq!(sea["location"]["landmass"], "Long Island", "{sea}");
    let km = sea["location"]["distance_km"].as_f64().unwrap();
    assert!((50.0..120.0).contains(&km), "{km}");
    let montana = daemon.memes_json(&["get", "--user", "u1", "--lat", "48.95", "--long", "-110.0"]);
    assert_eq!(montana["location"]["country_code"], "US", "{montana}");
    assert_eq!(montana["location"]["region_code"], "US-MT", "{montana}");
    let human = daemon.memes(&[
        "get", "--user", "u1", "--lat", "48.8566", "--long", "2.3522",
    ]);
    assert!(
        human.stdout.lines().any(|l| l.starts_with("Place: Paris")),
        "{}",
        human.stdout
    );
}

#[test]
fn count_delivers_distinct_memes_all_or_nothing() {
    let daemon = Daemon::start_with(&["--welcome-tokens", "4"]);
    let got = daemon.memes_json(&["get", "--user", "u1", "--count", "3", "--query", "cat"]);
    let memes = got["memes"].as_array().unwrap();
    let ids: HashSet<&str> = memes.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(got["charged"], 3);
    assert!(got.get("meme").is_none());
    let refused = daemon.memes(&["get", "--user", "u1", "--count", "2"]);
    assert_eq!(refused.code, 4, "a balance of 1 cannot pay for 2");
    assert_eq!(daemon.balance("u1"), Some(1));
}

#[test]
fn search_ranks_for_free() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1"]);
    let found = daemon.memes_json(&["search", "distracted boyfriend", "--limit", "5"]);
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits[0]["meme"]["id"], "distracted-boyfriend");
    assert!(
        hits.windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64())
    );
    let table = daemon.memes(&["search", "grumpy"]);
    assert!(table.stdout.contains("Grumpy Cat"), "{}", table.stdout);
    assert_eq!(daemon.balance("u1"), Some(149), "searching charges nothing");
}

#[test]
fn nsfw_memes_only_when_asked() {
    let daemon = Daemon::start();
    let nsfw: Vec<Value> = shipped()["memes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["nsfw"] == true)
        .cloned()
        .collect();
    assert!(!nsfw.is_empty());
    let title = nsfw[0]["title"].as_str().unwrap();
    let search = daemon.memes_json(&["search", title]);
    assert!(
        search["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["meme"]["id"] != nsfw[0]["id"])
    );
    let with = daemon.memes_json(&["search", title, "--nsfw"]);
    assert_eq!(with["hits"][0]["meme"]["id"], nsfw[0]["id"]);
    let nsfw_ids: HashSet<&str> = nsfw.iter().map(|m| m["id"].as_str().unwrap()).collect();
    for _ in 0..40 {
        let got = daemon.memes_json(&["get", "--user", "safe"]);
        assert!(!nsfw_ids.contains(got["meme"]["id"].as_str().unwrap()));
    }
}

#[test]
fn sighup_reloads_the_catalogue_and_rejects_a_bad_one() {
    let dir = crate::harness::short_tempdir();
    let file = dir.path().join("catalogue.json");
    let mut catalogue = shipped();
    let all = catalogue["memes"].as_array().unwrap().clone();
    catalogue["memes"] = Value::Array(all[..10].to_vec());
    std::fs::write(&file, catalogue.to_string()).unwrap();
    let daemon = Daemon::start_with(&["--catalogue", file.to_str().unwrap()]);
    let mut conn = daemon.connect();
    conn.request(r#"{"op":"topup","user":"keep","amount":7}"#);
    assert_eq!(conn.request(r#"{"op":"status"}"#)["data"]["memes"], 10);

    catalogue["memes"] = Value::Array(all[..20].to_vec());
    std::fs::write(&file, catalogue.to_string()).unwrap();
    daemon.signal(Signal::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while conn.request(r#"{"op":"status"}"#)["data"]["memes"] != 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(&file, r#"{"version":1,"memes":[{"id":"Bad Id","title":"x","image":"https://a.b/c","source":"https://a.b"}]}"#).unwrap();
    let reload = daemon.memes(&["reload"]);
    assert_eq!(reload.code, 2, "{}", reload.stderr);
    assert!(reload.stderr.contains("Bad Id"), "{}", reload.stderr);
    assert_eq!(
        conn.request(r#"{"op":"status"}"#)["data"]["memes"],
        20,
        "the old catalogue stays"
    );
    assert_eq!(daemon.balance("keep"), Some(157), "balances untouched");
    assert_error(
        &conn.request(r#"{"op":"balance","user":"nobody"}"#),
        "not_found",
    );
}

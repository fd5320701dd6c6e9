//! Search by meaning, end to end: a meme described in other words than its title is found
//! by `search` and delivered by `get`, both scores are shown, and `similar` lists the memes
//! nearest in meaning on the socket, over HTTP and through the CLI, free of charge.

use crate::harness::{Daemon, assert_error};
use crate::http::Api;

#[test]
fn a_description_in_other_words_finds_the_meme() {
    let daemon = Daemon::start();
    let found = daemon.memes_json(&[
        "search",
        "dog sitting in a burning room saying everything is okay",
        "--limit",
        "3",
    ]);
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits[0]["meme"]["id"], "this-is-fine", "{found:#}");
    for hit in hits {
        let (score, bm25, meaning) = (
            hit["score"].as_f64().unwrap(),
            hit["bm25"].as_f64().unwrap(),
            hit["meaning"].as_f64().unwrap(),
        );
        assert!((-1.0..=1.0).contains(&meaning), "{hit}");
        assert!(bm25 >= 0.0 && score >= meaning, "{hit}");
    }

    let got = daemon.memes_json(&[
        "get",
        "--user",
        "u1",
        "--query",
        "employee thrown out of the window for a sensible idea in a meeting",
    ]);
    assert_eq!(got["meme"]["id"], "boardroom-meeting-suggestion", "{got:#}");
    assert_eq!(got["charged"], 1);

    let explained = daemon.memes(&["search", "frowning kitty who hates everything", "--explain"]);
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    let header = explained
        .stdout
        .lines()
        .find(|l| l.contains("Score"))
        .unwrap();
    assert!(
        header.contains("Words") && header.contains("Meaning"),
        "{}",
        explained.stdout
    );
    assert!(
        explained.stdout.contains("grumpy-cat"),
        "{}",
        explained.stdout
    );
}

#[test]
fn gibberish_and_keywords_behave_as_before() {
    let daemon = Daemon::start();
    let none = daemon.memes_json(&["search", "qqqqxxxzzz"]);
    assert_eq!(none["hits"].as_array().unwrap().len(), 0, "{none:#}");
    let no_match = daemon.memes(&["get", "--user", "u1", "--query", "zzzzqqqq"]);
    assert_eq!(no_match.code, 5, "{}", no_match.stderr);
    assert_eq!(
        daemon.balance("u1"),
        None,
        "nothing delivered, nothing charged"
    );
    let typo = daemon.memes_json(&["search", "distracetd boyfriend", "--limit", "1"]);
    assert_eq!(typo["hits"][0]["meme"]["id"], "distracted-boyfriend");
}

#[test]
fn similar_lists_the_nearest_memes_on_every_front_for_free() {
    let daemon = Daemon::start_http(&[]);
    daemon.memes_json(&["get", "--user", "u1"]);
    let similar = daemon.memes_json(&["similar", "this-is-fine", "--limit", "5"]);
    assert_eq!(similar["meme_id"], "this-is-fine");
    let hits = similar["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h["meme"]["id"] != "this-is-fine"));
    assert!(
        hits.windows(2)
            .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()),
        "{similar:#}"
    );
    assert!(
        hits.iter()
            .all(|h| h["meaning"] == h["score"] && h.get("bm25").is_none()),
        "{similar:#}"
    );

    let socket = daemon
        .connect()
        .request(r#"{"id":7,"op":"similar","meme":"this-is-fine","limit":5}"#);
    assert_eq!(socket["id"], 7, "the request's own id is echoed");
    assert_eq!(socket["data"], similar, "one serialisation for every front");
    let api = Api::new(&daemon);
    let http = api.get("/v1/memes/this-is-fine/similar?limit=5", None).ok();
    assert_eq!(http, similar);

    let unknown = daemon.memes(&["similar", "no-such-meme"]);
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    api.get("/v1/memes/no-such-meme/similar", None)
        .problem(404, "not_found");
    api.get("/v1/memes/this-is-fine/similar?limit=0", None)
        .problem(400, "invalid_argument");
    let mut conn = daemon.connect();
    assert_error(
        &conn.request(r#"{"op":"similar","meme":""}"#),
        "invalid_argument",
    );
    assert_error(&conn.request(r#"{"op":"similar"}"#), "bad_request");
    assert_eq!(daemon.balance("u1"), Some(149), "similar charges nothing");
}

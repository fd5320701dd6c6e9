//! Every route, with the statuses it answers: the original two, the versioned API, health,
//! images and the OpenAPI document.

use super::{AdminKey, Api};
use crate::harness::Daemon;
use serde_json::{Value, json};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn get_memes_charges_the_bearer_like_get_and_is_never_cached() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    let reply = api.get("/memes?lat=40&long=-73&query=cats", Some("user1234"));
    let meme = reply.ok();
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        keys(&meme),
        [
            "balance", "charged", "id", "image", "location", "source", "title"
        ]
    );
    assert_eq!(
        (meme["charged"].as_u64(), meme["balance"].as_u64()),
        (Some(1), Some(149))
    );
    assert!(meme["image"].as_str().unwrap().starts_with("https://"));
    assert_eq!(meme["location"]["country_code"], "US");
    // The ledger records the meme delivered.
    let history = daemon.memes_json(&["history", "--user", "user1234"]);
    assert_eq!(history[1]["memes"], json!([meme["id"]]), "{history}");

    let lon = api
        .get("/memes?lat=40&lon=-73&query=cats", Some("user1234"))
        .ok();
    assert_eq!(lon["balance"], 148, "lon is accepted for long");
    assert_eq!(lon["location"]["country_code"], "US");
    let plain = api.get("/memes", Some("user1234")).ok();
    assert_eq!(plain["balance"], 147);
    assert!(plain.get("location").is_none());
    assert_eq!(daemon.balance("user1234"), Some(147), "the socket sees it");

    // Refusals charge nothing.
    api.get("/memes?query=cats", None)
        .problem(401, "unauthorized");
    api.get("/memes?lat=91&long=0", Some("user1234"))
        .problem(400, "invalid_argument");
    api.get("/memes?lat=40", Some("user1234"))
        .problem(400, "invalid_argument");
    api.get("/memes?lat=abc&long=1", Some("user1234"))
        .problem(400, "bad_request");
    api.get("/memes?lat=1&long=2&lon=3", Some("user1234"))
        .problem(400, "bad_request");
    api.get("/memes?query=qqqxxzzyyww", Some("user1234"))
        .problem(404, "not_found");
    let (status, problem) = api.get_as("/memes", "user\u{200B}1234".as_bytes());
    assert_eq!(
        (status, &problem["code"]),
        (401, &json!("unauthorized")),
        "{problem}"
    );
    assert_eq!(daemon.balance("user1234"), Some(147));
}

#[test]
fn an_empty_balance_is_402_and_charges_nothing() {
    let daemon = Daemon::start_http(&["--welcome-tokens", "1"]);
    let api = Api::new(&daemon);
    assert_eq!(api.get("/memes", Some("u")).ok()["balance"], 0);
    api.get("/memes", Some("u"))
        .problem(402, "insufficient_tokens");
    api.get("/v1/memes?count=2", Some("v"))
        .problem(402, "insufficient_tokens");
    assert_eq!(daemon.balance("u"), Some(0));
    assert_eq!(
        daemon.balance("v"),
        None,
        "a refused first get opens nothing"
    );
}

#[test]
fn update_token_balance_is_for_admins_and_answers_as_first_written() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    let key = Some(admin.key.as_str());
    let update = |bearer, body: &str| api.post("/update-token-balance", bearer, body);

    let reply = update(key, r#"{"user_id":"user1234","amount":50}"#);
    assert_eq!(
        reply.ok(),
        json!({"success": true, "message": "Token balance updated successfully",
               "user_id": "user1234", "new_balance": 200, "welcome_grant": 150}),
        "the top-up opened the account: the answer says the grant is in the balance"
    );
    let reply = update(key, r#"{"user_id":"user1234","amount":-20}"#);
    assert_eq!(reply.ok()["new_balance"], 180, "a negative amount deducts");
    assert_eq!(
        reply.ok().get("welcome_grant"),
        None,
        "only when it opens one"
    );

    // Refusals: `{"success": false, "message"}` with the status of their code.
    for (bearer, body, status) in [
        (key, r#"{"user_id":"user1234","amount":-181}"#, 402),
        (
            Some("user1234"),
            r#"{"user_id":"user1234","amount":50}"#,
            403,
        ),
        (None, r#"{"user_id":"user1234","amount":50}"#, 401),
        (
            Some("memes_admin_0000"),
            r#"{"user_id":"user1234","amount":50}"#,
            401,
        ),
        (key, r#"{"user_id":"user1234","amount":0}"#, 400),
        (key, r#"{"user_id":"user1234","amount":"50"}"#, 400),
        (key, r#"{"user_id":"user1234""#, 400),
        (key, r#"{"user_id":"","amount":5}"#, 400),
        (key, r#"{"user_id":"never-seen","amount":-5}"#, 404),
    ] {
        let reply = update(bearer, body);
        assert_eq!(
            reply.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let refused = reply.json();
        assert_eq!(keys(&refused), ["message", "success"], "{refused}");
        assert_eq!(refused["success"], false);
        assert!(!refused["message"].as_str().unwrap().is_empty());
        if status == 401 {
            assert!(reply.header("www-authenticate").is_some());
        }
    }
    assert_eq!(
        daemon.balance("user1234"),
        Some(180),
        "refusals change nothing"
    );
    assert_eq!(daemon.balance("never-seen"), None);

    // Idempotency-Key: the stored answer again, applied once; other parameters conflict.
    let keyed = |amount: i64| {
        api.send(
            "POST",
            "/update-token-balance",
            key,
            &[("idempotency-key", "pay-1")],
            Some(&json!({"user_id": "user1234", "amount": amount}).to_string()),
        )
    };
    assert_eq!(keyed(10).ok()["new_balance"], 190);
    let again = keyed(10);
    assert_eq!(again.ok()["new_balance"], 190);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let conflict = keyed(11);
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.json()["success"], false);
    assert_eq!(daemon.balance("user1234"), Some(190));

    // The ledger says which key made each change.
    let history = daemon.memes_json(&["history", "--user", "user1234"]);
    let reasons: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["by admin key ops"; 3], "{history}");
}

#[test]
fn v1_memes_by_get_and_post_are_the_socket_get() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    let u = Some("u1");
    let reply = api.get("/v1/memes?query=cats&count=2", u);
    let data = reply.ok();
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(data["user_id"], "u1");
    assert_eq!(data["memes"].as_array().unwrap().len(), 2);
    assert_eq!(
        (data["charged"].as_u64(), data["balance"].as_u64()),
        (Some(2), Some(148))
    );

    let reply = api.post(
        "/v1/memes",
        u,
        r#"{"query":"dogs","lat":48.8566,"lon":2.3522}"#,
    );
    let data = reply.ok();
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(
        keys(&data),
        ["balance", "charged", "location", "meme", "user_id"]
    );
    assert_eq!(keys(&data["meme"]), ["id", "image", "source", "title"]);
    assert_eq!(data["location"]["country_code"], "FR");
    assert_eq!(data["balance"], 147);

    // The same request on the socket gets the same shape of data.
    let socket = daemon
        .connect()
        .request(r#"{"op":"get","user":"u1","query":"dogs","lat":48.8566,"long":2.3522}"#);
    assert_eq!(keys(&socket["data"]), keys(&data));
    assert_eq!(socket["data"]["balance"], 146);

    api.post("/v1/memes", u, r#"{"query":"dogs","colour":"red"}"#)
        .problem(400, "bad_request");
    api.post("/v1/memes", u, "not json")
        .problem(400, "bad_request");
    api.post("/v1/memes", u, r#"{"count":11}"#)
        .problem(400, "invalid_argument");
    api.post("/v1/memes", None, "{}")
        .problem(401, "unauthorized");
    api.post("/v1/memes", u, r#"{"user":"u2"}"#)
        .problem(403, "not_allowed");
    api.get("/v1/memes?user=u2", u).problem(403, "not_allowed");
    api.post("/v1/memes", u, r#"{"generate":true}"#)
        .problem(403, "not_allowed");
    api.get("/v1/memes?count=zero", u)
        .problem(400, "bad_request");
    assert_eq!(daemon.balance("u1"), Some(146));
    assert_eq!(daemon.balance("u2"), None);
}

#[test]
fn idempotency_keys_replay_or_conflict_as_on_the_socket() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    let get = |key: &str, query: &str| {
        api.send(
            "POST",
            "/v1/memes",
            Some("u1"),
            &[("idempotency-key", key)],
            Some(&json!({ "query": query }).to_string()),
        )
    };
    let first = get("req-1", "cats").ok();
    let again = get("req-1", "cats");
    let replayed = again.ok();
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed["replayed"], true);
    assert_eq!(replayed["meme"], first["meme"], "the same meme");
    assert_eq!(
        replayed["balance"], first["balance"],
        "the balance as it was"
    );
    get("req-1", "dogs").problem(409, "idempotency_conflict");
    // GET /memes honours the header too, and a key the socket used replays over HTTP.
    let original = api
        .send(
            "GET",
            "/memes?query=cats",
            Some("u1"),
            &[("idempotency-key", "req-2")],
            None,
        )
        .ok();
    let socket = daemon
        .connect()
        .request(r#"{"op":"get","user":"u1","query":"cats","idempotency_key":"req-2"}"#);
    assert_eq!(socket["data"]["replayed"], true, "{socket}");
    assert_eq!(socket["data"]["meme"]["id"], original["id"]);
    assert_eq!(daemon.balance("u1"), Some(148), "two charges in all");

    // Over HTTP the key is a header; keys are checked like the socket's.
    api.post("/v1/memes", Some("u1"), r#"{"idempotency_key":"b"}"#)
        .problem(400, "bad_request");
    let long = "k".repeat(256);
    api.send(
        "POST",
        "/v1/memes",
        Some("u1"),
        &[("idempotency-key", &long)],
        Some("{}"),
    )
    .problem(400, "invalid_argument");

    // Top-ups: the same.
    let topup = |key: &str, amount: i64| {
        api.send(
            "POST",
            "/v1/users/u1/topups",
            Some(&admin.key),
            &[("idempotency-key", key)],
            Some(&json!({ "amount": amount, "reason": "stripe" }).to_string()),
        )
    };
    assert_eq!(
        topup("evt-1", 25).ok(),
        json!({"user_id": "u1", "amount": 25, "new_balance": 173})
    );
    let again = topup("evt-1", 25);
    assert_eq!(
        again.ok(),
        json!({"user_id": "u1", "amount": 25, "new_balance": 173, "replayed": true})
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    topup("evt-1", 26).problem(409, "idempotency_conflict");
    assert_eq!(daemon.balance("u1"), Some(173));
    // A keyed top-up that opens an account says the welcome grant is in its balance, and its
    // replay is that same answer, though the account exists by then.
    let open = |amount: i64| {
        api.send(
            "POST",
            "/v1/users/fresh/topups",
            Some(&admin.key),
            &[("idempotency-key", "evt-2")],
            Some(&json!({ "amount": amount }).to_string()),
        )
    };
    let first = open(10);
    assert_eq!(
        first.ok(),
        json!({"user_id": "fresh", "amount": 10, "new_balance": 160, "welcome_grant": 150})
    );
    let again = open(10);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let mut expected = first.body.clone();
    expected.pop();
    expected.extend_from_slice(br#","replayed":true}"#);
    assert_eq!(
        String::from_utf8_lossy(&again.body),
        String::from_utf8_lossy(&expected),
        "the first answer, byte for byte, marked as a replay"
    );
    assert_eq!(daemon.balance("fresh"), Some(160));
}

#[test]
fn search_status_and_health_need_no_credential() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    let found = api.get("/v1/search?q=grumpy&limit=1", None).ok();
    assert_eq!(found["query"], "grumpy");
    assert_eq!(found["hits"][0]["meme"]["id"], "grumpy-cat");
    assert_eq!(found["hits"].as_array().unwrap().len(), 1);
    let socket = daemon
        .connect()
        .request(r#"{"op":"search","query":"grumpy","limit":1}"#);
    assert_eq!(socket["data"], found, "one serialisation for both fronts");
    api.get("/v1/search", None).problem(400, "bad_request");
    api.get("/v1/search?q=cat&limit=0", None)
        .problem(400, "invalid_argument");
    api.get(&format!("/v1/search?q={}", "a".repeat(300)), None)
        .problem(400, "invalid_argument");

    let status = api.get("/v1/status", None).ok();
    assert_eq!(
        keys(&status),
        [
            "accounts",
            "entries",
            "memes",
            "protocol",
            "uptime_secs",
            "version",
            "writable"
        ]
    );
    assert_eq!(
        (status["protocol"].as_u64(), status["memes"].as_u64()),
        (Some(1), Some(357))
    );
    assert_eq!(api.get("/healthz", None).ok(), json!({"alive": true}));
    assert_eq!(api.get("/readyz", None).ok(), json!({"ready": true}));
}

#[test]
fn users_read_only_their_own_balance_and_history_and_admins_read_any() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    for _ in 0..5 {
        api.get("/memes", Some("u1")).ok();
    }
    api.get("/memes", Some("u2")).ok();
    assert_eq!(
        api.get("/v1/users/u1/balance", Some("u1")).ok(),
        json!({"user_id": "u1", "balance": 145, "tier": "free"})
    );
    assert_eq!(
        api.get("/v1/users/u2/balance", Some(&admin.key)).ok()["balance"],
        149
    );
    api.get("/v1/users/u2/balance", Some("u1"))
        .problem(403, "not_allowed");
    api.get("/v1/users/u1/balance", None)
        .problem(401, "unauthorized");
    api.get("/v1/users/nobody/balance", Some(&admin.key))
        .problem(404, "not_found");
    api.get("/v1/users/nobody/balance", Some("nobody"))
        .problem(404, "not_found");
    api.get("/v1/users/%FF/balance", Some(&admin.key))
        .problem(400, "bad_request");

    // History, a page at a time, oldest first within a page.
    let all = api.get("/v1/users/u1/history", Some("u1")).ok();
    assert_eq!(all["entries"].as_array().unwrap().len(), 6, "{all}");
    assert!(all.get("next").is_none());
    let mut pages = Vec::new();
    let mut path = "/v1/users/u1/history?limit=4".to_string();
    loop {
        let page = api.get(&path, Some("u1")).ok();
        pages.push(page["entries"].as_array().unwrap().clone());
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/users/u1/history?limit=4&before={next}"),
            None => break,
        }
    }
    let joined: Vec<Value> = pages.into_iter().rev().flatten().collect();
    assert_eq!(
        Value::from(joined),
        all["entries"],
        "the pages are the whole history"
    );
    assert_eq!(
        api.get("/v1/users/u1/history", Some(&admin.key)).ok(),
        all,
        "an admin reads it too"
    );
    api.get("/v1/users/u1/history", Some("u2"))
        .problem(403, "not_allowed");
    api.get("/v1/users/u1/history?limit=0", Some("u1"))
        .problem(400, "invalid_argument");
    api.get("/v1/users/u1/history?limit=x", Some("u1"))
        .problem(400, "bad_request");
    api.get("/v1/users/u1/history?before=garbage", Some("u1"))
        .problem(400, "invalid_argument");
}

#[test]
fn admin_routes_top_up_entitle_audit_and_reload() {
    let admin = AdminKey::new("billing");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    let key = Some(admin.key.as_str());
    api.get("/memes", Some("u1")).ok();

    let reply = api.post(
        "/v1/users/u1/topups",
        key,
        r#"{"amount":51,"reason":"gift"}"#,
    );
    assert_eq!(
        reply.ok(),
        json!({"user_id": "u1", "amount": 51, "new_balance": 200})
    );
    let reply = api.post("/v1/users/u1/topups", key, r#"{"amount":-10}"#);
    assert_eq!(reply.ok()["new_balance"], 190);
    api.post("/v1/users/u1/topups", key, r#"{"amount":-191}"#)
        .problem(402, "insufficient_tokens");
    api.post("/v1/users/ghost/topups", key, r#"{"amount":-1}"#)
        .problem(404, "not_found");
    api.post("/v1/users/u1/topups", key, r#"{"amount":0}"#)
        .problem(400, "invalid_argument");
    // JSON Schema's integers: 2.0 is 2; 2.5 is not an amount.
    assert_eq!(
        api.post("/v1/users/u1/topups", key, r#"{"amount":2.0}"#)
            .ok()["new_balance"],
        192
    );
    api.post("/v1/users/u1/topups", key, r#"{"amount":-2.0}"#)
        .ok();
    api.post("/v1/users/u1/topups", key, r#"{"amount":2.5}"#)
        .problem(400, "bad_request");
    api.post("/v1/users/u1/topups", key, r#"{"amount":1e300}"#)
        .problem(400, "bad_request");
    // An admin key has no account of its own: it names the user to charge.
    api.get("/memes", key).problem(403, "not_allowed");
    api.post("/v1/memes", key, "{}").problem(403, "not_allowed");
    assert_eq!(api.get("/memes?user=u9", key).ok()["balance"], 149);
    assert_eq!(
        api.post("/v1/memes", key, r#"{"user":"u9","count":2.0}"#)
            .ok()["balance"],
        147
    );
    api.post("/v1/users/u1/topups", key, r#"{"amount":1,"extra":1}"#)
        .problem(400, "bad_request");
    api.post("/v1/users/u1/topups", Some("u1"), r#"{"amount":1000}"#)
        .problem(403, "not_allowed");
    api.post("/v1/users/u1/topups", None, r#"{"amount":1000}"#)
        .problem(401, "unauthorized");
    assert_eq!(daemon.balance("u1"), Some(190));
    let history = api.get("/v1/users/u1/history", key).ok();
    let reasons: Vec<&Value> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["reason"])
        .collect();
    assert_eq!(
        reasons,
        [
            &Value::Null,
            &Value::Null,
            &json!("gift (by admin key billing)"),
            &json!("by admin key billing"),
            &json!("by admin key billing"),
            &json!("by admin key billing")
        ],
        "the key's name is in the ledger: {history}"
    );

    let entitled = api.send(
        "PUT",
        "/v1/users/u1/entitlement",
        key,
        &[],
        Some(r#"{"tier":"premium","until":"2099-01-01T00:00:00Z"}"#),
    );
    assert_eq!(
        entitled.ok(),
        json!({"user_id": "u1", "tier": "premium", "until": "2099-01-01T00:00:00Z"})
    );
    assert_eq!(
        api.get("/v1/users/u1/balance", Some("u1")).ok()["tier"],
        "premium"
    );
    for (bearer, body, status, code) in [
        (
            key,
            r#"{"tier":"premium","until":"2000-01-01T00:00:00Z"}"#,
            400,
            "invalid_argument",
        ),
        (key, r#"{"tier":"gold"}"#, 400, "bad_request"),
        (Some("u1"), r#"{"tier":"free"}"#, 403, "not_allowed"),
    ] {
        api.send("PUT", "/v1/users/u1/entitlement", bearer, &[], Some(body))
            .problem(status, code);
    }

    let audit = api.send("POST", "/v1/audit", key, &[], None).ok();
    assert_eq!(audit["ok"], true, "{audit}");
    api.send("POST", "/v1/audit", Some("u1"), &[], None)
        .problem(403, "not_allowed");
    api.send("POST", "/v1/audit", None, &[], None)
        .problem(401, "unauthorized");
    assert_eq!(
        api.send("POST", "/v1/reload", key, &[], None).ok(),
        json!({"memes": 357, "source": "embedded catalogue", "admin_keys": 1})
    );
    api.send("POST", "/v1/reload", Some("u1"), &[], None)
        .problem(403, "not_allowed");
}

#[test]
fn unknown_routes_and_methods_are_problems_too() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    api.get("/v2/memes", None).problem(404, "not_found");
    let wrong = api.send("DELETE", "/v1/status", None, &[], None);
    wrong.problem(405, "bad_request");
    assert!(
        wrong
            .header("allow")
            .is_some_and(|allow| allow.contains("GET"))
    );
    api.send("PUT", "/memes", Some("u"), &[], Some("{}"))
        .problem(405, "bad_request");
    assert_eq!(daemon.balance("u"), None);
}

#[test]
fn an_empty_optional_parameter_is_an_absent_one() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    // As web forms and the original service's clients send them.
    let meme = api.get("/memes?lat=&lon=&query=cats", Some("u1")).ok();
    assert_eq!(meme["balance"], 149);
    assert!(meme.get("location").is_none(), "{meme}");
    let both = api.get(
        "/v1/memes?lat=&long=&count=&nsfw=&query=cats&user=",
        Some("u1"),
    );
    assert_eq!(both.ok()["balance"], 148);
    let found = api.get("/v1/search?q=cats&limit=&nsfw=", None).ok();
    assert_eq!(found["hits"].as_array().map(Vec::len), Some(10), "{found}");
    let history = api
        .get("/v1/users/u1/history?limit=&before=", Some("u1"))
        .ok();
    assert_eq!(history["entries"].as_array().map(Vec::len), Some(3));
    // A value that is there is still checked.
    api.get("/memes?lat=x&lon=&query=cats", Some("u1"))
        .problem(400, "bad_request");
    api.get("/memes?lat=40&lon=&query=cats", Some("u1"))
        .problem(400, "invalid_argument");
    assert_eq!(daemon.balance("u1"), Some(148));
}

#[test]
fn only_a_delivered_meme_is_charged_whatever_the_method() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    api.get("/memes", Some("u1")).ok();
    assert_eq!(daemon.balance("u1"), Some(149));
    let methods = ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "POST"];
    for path in [
        "/memes",
        "/memes?query=cats",
        "/v1/memes",
        "/v1/memes?query=cats",
    ] {
        for method in methods {
            if method == "POST" && path.starts_with("/v1/memes") {
                continue; // POST /v1/memes is a charged get, below
            }
            let body = (method != "HEAD").then_some("{}");
            let reply = api.send(method, path, Some("u1"), &[], body);
            assert_eq!(reply.status, 405, "{method} {path}");
            let allow = reply.header("allow").unwrap_or_default();
            assert!(
                allow.contains("GET") && !allow.contains("HEAD"),
                "{method} {path}: {allow}"
            );
            assert_eq!(daemon.balance("u1"), Some(149), "{method} {path} charged");
        }
    }
    // HEAD says why, for a client that reads the body of a GET instead.
    let why = api.get("/v1/memes", None);
    let head = api.send("HEAD", "/v1/memes", Some("u1"), &[], None);
    assert_eq!((head.status, head.body.len()), (405, 0));
    assert_eq!(
        why.status, 401,
        "a refused GET, like every refusal, charges nothing"
    );
    // Routes that move tokens otherwise take only their method.
    for (path, allowed) in [
        ("/update-token-balance", "POST"),
        ("/v1/users/u1/topups", "POST"),
        ("/v1/webhooks/topup", "POST"),
    ] {
        for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"] {
            let reply = api.send(method, path, Some(&admin.key), &[], Some(r#"{"amount":5}"#));
            assert_eq!(reply.status, 405, "{method} {path}");
            assert_eq!(reply.header("allow"), Some(allowed), "{method} {path}");
        }
    }
    // GET and POST still charge.
    api.post("/v1/memes", Some("u1"), "{}").ok();
    api.get("/v1/memes", Some("u1")).ok();
    assert_eq!(daemon.balance("u1"), Some(147));
    let charges = daemon.memes_json(&["history", "--user", "u1"]);
    assert_eq!(
        charges.as_array().unwrap().len(),
        4,
        "welcome and three charges: {charges}"
    );
}

#[test]
fn the_openapi_document_is_3_1_and_lists_every_route() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    let document = api.get("/openapi.json", None).ok();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/memes", "get"),
        ("/update-token-balance", "post"),
        ("/v1/memes", "get"),
        ("/v1/memes", "post"),
        ("/v1/search", "get"),
        ("/v1/memes/{id}/similar", "get"),
        ("/v1/users/{user}/balance", "get"),
        ("/v1/users/{user}/history", "get"),
        ("/v1/users/{user}/lots", "get"),
        ("/v1/users/{user}/topups", "post"),
        ("/v1/users/{user}/entitlement", "put"),
        ("/v1/audit", "post"),
        ("/v1/reload", "post"),
        ("/v1/status", "get"),
        ("/v1/images/{sha256}.png", "get"),
        ("/v1/webhooks/topup", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is missing from the document"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn generated_images_are_immutable_with_a_strong_etag_and_304() {
    let admin = AdminKey::new("ops");
    let daemon = Daemon::start_http(&["--admin-keys", admin.path()]);
    let api = Api::new(&daemon);
    api.send(
        "PUT",
        "/v1/users/u1/entitlement",
        Some(&admin.key),
        &[],
        Some(r#"{"tier":"premium"}"#),
    )
    .ok();
    let made = api
        .post(
            "/v1/memes",
            Some("u1"),
            r#"{"generate":true,"query":"monday meeting"}"#,
        )
        .ok();
    assert_eq!(made["charged"], 5);
    let sha256 = made["generated"]["sha256"].as_str().unwrap().to_string();
    let path = format!("/v1/images/{sha256}.png");
    // The reply names the image by its URL, for clients on other hosts.
    assert_eq!(made["generated"]["url"], path.as_str());

    let image = api.get(&path, None);
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(
        image.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = format!("\"{sha256}\"");
    assert_eq!(image.header("etag"), Some(etag.as_str()), "a strong ETag");
    let on_disk = std::fs::read(made["generated"]["path"].as_str().unwrap()).unwrap();
    assert_eq!(image.body, on_disk);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&image.body)), sha256);

    for matching in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let cached = api.send("GET", &path, None, &[("if-none-match", &matching)], None);
        assert_eq!(cached.status, 304, "If-None-Match: {matching}");
        assert!(cached.body.is_empty());
        assert_eq!(cached.header("etag"), Some(etag.as_str()));
        assert_eq!(
            cached.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
    }
    let other = api.send("GET", &path, None, &[("if-none-match", "\"abc\"")], None);
    assert_eq!(other.status, 200);

    for missing in [
        format!("/v1/images/{}.png", "0".repeat(64)),
        format!("/v1/images/{}.png", sha256.to_uppercase()),
        format!("/v1/images/{sha256}"),
        format!("/v1/images/{sha256}.jpg"),
        "/v1/images/..%2F..%2Fjournal.ndjson".to_string(),
    ] {
        api.get(&missing, None).problem(404, "not_found");
    }
    assert_eq!(
        daemon.balance("u1"),
        Some(145),
        "images cost nothing to fetch"
    );
}

#[test]
fn an_unreadable_query_string_or_path_is_one_problem_on_every_route_and_charges_nothing() {
    let daemon = Daemon::start_http(&[]);
    let api = Api::new(&daemon);
    api.get("/memes", Some("u")).ok();
    for (route, part) in [
        ("/memes?count=1&lat=x&long=1", "the query string"),
        ("/v1/memes?count=many", "the query string"),
        ("/v1/search?q=cats&limit=x", "the query string"),
        ("/v1/users/u/history?limit=-1", "the query string"),
        ("/v1/memes/x/similar?limit=x", "the query string"),
        ("/v1/users/%FF/balance", "the path"),
        ("/v1/users/%FF/history", "the path"),
        ("/v1/images/%FF.png", "the path"),
    ] {
        let problem = api.get(route, Some("u")).problem(400, "bad_request");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(part), "{route}: {problem}");
    }
    assert_eq!(daemon.balance("u"), Some(149), "nothing charged");
}

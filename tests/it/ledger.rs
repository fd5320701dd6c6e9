//! The ledger from outside: idempotent retries, history, audit, and crashes under load.

use crate::harness::{Conn, Daemon, assert_error};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A first reply as its replays show it: the same data, marked as a replay.
fn replay_of(first: &Value) -> Value {
    assert!(
        first.get("replayed").is_none(),
        "a first reply is no replay: {first}"
    );
    let mut replay = first.clone();
    replay["replayed"] = json!(true);
    replay
}

#[test]
fn a_repeated_top_up_credits_once_and_answers_the_same() {
    let mut daemon = Daemon::start();
    let args = [
        "topup",
        "--user",
        "u1",
        "--amount",
        "25",
        "--idempotency-key",
        "stripe-evt-1",
        "--reason",
        "stripe evt_1",
    ];
    let first = daemon.memes_json(&args);
    let again = daemon.memes_json(&args);
    assert_eq!(again, replay_of(&first));
    assert_eq!(daemon.balance("u1"), Some(175));
    let conflict = daemon.memes(&[
        "topup",
        "--user",
        "u1",
        "--amount",
        "26",
        "--idempotency-key",
        "stripe-evt-1",
    ]);
    assert_eq!(conflict.code, 7, "{}", conflict.stderr);
    let other_user = daemon.memes(&[
        "topup",
        "--user",
        "u2",
        "--amount",
        "25",
        "--idempotency-key",
        "stripe-evt-1",
    ]);
    assert_eq!(other_user.code, 7);
    assert_eq!(
        daemon.balance("u2"),
        None,
        "a conflicting request changes nothing"
    );
    daemon.kill9();
    daemon.restart();
    assert_eq!(
        daemon.memes_json(&args),
        replay_of(&first),
        "keys survive a crash"
    );
    assert_eq!(daemon.balance("u1"), Some(175));
}

#[test]
fn a_retried_get_returns_the_same_meme_without_a_second_charge() {
    let mut daemon = Daemon::start();
    let args = [
        "get",
        "--user",
        "u1",
        "--query",
        "cat",
        "--lat",
        "48.8566",
        "--long",
        "2.3522",
        "--idempotency-key",
        "req-1",
    ];
    let first = daemon.memes_json(&args);
    assert_eq!(first["balance"], 149);
    let again = daemon.memes_json(&args);
    assert_eq!(
        again,
        replay_of(&first),
        "the same meme, the same charge, the balance as it was then"
    );
    daemon.memes_json(&["get", "--user", "u1", "--query", "cat"]);
    assert_eq!(
        daemon.memes_json(&args),
        replay_of(&first),
        "still the original reply after other charges"
    );
    assert_eq!(daemon.balance("u1"), Some(148));
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon.restart();
    assert_eq!(
        daemon.memes_json(&args),
        replay_of(&first),
        "and after a restart (checkpoint)"
    );
    let changed = daemon.memes(&[
        "get",
        "--user",
        "u1",
        "--query",
        "dog",
        "--idempotency-key",
        "req-1",
    ]);
    assert_eq!(changed.code, 7);
    assert_eq!(daemon.balance("u1"), Some(148));
}

/// The journal an earlier memesd (before stored replies were typed) wrote for a keyed `get`
/// with a place and a keyed top-up, byte for byte, and the replays it answered to their
/// retries.
const EARLIER_JOURNAL: &str = concat!(
    r#"{"seq":1,"time":1796641111757,"user":"u1","entries":[{"kind":"welcome","delta":150,"balance":150},{"kind":"charge","delta":-1,"balance":149}],"memes":["bode"],"key":"user:u1\u001freq-1","fp":"{\"op\":\"get\",\"user\":\"u1\",\"lat\":48.8566,\"long\":2.3522,\"query\":\"cats\"}","reply":{"user_id":"u1","meme":{"id":"bode","title":"Bode","image":"https://i.kym-cdn.com/photos/images/newsfeed/001/195/668/4ac.png","source":"https://knowyourmeme.com/memes/bode"},"charged":1,"balance":149,"location":{"country_code":"FR","country":"France","city":"Paris","region":"Ile-de-France","distance_km":0.4}}}"#,
    "\n",
    r#"{"batch_start":0}"#,
    "\n",
    r#"{"seq":3,"time":1796641111758,"user":"u1","prev":0,"entries":[{"kind":"topup","delta":5,"balance":154}],"key":"admins\u001fevt-1","fp":"{\"op\":\"topup\",\"user\":\"u1\",\"amount\":5}","reply":{"user_id":"u1","amount":5,"new_balance":154}}"#,
    "\n",
    r#"{"batch_start":615}"#,
    "\n",
);
const EARLIER_REPLAYS: [(&str, &str); 2] = [
    (
        r#"{"op":"get","user":"u1","query":"cats","lat":48.8566,"long":2.3522,"idempotency_key":"req-1"}"#,
        r#"{"ok":true,"data":{"user_id":"u1","meme":{"id":"bode","title":"Bode","image":"https://i.kym-cdn.com/photos/images/newsfeed/001/195/668/4ac.png","source":"https://knowyourmeme.com/memes/bode"},"charged":1,"balance":149,"location":{"country_code":"FR","country":"France","city":"Paris","region":"Ile-de-France","distance_km":0.4},"replayed":true}}"#,
    ),
    (
        r#"{"op":"topup","user":"u1","amount":5,"idempotency_key":"evt-1"}"#,
        r#"{"ok":true,"data":{"user_id":"u1","amount":5,"new_balance":154,"replayed":true}}"#,
    ),
];

#[test]
fn replies_an_earlier_memesd_stored_replay_byte_for_byte() {
    let mut daemon = Daemon::start_file();
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    let snapshot = daemon.data_dir.join("snapshot.json");
    if snapshot.exists() {
        std::fs::remove_file(snapshot).unwrap();
    }
    std::fs::write(daemon.data_dir.join("journal.ndjson"), EARLIER_JOURNAL).unwrap();
    daemon.restart();
    for round in ["as found", "after a checkpoint"] {
        let mut conn = daemon.connect();
        for (request, replayed) in EARLIER_REPLAYS {
            conn.send(format!("{request}\n").as_bytes());
            assert_eq!(conn.read_line(), format!("{replayed}\n"), "{round}");
        }
        assert_eq!(
            daemon.balance("u1"),
            Some(154),
            "{round}: nothing charged again"
        );
        daemon.signal_and_wait(Signal::SIGTERM);
        daemon.restart();
    }
}

#[test]
fn history_shows_every_entry_with_its_running_balance() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "h", "--query", "cat"]);
    daemon.memes_json(&[
        "topup",
        "--user",
        "h",
        "--amount",
        "10",
        "--reason",
        "stripe evt_9",
        "--idempotency-key",
        "k9",
    ]);
    daemon.memes_json(&["topup", "--user", "h", "--amount", "-5"]);
    daemon.memes_json(&["get", "--user", "other"]);
    daemon.memes_json(&["get", "--user", "h", "--count", "2"]);
    let history = daemon.memes_json(&["history", "--user", "h"]);
    let entries = history.as_array().expect("an array of entries");
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["welcome", "charge", "topup", "deduct", "charge"]);
    let balances: Vec<u64> = entries
        .iter()
        .map(|e| e["balance"].as_u64().unwrap())
        .collect();
    assert_eq!(balances, [150, 149, 159, 154, 152]);
    let mut running = 0i64;
    for entry in entries {
        running += entry["delta"].as_i64().unwrap();
        assert_eq!(running, entry["balance"].as_i64().unwrap());
        assert!(entry["seq"].as_u64().is_some() && entry["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(entries[2]["key"], "k9");
    assert_eq!(entries[2]["reason"], "stripe evt_9");
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    let newest = daemon.memes_json(&["history", "--user", "h", "--limit", "2"]);
    assert_eq!(newest.as_array().unwrap(), &entries[3..]);
    let table = daemon.memes(&["history", "--user", "h"]);
    assert!(
        table.stdout.contains("stripe evt_9") && table.stdout.contains("deduct"),
        "{}",
        table.stdout
    );
    assert_eq!(daemon.memes(&["history", "--user", "ghost"]).code, 5);
}

#[test]
fn a_history_longer_than_one_reply_is_paged_and_complete() {
    let daemon = Daemon::start();
    // More entries than one reply holds (10,000): top-ups pipelined in batches (small
    // enough that neither side's socket buffer fills while the other is not reading).
    let topups = 10_050u64;
    let mut conn = daemon.connect();
    for batch in (0..topups).collect::<Vec<_>>().chunks(1_005) {
        let lines: String = batch
            .iter()
            .map(|i| format!("{{\"id\":{i},\"op\":\"topup\",\"user\":\"long\",\"amount\":1}}\n"))
            .collect();
        assert!(conn.send(lines.as_bytes()));
        for &i in batch {
            let reply = conn.read_reply().expect("a reply");
            assert_eq!(reply["ok"], true, "{reply}");
            assert_eq!(reply["id"], i);
        }
    }

    let all = daemon.memes_json(&["history", "--user", "long"]);
    let all = all.as_array().unwrap();
    assert_eq!(
        all.len() as u64,
        topups + 1,
        "the welcome grant and every top-up"
    );
    assert_eq!(all[0]["kind"], "welcome");
    assert!(
        all.windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    assert_eq!(all.last().unwrap()["balance"], 150 + topups);
    let newest = daemon.memes_json(&["history", "--user", "long", "--limit", "10020"]);
    assert_eq!(newest.as_array().unwrap()[..], all[all.len() - 10_020..]);

    // On the wire: a page says where the older entries continue.
    let page = conn.request(r#"{"op":"history","user":"long","limit":3}"#);
    let entries = page["data"]["entries"].as_array().unwrap();
    assert_eq!(entries[..], all[all.len() - 3..]);
    let next = page["data"]["next"]
        .as_str()
        .expect("a cursor to older entries");
    let older = conn.request(&format!(
        r#"{{"op":"history","user":"long","limit":2,"before":"{next}"}}"#
    ));
    assert_eq!(
        older["data"]["entries"].as_array().unwrap()[..],
        all[all.len() - 5..all.len() - 3]
    );
    let whole = conn.request(r#"{"op":"history","user":"long"}"#);
    assert_eq!(whole["data"]["entries"].as_array().unwrap().len(), 10_000);
    let oldest = conn.request(&format!(
        r#"{{"op":"history","user":"long","before":"{}"}}"#,
        whole["data"]["next"].as_str().unwrap()
    ));
    assert_eq!(oldest["data"]["entries"].as_array().unwrap()[..], all[..51]);
    assert!(oldest["data"].get("next").is_none(), "{oldest}");

    // A cursor is checked: another user's, or a made-up one, is refused.
    daemon.memes_json(&["get", "--user", "other"]);
    let theirs = conn.request(&format!(
        r#"{{"op":"history","user":"other","before":"{next}"}}"#
    ));
    assert_error(&theirs, "invalid_argument");
    for forged in ["1:2", "x", "999999999999:1", "-1:2"] {
        let reply = conn.request(&format!(
            r#"{{"op":"history","user":"long","before":"{forged}"}}"#
        ));
        assert_error(&reply, "invalid_argument");
    }
    let too_many = conn.request(r#"{"op":"history","user":"long","limit":10001}"#);
    assert_error(&too_many, "invalid_argument");
}

#[test]
fn audit_passes_on_a_healthy_ledger_and_names_a_corrupted_one() {
    // Forges the file store's journal.
    let mut daemon = Daemon::start_file();
    for user in ["a", "b", "c"] {
        daemon.memes_json(&["get", "--user", user]);
        daemon.memes_json(&["topup", "--user", user, "--amount", "3"]);
    }
    let report = daemon.memes_json(&["audit"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["accounts"], 3);
    assert_eq!(report["entries"], 9);
    assert_eq!(report["welcomes"], 3);
    assert_eq!(daemon.memes(&["audit"]).code, 0);
    // Stopped cleanly, so the checkpoint covers the line forged below and start-up does not
    // read it again (see the next test for a line it does read).
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    let journal = daemon.data_dir.join("journal.ndjson");
    let text = std::fs::read_to_string(&journal).unwrap();
    let forged = text.replacen(
        r#""kind":"topup","delta":3,"balance":152"#,
        // Same length: only the balance is forged, no line moves.
        r#""kind":"topup","delta":3,"balance":952"#,
        1,
    );
    assert_ne!(forged, text);
    std::fs::write(&journal, forged).unwrap();
    daemon.restart();
    let run = daemon.memes(&["audit"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("FAILED") && run.stdout.contains("952"),
        "{}",
        run.stdout
    );
}

/// Starts memesd on `daemon`'s files expecting it to refuse: its exit status and log.
fn start_refused(daemon: &Daemon) -> (std::process::ExitStatus, String) {
    let log = daemon.dir.path().join("refused.log");
    let mut child = daemon
        .command()
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "memesd started:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_forged_line_after_the_checkpoint_stops_memesd_from_starting() {
    let mut daemon = Daemon::start_file();
    daemon.memes_json(&["topup", "--user", "a", "--amount", "29"]);
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "stopped with a checkpoint");
    daemon.restart();
    daemon.memes_json(&["get", "--user", "a"]);
    daemon.memes_json(&["get", "--user", "b"]);
    daemon.kill9();
    let journal = daemon.data_dir.join("journal.ndjson");
    let text = std::fs::read_to_string(&journal).unwrap();
    let line = text
        .lines()
        .find(|line| line.contains(r#""kind":"charge","delta":-1,"balance":178"#))
        .expect("the charge after the checkpoint");
    let line_number = text.lines().position(|l| l == line).unwrap() + 1;
    // Same length: only the balance is forged, no line moves.
    let forged = line.replace(r#""balance":178"#, r#""balance":978"#);
    std::fs::write(&journal, text.replacen(line, &forged, 1)).unwrap();
    let (status, stderr) = start_refused(&daemon);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}, line {line_number}:", journal.display()))
            && stderr.contains("recorded as 978 but 179 -1 = 178"),
        "{stderr}"
    );
}

#[test]
fn an_edited_checkpoint_stops_memesd_and_one_without_a_digest_fails_the_audit() {
    let mut daemon = Daemon::start_file();
    let args = [
        "topup",
        "--user",
        "u1",
        "--amount",
        "25",
        "--idempotency-key",
        "stripe-evt-1",
    ];
    let first = daemon.memes_json(&args);
    daemon.memes_json(&["topup", "--user", "u2", "--amount", "5"]);
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "stopped with a checkpoint");
    // The key row dropped: a retry of the payment would credit u1 again.
    let path = daemon.data_dir.join("snapshot.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let rows = text.find(r#""keys":["#).unwrap() + r#""keys":["#.len();
    let end = text.rfind(r#"],"digest":"#).expect("a digest");
    assert!(text[rows..end].contains("stripe-evt-1"), "{text}");
    let edited = format!("{}{}", &text[..rows], &text[end..]);
    std::fs::write(&path, &edited).unwrap();
    let (status, stderr) = start_refused(&daemon);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}, line 1:", path.display()))
            && stderr.contains("does not match its digest"),
        "{stderr}"
    );
    // As an older memesd wrote it, without a digest: it starts, and the audit names the key.
    let digest = edited.rfind(r#","digest":"#).unwrap();
    std::fs::write(&path, format!("{}}}\n", &edited[..digest])).unwrap();
    daemon.restart();
    let run = daemon.memes(&["audit"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("FAILED") && run.stdout.contains("stripe-evt-1"),
        "{}",
        run.stdout
    );
    // Put back as written, the same checkpoint passes, and the retry is a replay.
    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    std::fs::write(&path, &text).unwrap();
    daemon.restart();
    assert_eq!(daemon.memes_json(&["audit"])["ok"], true);
    assert_eq!(daemon.memes_json(&args), replay_of(&first));
    assert_eq!(daemon.balance("u1"), Some(175));
}

/// One client of the crash test: top-ups and gets, each with its own idempotency key,
/// retried with the same key after a crash until acknowledged.
fn crash_client(
    socket: std::path::PathBuf,
    client: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
) {
    let user = format!("crash-{}", client % 6);
    let mut n = 0;
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("c{client}-{n}");
        let request = if n % 3 == 0 {
            json!({"op": "get", "user": user, "query": "cat", "idempotency_key": key})
        } else {
            json!({"op": "topup", "user": user, "amount": 2, "idempotency_key": key})
        };
        // Retry the same request with the same key until it is acknowledged.
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(c) = conn.as_mut() else {
                conn = Conn::open(&socket).ok();
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let sent = c.send(format!("{request}\n").as_bytes());
            match c.read_reply().filter(|_| sent) {
                Some(reply) if reply["ok"] == true => {
                    acked.lock().unwrap().push((user.clone(), key.clone()));
                    break;
                }
                Some(reply) => panic!("unexpected refusal {reply}"),
                None => conn = None, // crashed mid-request: retry with the same key
            }
        }
        n += 1;
    }
}

#[test]
fn repeated_kill_9_under_load_loses_nothing_and_duplicates_nothing() {
    let mut daemon = Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let clients: Vec<_> = (0..12)
        .map(|client| {
            let (socket, stop, acked) = (daemon.socket.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || crash_client(socket, client, stop, acked))
        })
        .collect();
    let mut seed = 0x2545_f491_u64;
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        daemon.kill9();
        daemon.restart();
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 100,
        "the load ran: {} acknowledged",
        acked.len()
    );
    let mut keys_by_user: HashMap<String, Vec<String>> = HashMap::new();
    for user in (0..6).map(|u| format!("crash-{u}")) {
        let history = daemon.memes_json(&["history", "--user", &user]);
        let mut running = 0i64;
        for entry in history.as_array().unwrap() {
            running += entry["delta"].as_i64().unwrap();
            assert_eq!(running, entry["balance"].as_i64().unwrap(), "{entry}");
            if let Some(key) = entry["key"].as_str() {
                keys_by_user
                    .entry(user.clone())
                    .or_default()
                    .push(key.to_string());
            }
        }
        assert_eq!(Some(running as u64), daemon.balance(&user));
    }
    for (user, keys) in &keys_by_user {
        let unique: HashSet<&String> = keys.iter().collect();
        assert_eq!(
            unique.len(),
            keys.len(),
            "{user}: a change was applied twice"
        );
    }
    for (user, key) in acked.iter() {
        assert!(
            keys_by_user[user].contains(key),
            "acknowledged {key} of {user} is missing"
        );
    }
    let report: Value = daemon.memes_json(&["audit"]);
    assert_eq!(report["ok"], true, "{report}");
}

#[test]
fn a_replay_says_so_in_human_output() {
    let daemon = Daemon::start();
    let get = ["get", "--user", "u1", "--idempotency-key", "k-get"];
    let first = daemon.memes(&get);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(!first.stdout.contains("replayed"), "{}", first.stdout);
    let again = daemon.memes(&get);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("1 token (replayed; not charged again)"),
        "{}",
        again.stdout
    );
    let topup = [
        "topup",
        "--user",
        "u1",
        "--amount",
        "5",
        "--idempotency-key",
        "k-top",
    ];
    assert!(!daemon.memes(&topup).stdout.contains("replayed"));
    let again = daemon.memes(&topup);
    assert!(
        again.stdout.contains("(replayed; not applied again)"),
        "{}",
        again.stdout
    );
    assert_eq!(daemon.balance("u1"), Some(154));
}

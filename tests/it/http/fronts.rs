//! The HTTP front beside the socket: one ledger under load from both, the `MEMES_HTTP`
//! variable, and SIGTERM with an HTTP request in flight.

use super::{AdminKey, Api};
use crate::harness::{Daemon, MEMESD, short_tempdir};
use nix::sys::signal::Signal;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const USERS: usize = 6;
const PER_THREAD: usize = 150;

#[test]
fn both_fronts_agree_on_every_balance_under_concurrent_load() {
    let daemon = Daemon::start_http(&["--welcome-tokens", "5000"]);
    let url = daemon.http_url();
    let socket = daemon.socket.clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Every charge reports the balance after it; per user, those must be distinct and
    // contiguous (no update lost, none applied twice), whichever front carried them.
    let reported: Vec<(String, u64)> = std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for thread in 0..6 {
            let (url, socket) = (url.clone(), socket.clone());
            workers.push(scope.spawn(move || {
                let api = Api::at(url);
                let mut conn = crate::harness::Conn::open(&socket).unwrap();
                let mut seen = Vec::new();
                for n in 0..PER_THREAD {
                    let user = format!("u{}", (thread + n) % USERS);
                    // Alternate fronts within each thread as well as across threads.
                    let balance = if (thread + n) % 2 == 0 {
                        api.get("/memes", Some(&user)).ok()["balance"]
                            .as_u64()
                            .unwrap()
                    } else {
                        let reply = conn.request(&json!({"op": "get", "user": user}).to_string());
                        assert_eq!(reply["ok"], true, "{reply}");
                        reply["data"]["balance"].as_u64().unwrap()
                    };
                    seen.push((user, balance));
                }
                seen
            }));
        }
        // A reader that alternates fronts: with only charges going on, a user's balance
        // never goes up from one read to the next, whichever front answers.
        let reader = scope.spawn(|| {
            let api = Api::at(url.clone());
            let mut conn = crate::harness::Conn::open(&socket).unwrap();
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for user in (0..USERS).map(|u| format!("u{u}")) {
                    let over_http = api.get(&format!("/v1/users/{user}/balance"), Some(&user));
                    let over_socket =
                        conn.request(&json!({"op": "balance", "user": user}).to_string());
                    let values = match over_http.status {
                        404 => continue,
                        _ => [
                            over_http.ok()["balance"].as_u64().unwrap(),
                            over_socket["data"]["balance"].as_u64().unwrap(),
                        ],
                    };
                    for value in values {
                        let previous = last.insert(user.clone(), value);
                        assert!(
                            previous.is_none_or(|previous| value <= previous),
                            "{user}: {previous:?} then {value}"
                        );
                        reads += 1;
                    }
                }
            }
            reads
        });
        let reported = workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        reported
    });
    let api = Api::new(&daemon);
    let mut by_user: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (user, balance) in reported {
        by_user.entry(user).or_default().push(balance);
    }
    for (user, mut balances) in by_user {
        balances.sort_unstable();
        let charges = balances.len() as u64;
        let expected: Vec<u64> = (5000 - charges..5000).collect();
        assert_eq!(balances, expected, "{user}");
        assert_eq!(daemon.balance(&user), Some(5000 - charges));
        assert_eq!(
            api.get(&format!("/v1/users/{user}/balance"), Some(&user))
                .ok()["balance"],
            5000 - charges
        );
    }
    assert_eq!(daemon.memes_json(&["audit"])["ok"], true);
}

#[test]
fn memes_http_in_the_environment_turns_the_front_on() {
    let dir = short_tempdir();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(MEMESD)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("MEMES_HTTP", "127.0.0.1:0")
        .env("MEMES_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(at) = text.find(" and http://") {
            let rest = &text[at + 5..];
            break rest[..rest.find(' ').unwrap()].to_string();
        }
        assert!(Instant::now() < deadline, "no HTTP address logged: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(Api::at(url).get("/healthz", None).status, 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn sigterm_answers_the_http_request_in_flight_closes_idle_ones_and_exits_0() {
    let admin = AdminKey::new("ops");
    let dir = short_tempdir();
    let started = dir.path().join("started");
    let tiny_png =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/generators/tiny-png.sh");
    let generator = format!(
        "touch {}; sleep 2; sh {}",
        started.display(),
        tiny_png.display()
    );
    let mut daemon =
        Daemon::start_http(&["--admin-keys", admin.path(), "--generator-cmd", &generator]);
    let api = Api::new(&daemon);
    api.send(
        "PUT",
        "/v1/users/u1/entitlement",
        Some(&admin.key),
        &[],
        Some(r#"{"tier":"premium"}"#),
    )
    .ok();
    // An idle keep-alive connection, and a slow request in flight.
    let address = api.base.trim_start_matches("http://").to_string();
    let mut idle = std::net::TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buffer = [0u8; 1024];
    assert!(idle.read(&mut buffer).unwrap() > 0);
    let in_flight = std::thread::spawn({
        let base = api.base.clone();
        move || {
            Api::at(base).post(
                "/v1/memes",
                Some("u1"),
                r#"{"generate":true,"query":"shutdown"}"#,
            )
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the generator never started");
        std::thread::sleep(Duration::from_millis(10));
    }

    daemon.signal(Signal::SIGTERM);
    // New connections are refused at once; the idle one is closed.
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        idle.read(&mut buffer).unwrap_or(0),
        0,
        "the idle connection is closed"
    );
    assert!(
        !in_flight.is_finished(),
        "the slow request is still running"
    );

    let status = daemon.signal_and_wait(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let reply = in_flight.join().unwrap();
    let data = reply.ok();
    assert_eq!(
        (data["charged"].as_u64(), data["balance"].as_u64()),
        (Some(5), Some(145))
    );
    assert_eq!(data["generated"]["width"], 2);

    // The charge it reported is on disk.
    daemon.restart();
    assert_eq!(daemon.balance("u1"), Some(145));
}

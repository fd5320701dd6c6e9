//! Several memesd hosts on one PostgreSQL database, with clients spread over them: to every
//! client they must behave exactly like one memesd. These always run on PostgreSQL (a fresh
//! database in the test process's throwaway cluster; the restart test has a cluster of its
//! own, since it stops the server), whatever `MEMES_TEST_STORE` says.

use crate::harness::{Conn, Daemon, TestDatabase};
use memes::store::pg::testing::Cluster;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Hosts sharing one database. Fields drop in order: the hosts stop before the database goes.
struct Hosts {
    hosts: Vec<Daemon>,
    _database: Option<TestDatabase>,
}

impl Hosts {
    /// `n` hosts on a fresh database of the process's cluster.
    fn start(n: usize, args: &[&str]) -> Hosts {
        let database = TestDatabase::create();
        let hosts = Hosts::on(&database.url, n, args);
        Hosts {
            hosts,
            _database: Some(database),
        }
    }

    /// `n` hosts on the database at `url`.
    fn on(url: &str, n: usize, args: &[&str]) -> Vec<Daemon> {
        let mut all = vec!["--store", url, "--store-pool", "8"];
        all.extend_from_slice(args);
        (0..n).map(|_| Daemon::start_file_with(&all)).collect()
    }
}

/// One request on a connection; `None` if the daemon is gone.
fn ask(conn: &mut Conn, request: &Value) -> Option<Value> {
    if !conn.send(format!("{request}\n").as_bytes()) {
        return None;
    }
    conn.read_reply()
}

fn topup(user: &str, amount: i64) -> Value {
    json!({"op": "topup", "user": user, "amount": amount})
}

fn audit_passes(host: &Daemon) {
    let report = host.memes_json(&["audit"]);
    assert_eq!(report["ok"], true, "{report}");
}

#[test]
fn sixty_four_clients_top_up_one_user_through_three_hosts_and_lose_nothing() {
    // 64 × 100 in debug builds (the issue's 64 × 1,000 takes minutes unoptimised): still
    // 6,400 changes to one hot account, from three hosts at once.
    const CLIENTS: usize = 64;
    const EACH: u64 = 100;
    let cluster = Hosts::start(3, &[]);
    let hosts = &cluster.hosts;
    let start = Arc::new(Barrier::new(CLIENTS));
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let host = &hosts[client % hosts.len()];
            let start = start.clone();
            scope.spawn(move || {
                let mut conn = host.connect();
                start.wait();
                for _ in 0..EACH {
                    let reply = ask(&mut conn, &topup("hot", 1)).expect("a reply");
                    assert_eq!(reply["ok"], true, "{reply}");
                }
            });
        }
    });
    for host in hosts {
        assert_eq!(host.balance("hot"), Some(150 + CLIENTS as u64 * EACH));
    }
    audit_passes(&hosts[1]);
}

#[test]
fn a_hundred_and_twenty_eight_racers_on_ten_tokens_get_exactly_ten_memes() {
    let cluster = Hosts::start(3, &[]);
    let hosts = &cluster.hosts;
    hosts[0].memes_json(&["topup", "--user", "racy", "--amount", "1"]);
    hosts[1].memes_json(&["topup", "--user", "racy", "--amount", "-141"]);
    assert_eq!(hosts[2].balance("racy"), Some(10));
    let start = Arc::new(Barrier::new(128));
    let delivered = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for racer in 0..128 {
            let host = &hosts[racer % hosts.len()];
            let (start, delivered) = (start.clone(), &delivered);
            scope.spawn(move || {
                let mut conn = host.connect();
                start.wait();
                let reply = ask(&mut conn, &json!({"op": "get", "user": "racy"})).unwrap();
                match reply["ok"].as_bool() {
                    Some(true) => {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => assert_eq!(reply["error"]["code"], "insufficient_tokens", "{reply}"),
                }
            });
        }
    });
    assert_eq!(delivered.load(Ordering::Relaxed), 10);
    assert_eq!(hosts[0].balance("racy"), Some(0));
    audit_passes(&hosts[2]);
}

#[test]
fn a_new_user_hitting_three_hosts_at_once_is_welcomed_once() {
    let cluster = Hosts::start(3, &[]);
    let hosts = &cluster.hosts;
    let start = Arc::new(Barrier::new(30));
    std::thread::scope(|scope| {
        for client in 0..30 {
            let host = &hosts[client % hosts.len()];
            let start = start.clone();
            scope.spawn(move || {
                let mut conn = host.connect();
                start.wait();
                let request = match client % 2 {
                    0 => json!({"op": "get", "user": "newcomer"}),
                    _ => topup("newcomer", 1),
                };
                let reply = ask(&mut conn, &request).unwrap();
                assert_eq!(reply["ok"], true, "{reply}");
            });
        }
    });
    assert_eq!(hosts[0].balance("newcomer"), Some(150 - 15 + 15));
    let history = hosts[1].memes_json(&["history", "--user", "newcomer"]);
    let welcomes = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "welcome")
        .count();
    assert_eq!(welcomes, 1, "{history}");
    assert_eq!(history[0]["kind"], "welcome", "the grant comes first");
    audit_passes(&hosts[2]);
}

#[test]
fn kill_9_of_one_host_under_load_keeps_every_acknowledged_change() {
    let mut cluster = Hosts::start(3, &[]);
    let stop = AtomicBool::new(false);
    let victim_pid = cluster.hosts[0].pid();
    let results: Vec<(String, u64, bool)> = std::thread::scope(|scope| {
        let hosts = &cluster.hosts;
        let workers: Vec<_> = (0..12)
            .map(|client| {
                let host = &hosts[client % 3];
                let stop = &stop;
                scope.spawn(move || {
                    let user = format!("k9-{client}");
                    let mut conn = host.connect();
                    let mut acknowledged = 0;
                    while !stop.load(Ordering::Relaxed) {
                        match ask(&mut conn, &topup(&user, 1)) {
                            Some(reply) if reply["ok"] == true => acknowledged += 1,
                            Some(reply) => panic!("{reply}"),
                            None => return (user, acknowledged, true),
                        }
                    }
                    (user, acknowledged, false)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim_pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    cluster.hosts[0].kill9();
    let survivor = &cluster.hosts[1];
    for (user, acknowledged, cut_off) in results {
        let balance = survivor.balance(&user).unwrap_or(150) - 150;
        match cut_off {
            // One change may have been in flight when its host died: committed or not.
            true => assert!(
                (acknowledged..=acknowledged + 1).contains(&balance),
                "{user}: {acknowledged} acknowledged, balance +{balance}"
            ),
            false => assert_eq!(balance, acknowledged, "{user}"),
        }
        assert!(acknowledged > 0, "{user} made progress");
    }
    audit_passes(survivor);
    cluster.hosts[0].restart();
    audit_passes(&cluster.hosts[0]);
}

#[test]
fn restarting_postgres_under_load_loses_nothing_and_every_host_serves_again_by_itself() {
    let cluster = Cluster::private();
    let url = cluster.create_database("memes");
    let hosts = Hosts::on(&url, 3, &[]);
    let stop = AtomicBool::new(false);
    let results: Vec<(String, u64, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..9)
            .map(|client| {
                let host = &hosts[client % 3];
                let stop = &stop;
                scope.spawn(move || {
                    let user = format!("r-{client}");
                    let mut conn = host.connect();
                    let (mut acknowledged, mut unconfirmed) = (0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        let reply = ask(&mut conn, &topup(&user, 1)).expect("the host stays up");
                        if reply["ok"] == true {
                            acknowledged += 1;
                            continue;
                        }
                        assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
                        let message = reply["error"]["message"].as_str().unwrap();
                        if message.contains("may or may not") {
                            unconfirmed += 1;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    (user, acknowledged, unconfirmed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        cluster.stop();
        // While the database is down, hosts say so and refuse changes within the deadline.
        std::thread::sleep(Duration::from_millis(300));
        let status = hosts[2].connect().request(r#"{"op":"status"}"#);
        assert_eq!(status["data"]["writable"], false, "{status}");
        let asked = Instant::now();
        let refused = hosts[1]
            .connect()
            .request(&topup("while-down", 1).to_string());
        assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "{:?}",
            asked.elapsed()
        );
        let balance = hosts[0]
            .connect()
            .request(r#"{"op":"balance","user":"r-0"}"#);
        assert_eq!(balance["error"]["code"], "unavailable", "{balance}");
        cluster.start_again();
        let back = Instant::now();
        // Every host serves again by itself, within 10 s.
        for host in &hosts {
            let mut conn = host.connect();
            loop {
                let reply = conn.request(&topup("after", 1).to_string());
                if reply["ok"] == true {
                    break;
                }
                assert!(back.elapsed() < Duration::from_secs(10), "{reply}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (user, acknowledged, unconfirmed) in results {
        let balance = hosts[0].balance(&user).unwrap() - 150;
        assert!(
            (acknowledged..=acknowledged + unconfirmed).contains(&balance),
            "{user}: {acknowledged} acknowledged, {unconfirmed} unconfirmed, balance +{balance}"
        );
    }
    assert_eq!(hosts[2].balance("after"), Some(153));
    let status = hosts[2].connect().request(r#"{"op":"status"}"#);
    assert_eq!(status["data"]["writable"], true, "{status}");
    audit_passes(&hosts[0]);
    drop(hosts);
}

#[test]
fn an_idempotent_generated_meme_replayed_by_another_host_is_the_same_image() {
    let cluster = Hosts::start(2, &[]);
    let (a, b) = (&cluster.hosts[0], &cluster.hosts[1]);
    assert_ne!(a.data_dir, b.data_dir);
    a.memes_json(&["entitle", "--user", "prem", "--tier", "premium"]);
    let args = [
        "get",
        "--user",
        "prem",
        "--generate",
        "--query",
        "monday meeting",
        "--idempotency-key",
        "gen-1",
    ];
    let first = a.memes_json(&args);
    let again = b.memes_json(&args);
    let (first, again) = (&first["generated"], &again["generated"]);
    assert_eq!(first["sha256"], again["sha256"]);
    let read = |v: &Value| std::fs::read(v["path"].as_str().unwrap()).unwrap();
    assert!(
        again["path"]
            .as_str()
            .unwrap()
            .starts_with(b.data_dir.to_str().unwrap())
    );
    assert_eq!(read(first), read(again), "byte-identical on both hosts");
    assert_eq!(b.balance("prem"), Some(145), "charged once");
}

/// Holds from three hosts at once on one account, each ended twice at the same moment
/// through two other hosts (a capture and a void: a double click, or two workers), while
/// other clients buy memes from the same tokens: every hold ends exactly once, no charge
/// takes what a hold set aside, and the balance is the welcome grant less exactly what was
/// captured and charged.
#[test]
fn holds_ended_twice_at_once_through_other_hosts_end_once_and_charges_never_take_them() {
    const HOLDERS: usize = 6;
    const ROUNDS: usize = 8;
    const BUYERS: usize = 6;
    const GETS: usize = 15;
    let cluster = Hosts::start(3, &[]);
    let hosts = &cluster.hosts;
    hosts[0].memes_json(&["topup", "--user", "held", "--amount", "50"]);
    let start = Arc::new(Barrier::new(HOLDERS + BUYERS));
    let (captured, charged) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        let holders: Vec<_> = (0..HOLDERS)
            .map(|holder| {
                let (start, captured) = (start.clone(), &captured);
                scope.spawn(move || {
                    let mut own = hosts[holder % 3].connect();
                    let mut capturer = hosts[(holder + 1) % 3].connect();
                    let mut voider = hosts[(holder + 2) % 3].connect();
                    start.wait();
                    for round in 0..ROUNDS {
                        let hold = json!({"op": "hold", "user": "held", "amount": 4, "ttl": "1m"});
                        let held = ask(&mut own, &hold).expect("a reply");
                        if held["ok"] != true {
                            assert_eq!(held["error"]["code"], "insufficient_tokens", "{held}");
                            continue;
                        }
                        let id = held["data"]["hold"].as_u64().unwrap();
                        let capture = json!({"op": "capture", "hold": id, "amount": 1 + round % 4});
                        let void = json!({"op": "void", "hold": id, "user": "held"});
                        // Both ends at once, through two other hosts.
                        let (by_capture, by_void) = std::thread::scope(|both| {
                            let c = both.spawn(|| ask(&mut capturer, &capture).expect("a reply"));
                            let v = both.spawn(|| ask(&mut voider, &void).expect("a reply"));
                            (c.join().unwrap(), v.join().unwrap())
                        });
                        let ended: Vec<&Value> = [&by_capture, &by_void]
                            .into_iter()
                            .filter(|reply| reply["ok"] == true)
                            .collect();
                        assert_eq!(ended.len(), 1, "{by_capture}\n{by_void}");
                        let loser = [&by_capture, &by_void]
                            .into_iter()
                            .find(|reply| reply["ok"] != true)
                            .unwrap();
                        assert_eq!(loser["error"]["code"], "hold_closed", "{loser}");
                        if by_capture["ok"] == true {
                            assert_eq!(by_capture["data"]["state"], "captured", "{by_capture}");
                            let spent = by_capture["data"]["captured"].as_u64().unwrap();
                            captured.fetch_add(spent, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for buyer in 0..BUYERS {
            let (start, charged) = (start.clone(), &charged);
            scope.spawn(move || {
                let mut conn = hosts[buyer % 3].connect();
                start.wait();
                for _ in 0..GETS {
                    let reply = ask(&mut conn, &json!({"op": "get", "user": "held"})).unwrap();
                    match reply["ok"].as_bool() {
                        Some(true) => {
                            let cost = reply["data"]["charged"].as_u64().unwrap();
                            charged.fetch_add(cost, Ordering::Relaxed);
                        }
                        _ => {
                            assert_eq!(reply["error"]["code"], "insufficient_tokens", "{reply}")
                        }
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
            });
        }
        for holder in holders {
            holder.join().unwrap();
        }
    });
    let spent = captured.load(Ordering::Relaxed) + charged.load(Ordering::Relaxed);
    assert!(
        captured.load(Ordering::Relaxed) > 0,
        "some holds were captured"
    );
    for host in hosts {
        assert_eq!(host.balance("held"), Some(200 - spent));
    }
    audit_passes(&hosts[1]);
}

/// Refunds of one charge through three hosts at the same moment: each host decides on the
/// refunds of it read under the account's row lock, so together they never give back more
/// than it spent, and the balance and the audit agree.
#[test]
fn one_charge_refunded_at_once_through_three_hosts_gives_back_at_most_what_it_spent() {
    const ROUNDS: usize = 10;
    const REFUNDERS: usize = 6;
    let cluster = Hosts::start(3, &[]);
    let hosts = &cluster.hosts;
    hosts[0].memes_json(&["topup", "--user", "refunded", "--amount", "100"]);
    let mut charges = Vec::new();
    let (mut spent, mut refunded) = (0, 0);
    for round in 0..ROUNDS {
        let mut buyer = hosts[round % 3].connect();
        let get = json!({"op": "get", "user": "refunded", "count": 3});
        let got = ask(&mut buyer, &get).expect("a reply");
        assert_eq!(got["ok"], true, "{got}");
        let cost = got["data"]["charged"].as_u64().unwrap();
        spent += cost;
        let newest = hosts[0].memes_json(&["history", "--user", "refunded", "--limit", "1"]);
        assert_eq!(newest[0]["kind"], "charge", "{newest}");
        let charge = newest[0]["seq"].as_u64().unwrap();
        // Two tokens each, all at once, through every host: more than the charge altogether.
        let start = Barrier::new(REFUNDERS);
        let replies: Vec<Value> = std::thread::scope(|scope| {
            let refunders: Vec<_> = (0..REFUNDERS)
                .map(|i| {
                    let (host, start) = (&hosts[i % 3], &start);
                    scope.spawn(move || {
                        let mut conn = host.connect();
                        let refund = json!({"op": "refund", "entry": charge, "amount": 2});
                        start.wait();
                        ask(&mut conn, &refund).expect("a reply")
                    })
                })
                .collect();
            refunders.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut given = 0;
        for reply in &replies {
            match reply["ok"].as_bool() {
                Some(true) => given += reply["data"]["refunded"].as_u64().unwrap(),
                _ => assert_eq!(reply["error"]["code"], "invalid_argument", "{reply}"),
            }
        }
        // As serial execution would: two at a time while two are left, the rest refused.
        let fitted = (cost / 2 * 2).min(2 * REFUNDERS as u64);
        assert_eq!(given, fitted, "a charge of {cost}: {replies:?}");
        refunded += given;
        charges.push((charge, cost - given));
    }
    for host in hosts {
        assert_eq!(host.balance("refunded"), Some(250 - spent + refunded));
    }
    // What is left of each charge, refunded through another host: each charge in full.
    for (i, (charge, left)) in charges.into_iter().enumerate() {
        let rest = hosts[i % 3].memes(&["refund", "--entry", &charge.to_string()]);
        match left {
            0 => assert_eq!(rest.code, 2, "{}", rest.stderr),
            _ => assert_eq!(rest.code, 0, "{}", rest.stderr),
        }
    }
    for host in hosts {
        assert_eq!(host.balance("refunded"), Some(250));
    }
    audit_passes(&hosts[2]);
}

/// Every host runs the expirer (`--expire-every`), and each sees the same accounts due at
/// the same instant: each lot is written off exactly once, and so is each hold released.
#[test]
fn three_expirers_on_one_database_write_each_expiry_exactly_once() {
    const USERS: usize = 24;
    let cluster = Hosts::start(3, &["--expire-every", "50ms"]);
    let hosts = &cluster.hosts;
    // One instant for them all, so that every host finds them due in the same rounds.
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2)).to_string();
    for user in 0..USERS {
        let mut conn = hosts[user % hosts.len()].connect();
        let credit = json!({"op": "topup", "user": format!("e{user}"), "amount": 10,
                            "expires_at": at});
        let reply = ask(&mut conn, &credit).expect("a reply");
        assert_eq!(reply["ok"], true, "{reply}");
        let held = json!({"op": "hold", "user": format!("e{user}"), "amount": 5,
                          "ttl": "2s"});
        let reply = ask(&mut conn, &held).expect("a reply");
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let kinds = |host: &Daemon, user: &str| -> Vec<String> {
        let history = host.memes_json(&["history", "--user", user]);
        history
            .as_array()
            .expect("a list of entries")
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for user in 0..USERS {
        let user = format!("e{user}");
        while kinds(&hosts[0], &user).len() < 5 {
            assert!(
                Instant::now() < deadline,
                "{user}: {:?}",
                kinds(&hosts[0], &user)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Many more rounds of every host: still once.
    std::thread::sleep(Duration::from_millis(500));
    for index in 0..USERS {
        let user = format!("e{index}");
        let mut written = kinds(&hosts[index % hosts.len()], &user);
        // The hold's release and the lot's expiry may be in either order (the hold took
        // from the lot first, and gives back to it before it expires, or expires after).
        written[3..].sort();
        assert_eq!(
            written,
            ["welcome", "topup", "hold", "expire", "release"],
            "{user}"
        );
        for host in hosts {
            assert_eq!(host.balance(&user), Some(150), "{user}");
        }
    }
    audit_passes(&hosts[1]);
}

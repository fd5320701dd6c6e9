//! Floods of expensive reads: history pages must not take the daemon from charges and
//! top-ups (issue 17, fault 1).

use crate::harness::{Conn, Daemon};
use serde_json::json;
use std::time::{Duration, Instant};

/// Threads of a process, from /proc.
fn threads(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[test]
fn a_history_flood_waits_its_turn_and_top_ups_go_on() {
    // The queue of journal reads is the file store's.
    let daemon = Daemon::start_file();
    // A long history: 12,000 entries, written by top-ups pipelined 200 at a time (the
    // daemon holds at most 256 replies per connection).
    let mut conn = daemon.connect();
    let topup = json!({"op": "topup", "user": "busy", "amount": 1}).to_string() + "\n";
    for _ in 0..60 {
        assert!(conn.send(topup.repeat(200).as_bytes()));
        for _ in 0..200 {
            assert_eq!(conn.read_reply().unwrap()["ok"], true);
        }
    }
    let pid = daemon.pid();
    let idle_threads = threads(pid);

    // 48 clients ask for the newest 5,000 entries at once. (Sized so that the last reply
    // comes well within a connection's 30 s read timeout on a busy two-core machine running
    // a debug build and other tests: the reads are served one after another.)
    let page = json!({"op": "history", "user": "busy", "limit": 5_000}).to_string() + "\n";
    let mut flooders: Vec<Conn> = (0..48).map(|_| daemon.connect()).collect();
    for flooder in &mut flooders {
        assert!(flooder.send(page.as_bytes()));
    }
    // Meanwhile a top-up is answered, and the reads do not fan out over threads.
    let started = Instant::now();
    let topup = conn.request(&json!({"op": "topup", "user": "payer", "amount": 5}).to_string());
    assert_eq!(topup["ok"], true, "{topup}");
    let topup_took = started.elapsed();
    let mut most_threads = threads(pid);
    let (mut served, mut busy) = (0, 0);
    for flooder in &mut flooders {
        most_threads = most_threads.max(threads(pid));
        let reply = flooder.read_reply().expect("a reply");
        match reply["ok"].as_bool() {
            Some(true) => {
                assert_eq!(reply["data"]["entries"].as_array().unwrap().len(), 5_000);
                served += 1;
            }
            _ => {
                assert_eq!(reply["error"]["code"], "busy", "{reply}");
                busy += 1;
            }
        }
    }
    eprintln!(
        "{served} pages served, {busy} refused as busy; a top-up took {topup_took:?} during the flood; threads {idle_threads} idle, {most_threads} at most"
    );
    assert_eq!(
        (served, busy),
        (48, 0),
        "every client's read waits its turn (each has one at a time)"
    );
    assert!(
        most_threads <= idle_threads + 2,
        "reads run on one thread, not one each: {idle_threads} -> {most_threads}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

//! Fault tests judged by the history checker ([`crate::history`]): clients send keyed and
//! unkeyed charges and top-ups through two memesd hosts while faults are injected between the
//! hosts and PostgreSQL; after the faults heal, the checker judges every reply against the
//! ledger. Always on PostgreSQL (a fresh database in the test process's cluster, reached
//! through [`crate::proxy`]), whatever `MEMES_TEST_STORE` says.

use crate::harness::{Conn, Daemon, TestDatabase};
use crate::history::{Change, History, Outcome};
use crate::proxy::Proxy;
use memes::store::pg::testing::cluster;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift), one per client: the same seed gives the same
/// operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One client: random changes on a few shared users (named `{users}-0` to `{users}-3`) until
/// `stop`, recording each; a keyed change whose outcome is unknown is retried once with its
/// key, as a client should. A host that is gone is connected to again (on its socket).
/// Closed loop (a 2 ms pause between changes), or with `every`, open loop: one change per
/// `every` on a fixed schedule, whatever the replies take (catching up when behind).
pub fn client(
    n: usize,
    users: &str,
    host: &Path,
    every: Option<Duration>,
    history: &History,
    stop: &AtomicBool,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1));
    let mut conn = None;
    let mut sent = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let r = rng.next();
        let user = format!("{users}-{}", r % 4);
        let change = match (r >> 8) % 3 {
            0 => Change::Charge,
            // One credit in four opens a lot that expires within the test, of a random
            // priority and kind: charges then span lots and meet expiries.
            1 if (r >> 40).is_multiple_of(4) => Change::Credit {
                amount: 1 + (r >> 16) as i64 % 20,
                expires_in_ms: 500 + (r >> 44) % 2_500,
                priority: ((r >> 24) % 101) as u8,
                promo: (r >> 56).is_multiple_of(2),
            },
            1 => Change::Topup(1 + (r >> 16) as i64 % 20),
            _ => Change::Topup(-1 - (r >> 16) as i64 % 5),
        };
        let key = (r >> 32)
            .is_multiple_of(2)
            .then(|| format!("{users}-c{n}-{sent}"));
        sent += 1;
        let mut op = history.invoke(n, &user, change.clone(), key.clone());
        for attempt in 0..2 {
            if conn.is_none() {
                conn = Conn::open(host).ok();
            }
            if conn.is_none() {
                // Not sent: the host is down (a fault test killed it), nothing was done.
                let refused =
                    json!({"ok": false, "error": {"code": "host_down", "message": "not sent"}});
                history.complete(&op, Some(&refused));
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            let reply = conn.as_mut().and_then(|conn| {
                match conn.send(format!("{}\n", op.request()).as_bytes()) {
                    true => conn.read_reply(),
                    false => None,
                }
            });
            if reply.is_none() {
                conn = None;
            }
            let outcome = history.complete(&op, reply.as_ref());
            match (outcome, &key) {
                (Outcome::Unknown(_), Some(_)) if attempt == 0 => {
                    op = history.invoke(n, &user, change.clone(), key.clone());
                }
                _ => break,
            }
        }
        match every {
            None => std::thread::sleep(Duration::from_millis(2)),
            Some(every) => {
                next += every;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

#[test]
fn cut_refused_and_slow_connections_to_postgres_lose_nothing_and_apply_nothing_twice() {
    let database = TestDatabase::create();
    let proxy = Proxy::start(cluster().socket_dir().join(".s.PGSQL.5432"));
    let url = format!(
        "host={} user=postgres dbname={} target_session_attrs=read-write",
        proxy.dir().display(),
        database.name
    );
    let hosts: Vec<Daemon> = (0..2)
        .map(|_| Daemon::start_file_with(&["--store", &url, "--store-pool", "8"]))
        .collect();
    let history = History::new();
    let stop = AtomicBool::new(false);
    let began = Instant::now();
    let mut cuts = 0;
    std::thread::scope(|scope| {
        for n in 0..6 {
            let (host, history, stop) = (&hosts[n % 2].socket, &history, &stop);
            scope.spawn(move || client(n, "f", host, None, history, stop));
        }
        let at = |seconds: f64| {
            let until = Duration::from_secs_f64(seconds);
            if let Some(wait) = until.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
        };
        at(0.7);
        cuts += proxy.cut_all();
        at(1.4);
        proxy.delay(Duration::from_millis(30));
        at(2.2);
        cuts += proxy.cut_all();
        at(3.0);
        proxy.delay(Duration::ZERO);
        // The database unreachable for a while: every connection cut, none accepted.
        proxy.refuse(true);
        cuts += proxy.cut_all();
        at(4.0);
        proxy.refuse(false);
        at(4.6);
        cuts += proxy.cut_all();
        at(6.5);
        stop.store(true, Ordering::Relaxed);
    });
    assert!(cuts > 0, "no connection was cut");
    let verdict = history.check(&hosts[0]);
    eprintln!("{verdict:?}, {cuts} connections cut");
    assert!(verdict.ok > 200, "too little got through: {verdict:?}");
    assert_eq!(
        verdict.unknown, 0,
        "ambiguous replies while PostgreSQL was reachable: {verdict:?}"
    );
}

//! Fault tests on a replicated PostgreSQL (three nodes under Patroni and etcd, each in its
//! own network namespace, started by scripts/patroni-cluster.sh), judged by the history
//! checker ([`crate::history`]): clients send keyed and unkeyed charges and top-ups through
//! two memesd hosts on the multi-host URL while the primary is killed (also with one host on
//! a slow link), frozen or cut off, a memesd host is killed or etcd restarts, and a reader
//! follows a balance. Each test checks: nothing acknowledged lost, nothing applied twice, no
//! ambiguous reply outside the fault, changes succeed again within 15 s of a primary's
//! failure, no request fails outside the outage, reads never fail, the old primary never
//! leads again; and prints its figures on one line (`figures: …`, RELIABILITY.md has them).
//! The drill runs the same faults in turn under open-loop load for ten minutes.
//!
//! They need the cluster, so they are `#[ignore]`d in the plain run and run, one at a time,
//! by scripts/failover-drill.sh (which scripts/test.sh calls; `--drill` for the drill).

use crate::faults::client;
use crate::harness::{Conn, Daemon};
use crate::history::{History, Op, Outcome};
use crate::proxy::SlowLink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The replicated cluster scripts/patroni-cluster.sh started, from the environment it sets.
struct Replicated {
    url: String,
    /// The nodes' addresses, in the URL's order.
    hosts: Vec<String>,
    /// `$MEMES_CLUSTER_NODE`: acts on one node (kill, freeze, cut, …).
    node: String,
}

impl Replicated {
    fn from_env() -> Replicated {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is unset: run this test through scripts/failover-drill.sh")
            })
        };
        Replicated {
            url: var("MEMES_CLUSTER_URL"),
            hosts: var("MEMES_CLUSTER_HOSTS")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            node: var("MEMES_CLUSTER_NODE"),
        }
    }

    /// Runs `$MEMES_CLUSTER_NODE args…`; its standard output.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.node).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.node,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Waits until there is a leader and two streaming standbys (ready for a fault), at most
    /// `within`.
    fn settled(&self, within: Duration) {
        self.run(&["settled", &within.as_secs().to_string()]);
    }

    /// The node (1 to 3) whose Patroni says it leads, if one does.
    fn leader(&self) -> Option<usize> {
        (1..=3).find(|n| self.run(&[&n.to_string(), "role"]) == "leader")
    }

    fn act(&self, n: usize, action: &str) {
        self.run(&[&n.to_string(), action]);
    }
}

/// What goes wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// kill -9 of the primary's Patroni and postmaster; Patroni started again afterwards.
    Kill,
    /// SIGSTOP of every process of the primary's node, longer than Patroni's ttl, then
    /// SIGCONT: a zombie that still thinks it is the primary.
    Freeze,
    /// Every packet in and out of the primary's node dropped (cut off from etcd, the other
    /// nodes and the memesd hosts), then let through again.
    Cut,
    /// kill -9 of one memesd host (half the clients use it), started again 5 s later.
    KillHost,
    /// etcd stopped and started again (Patroni's consensus store, away about a second).
    RestartEtcd,
}

impl Fault {
    /// Whether it takes the primary away, so that the cluster must fail over.
    fn fails_over(self) -> bool {
        matches!(self, Fault::Kill | Fault::Freeze | Fault::Cut)
    }
}

/// What a reader saw.
#[derive(Default)]
struct Reads {
    answered: usize,
    /// Answered by a standby (the reply says `stale`).
    stale: usize,
    /// When, and the reply.
    failed: Vec<(Duration, String)>,
}

/// Reads `user`'s balance through the host at `socket` every 50 ms until `stop`.
fn read_balances(socket: &Path, user: &str, reads: &Mutex<Reads>, stop: &AtomicBool) {
    let began = std::time::Instant::now();
    let mut conn = Conn::open(socket).unwrap();
    let request = serde_json::json!({"op": "balance", "user": user}).to_string();
    while !stop.load(Ordering::Relaxed) {
        let reply = conn.request(&request);
        let mut reads = reads.lock().unwrap();
        match (&reply["ok"], &reply["error"]["code"]) {
            (serde_json::Value::Bool(true), _) => {
                reads.answered += 1;
                reads.stale += usize::from(reply["data"]["stale"].is_object());
            }
            // Before the first change reached this user.
            (_, code) if code == "not_found" => reads.answered += 1,
            _ => reads.failed.push((began.elapsed(), reply.to_string())),
        }
        drop(reads);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long a primary's fault lasts: longer than Patroni's ttl (8 s), so the cluster fails
/// over.
const HELD: Duration = Duration::from_secs(18);
/// The target: changes succeed again within this of the primary's failure.
const RESUMED_WITHIN: Duration = Duration::from_secs(15);
/// How long a cluster may take to have a leader and two streaming standbys again after a
/// fault. An old primary that cannot be rewound is cloned afresh: after minutes of the drill's
/// load, a gigabyte.
const SETTLED_WITHIN: Duration = Duration::from_secs(600);
/// After writes resume, how long errors are still counted as the outage's.
const SETTLING: Duration = Duration::from_secs(2);

/// The times at which changes were acknowledged, in order.
fn acknowledged(ops: &[Op]) -> Vec<Duration> {
    let mut at: Vec<Duration> = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .filter_map(|op| op.completed)
        .collect();
    at.sort();
    at
}

/// The outage a fault at `fault_at` caused: the longest window without an acknowledged change
/// that overlaps the fault (from the last change acknowledged before it to the first after).
fn outage(ops: &[Op], fault_at: Duration) -> (Duration, Duration) {
    acknowledged(ops)
        .windows(2)
        .map(|w| (w[0], w[1]))
        .filter(|(_, to)| *to >= fault_at && *to <= fault_at + HELD + RESUMED_WITHIN)
        .max_by_key(|(from, to)| *to - *from)
        .expect("no change succeeded after the fault")
}

/// The longest time between two acknowledged changes.
fn longest_gap(ops: &[Op]) -> Duration {
    acknowledged(ops)
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// An outcome that is an error (not a refusal by the rules of the money: a change that
/// would take a balance below zero, or take tokens from a user never seen).
fn is_error(op: &Op) -> bool {
    match &op.outcome {
        Outcome::Ok(_) => false,
        Outcome::Refused(code) => !matches!(code.as_str(), "insufficient_tokens" | "not_found"),
        Outcome::Unknown(_) | Outcome::Pending => true,
    }
}

/// A fault as it happened.
struct Injected {
    fault: Fault,
    /// The primary before the fault.
    old: usize,
    at: Duration,
    /// When another node led (a primary's fault).
    promoted: Option<Duration>,
    undone: Duration,
}

impl Injected {
    /// When errors may be, for which clients: from the fault (a request sent just before it
    /// may be in flight) to a moment after writes resumed (a primary just promoted may refuse
    /// a connection as read-only for a fraction of a second), or after the killed host is
    /// back, and then only for the killed host's clients (the even ones). etcd's restart is
    /// no outage at all. Also the outage itself (from the last change acknowledged before
    /// the fault to the first after).
    fn window(&self, ops: &[Op]) -> (Option<(Duration, Duration)>, (Duration, Duration)) {
        let (stopped, resumed) = outage(ops, self.at);
        let from = self.at.saturating_sub(Duration::from_secs(1));
        let window = match self.fault {
            _ if self.fault.fails_over() => Some((from.min(stopped), resumed + SETTLING)),
            Fault::KillHost => Some((from, self.undone + SETTLING)),
            _ => None,
        };
        (window, (stopped, resumed))
    }
}

/// Whether `op`'s error falls in `fault`'s error `window`.
fn explains(fault: &Injected, window: Option<(Duration, Duration)>, op: &Op) -> bool {
    window.is_some_and(|(from, to)| {
        op.invoked >= from
            && op.invoked <= to
            && (fault.fault.fails_over() || op.client.is_multiple_of(2))
    })
}

/// Makes `fault` happen (a primary's for [`HELD`]) and undoes it, then waits until the cluster
/// has settled (the old primary back as a standby, rewound if it must be, under load: it must
/// never receive a write) and checks who leads.
fn inject(fault: Fault, cluster: &Replicated, hosts: &mut [Daemon], history: &History) -> Injected {
    let clock = |what: &str| {
        eprintln!(
            "{fault:?}: {what} at {:.1} s",
            history.elapsed().as_secs_f64()
        )
    };
    let old = cluster.leader().expect("a leader before the fault");
    let at = history.elapsed();
    let mut promoted = None;
    match fault {
        Fault::Kill | Fault::Freeze | Fault::Cut => {
            let (fail, undo) = match fault {
                Fault::Kill => ("kill", "start"),
                Fault::Freeze => ("freeze", "thaw"),
                _ => ("cut", "heal"),
            };
            cluster.act(old, fail);
            clock(&format!("{fail} node{old}"));
            // When another node leads (Patroni promoted it), polled through its REST API.
            while history.elapsed() < at + HELD {
                if promoted.is_none()
                    && let Some(new) = cluster.leader()
                    && new != old
                {
                    promoted = Some(history.elapsed());
                    clock(&format!("node{new} promoted"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            cluster.act(old, undo);
        }
        Fault::KillHost => {
            hosts[0].kill9();
            clock("memesd host 0 killed");
            std::thread::sleep(Duration::from_secs(5));
            hosts[0].restart();
        }
        Fault::RestartEtcd => {
            cluster.run(&["etcd", "restart"]);
            clock("etcd restarted");
            std::thread::sleep(Duration::from_secs(5));
        }
    }
    let undone = history.elapsed();
    clock("undone");
    cluster.settled(SETTLED_WITHIN);
    // (Patroni issue #2689: a thawed old leader could take the leader key back.)
    let leader = cluster.leader();
    match fault.fails_over() {
        true => assert!(
            leader.is_some() && leader != Some(old),
            "{fault:?}: node{old} leads again after coming back ({leader:?})"
        ),
        false => assert_eq!(leader, Some(old), "{fault:?}: the leader changed"),
    }
    Injected {
        fault,
        old,
        at,
        promoted,
        undone,
    }
}

/// Two memesd hosts on the cluster; with `slow`, the second reaches every node through a
/// [`SlowLink`] of that latency each way (the links are returned, to keep them up).
fn hosts(cluster: &Replicated, slow: Option<Duration>) -> (Vec<Daemon>, Vec<SlowLink>) {
    let start = |url: &str| Daemon::start_file_with(&["--store", url, "--store-pool", "8"]);
    let Some(delay) = slow else {
        return (vec![start(&cluster.url), start(&cluster.url)], Vec::new());
    };
    let links: Vec<SlowLink> = cluster
        .hosts
        .iter()
        .map(|host| SlowLink::start(format!("{host}:5432").parse().unwrap(), delay))
        .collect();
    let through: Vec<String> = links.iter().map(SlowLink::addr).collect();
    let url = format!(
        "postgres://postgres@{}/memes?target_session_attrs=read-write",
        through.join(",")
    );
    (vec![start(&cluster.url), start(&url)], links)
}

/// Checks that every error in `ops` falls in the window of one of `faults`; that a reply is
/// ambiguous only for a change whose COMMIT was in flight at a primary's fault and whose
/// deadline passed before a primary was reachable (it names its commit id), or one a killed
/// host never answered; and that reads never failed (and came from a standby during a
/// primary's outage).
fn check_errors(faults: &[Injected], ops: &[Op], reads: &Reads) {
    let windows: Vec<_> = faults.iter().map(|fault| fault.window(ops).0).collect();
    for op in ops.iter().filter(|op| is_error(op)) {
        let Some(fault) = (faults.iter().zip(&windows))
            .find(|(fault, window)| explains(fault, **window, op))
            .map(|(fault, _)| fault)
        else {
            panic!("op {} failed outside every outage: {op:?}", op.id);
        };
        if let Outcome::Unknown(message) = &op.outcome {
            assert!(
                message.contains("commit id") || matches!(fault.fault, Fault::KillHost),
                "{:?}: op {} ambiguous without a commit id: {message}",
                fault.fault,
                op.id
            );
        }
    }
    assert!(reads.failed.is_empty(), "reads failed: {:?}", reads.failed);
    if faults.iter().any(|fault| fault.fault.fails_over()) {
        assert!(reads.stale > 0, "no read came from a standby");
    }
}

/// Under load through two memesd hosts (the second on a link of latency `slow` each way, if
/// given), `fault` happens (a primary's for [`HELD`]), then is undone; the run goes on until
/// the cluster has settled again and a little after, then the history is checked and the
/// figures printed.
fn survive(fault: Fault, slow: Option<Duration>) {
    let cluster = Replicated::from_env();
    cluster.settled(SETTLED_WITHIN);
    let users = format!("{fault:?}{}", slow.map_or("", |_| "-slow")).to_lowercase();
    let (mut hosts, _links) = hosts(&cluster, slow);
    let sockets: Vec<PathBuf> = hosts.iter().map(|host| host.socket.clone()).collect();
    let history = History::new();
    let stop = AtomicBool::new(false);
    // Someone whose balance a reader follows through the second host.
    let (reads, read_user) = (Mutex::new(Reads::default()), format!("{users}-0"));
    let mut injected = None;
    std::thread::scope(|scope| {
        for n in 0..8 {
            let (host, history, stop, users) = (&sockets[n % 2], &history, &stop, &users);
            scope.spawn(move || client(n, users, host, None, history, stop));
        }
        let (reads, stop, reader, read_user) = (&reads, &stop, &sockets[1], &read_user);
        scope.spawn(move || read_balances(reader, read_user, reads, stop));
        std::thread::sleep(Duration::from_secs(3));
        injected = Some(inject(fault, &cluster, &mut hosts, &history));
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
    });
    let injected = injected.unwrap();
    let verdict = history.check(&hosts[1]);
    let ops = history.ops();
    let reads = reads.into_inner().unwrap();
    let (_, (_, resumed)) = injected.window(&ops);
    let errors = ops.iter().filter(|op| is_error(op)).count();
    let ambiguous = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Unknown(_) | Outcome::Pending))
        .count();
    let after = |at: Option<Duration>, since: Duration| {
        at.map_or("-".into(), |at| {
            format!("{:.1}", at.saturating_sub(since).as_secs_f64())
        })
    };
    println!(
        "figures: fault={fault:?}{} requests={} errors={errors} ambiguous={ambiguous} lost=0 \
         twice=0 longest_without_change_s={:.1} resumed_after_s={:.1} promoted_after_s={} \
         memesd_after_promotion_s={} reads={} read_errors={} reads_from_a_standby={}",
        slow.map_or(String::new(), |delay| format!(
            " slow_link_ms={}",
            delay.as_millis()
        )),
        ops.len(),
        longest_gap(&ops).as_secs_f64(),
        (resumed - injected.at).as_secs_f64(),
        after(injected.promoted, injected.at),
        injected
            .promoted
            .map_or("-".into(), |promoted| after(Some(resumed), promoted)),
        reads.answered + reads.failed.len(),
        reads.failed.len(),
        reads.stale
    );
    eprintln!("{verdict:?}");
    if fault.fails_over() {
        assert!(
            resumed - injected.at < RESUMED_WITHIN,
            "{fault:?}: changes succeeded again only {:?} after the fault",
            resumed - injected.at
        );
    }
    check_errors(&[injected], &ops, &reads);
}

/// The drill: open-loop load (`MEMES_DRILL_RATE` changes a second, 2,000 by default, from 32
/// clients through two hosts) for `MEMES_DRILL_MINUTES` (10), with a primary's fault every
/// two minutes from the first (kill -9, freeze, cut, in turn). Prints the availability it
/// measured and every outage; checks the history, that every error falls in an outage and
/// that writes came back within 15 s each time.
fn drill() {
    let number =
        |name: &str, default: f64| std::env::var(name).map_or(default, |v| v.parse().expect(name));
    let (minutes, rate) = (
        number("MEMES_DRILL_MINUTES", 10.0),
        number("MEMES_DRILL_RATE", 2000.0),
    );
    let total = Duration::from_secs_f64(minutes * 60.0);
    let clients = 32;
    let every = Duration::from_secs_f64(clients as f64 / rate);
    let cluster = Replicated::from_env();
    cluster.settled(SETTLED_WITHIN);
    let (mut hosts, _) = hosts(&cluster, None);
    let sockets: Vec<PathBuf> = hosts.iter().map(|host| host.socket.clone()).collect();
    let history = History::new();
    let stop = AtomicBool::new(false);
    let (reads, read_user) = (Mutex::new(Reads::default()), "drill-0".to_string());
    let mut injected = Vec::new();
    std::thread::scope(|scope| {
        for n in 0..clients {
            let (host, history, stop) = (&sockets[n % 2], &history, &stop);
            scope.spawn(move || client(n, "drill", host, Some(every), history, stop));
        }
        let (reads, stop, reader, read_user) = (&reads, &stop, &sockets[1], &read_user);
        scope.spawn(move || read_balances(reader, read_user, reads, stop));
        let faults = [Fault::Kill, Fault::Freeze, Fault::Cut];
        for k in 0.. {
            // Every two minutes from the first; later if the cluster took longer to settle.
            let at = Duration::from_secs(60 + 120 * k as u64).max(history.elapsed());
            if at + HELD + Duration::from_secs(30) > total {
                break;
            }
            if let Some(wait) = at.checked_sub(history.elapsed()) {
                std::thread::sleep(wait);
            }
            injected.push(inject(faults[k % 3], &cluster, &mut hosts, &history));
        }
        if let Some(wait) = total.checked_sub(history.elapsed()) {
            std::thread::sleep(wait);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = history.elapsed();
    let verdict = history.check(&hosts[1]);
    let ops = history.ops();
    let reads = reads.into_inner().unwrap();
    let errors = ops.iter().filter(|op| is_error(op)).count();
    let (mut down, mut slow) = (Duration::ZERO, Vec::new());
    for fault in &injected {
        let (_, (stopped, resumed)) = fault.window(&ops);
        down += resumed - stopped;
        println!(
            "drill: {:?} of node{} at {:.1} s: no change acknowledged from {:.1} to {:.1} s \
             ({:.1} s), Patroni promoted after {}",
            fault.fault,
            fault.old,
            fault.at.as_secs_f64(),
            stopped.as_secs_f64(),
            resumed.as_secs_f64(),
            (resumed - stopped).as_secs_f64(),
            fault.promoted.map_or("-".into(), |p| format!(
                "{:.1} s",
                (p - fault.at).as_secs_f64()
            )),
        );
        if resumed - fault.at >= RESUMED_WITHIN {
            slow.push(format!(
                "{:?} at {:.1} s: changes succeeded again only {:.1} s after it",
                fault.fault,
                fault.at.as_secs_f64(),
                (resumed - fault.at).as_secs_f64()
            ));
        }
    }
    let mut latencies: Vec<Duration> = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .filter_map(|op| Some(op.completed? - op.invoked))
        .collect();
    latencies.sort();
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "figures: drill minutes={minutes} asked_rate={rate} sent_rate={:.0} requests={} \
         acknowledged={} errors={errors} ambiguous={} availability_by_requests={:.4} \
         availability_by_time={:.4} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} faults={} \
         reads={} read_errors={} reads_from_a_standby={}",
        ops.len() as f64 / elapsed.as_secs_f64(),
        ops.len(),
        verdict.ok,
        verdict.unknown,
        verdict.ok as f64 / (verdict.ok + errors) as f64,
        1.0 - down.as_secs_f64() / elapsed.as_secs_f64(),
        quantile(0.5).as_secs_f64() * 1e3,
        quantile(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        injected.len(),
        reads.answered + reads.failed.len(),
        reads.failed.len(),
        reads.stale
    );
    eprintln!("{verdict:?}");
    // Checked after every figure is out, so that a miss still shows the whole run.
    check_errors(&injected, &ops, &reads);
    assert!(slow.is_empty(), "{}", slow.join("; "));
}

#[test]
#[ignore = "needs the replicated cluster: scripts/failover-drill.sh runs it"]
fn kill_9_of_the_primary() {
    survive(Fault::Kill, None);
}

#[test]
#[ignore = "needs the replicated cluster: scripts/failover-drill.sh runs it"]
fn the_primary_frozen_longer_than_the_ttl_then_thawed() {
    survive(Fault::Freeze, None);
}

#[test]
#[ignore = "needs the replicated cluster: scripts/failover-drill.sh runs it"]
fn the_primary_cut_off_from_etcd_the_nodes_and_the_hosts() {
    survive(Fault::Cut, None);
}

#[test]
#[ignore = "needs the replicated cluster: scripts/failover-drill.sh runs it"]
fn kill_9_of_a_memesd_host() {
    survive(Fault::KillHost, None);
}

#[test]
#[ignore = "needs the replicated cluster: scripts/failover-drill.sh runs it"]
fn etcd_restarts() {
    survive(Fault::RestartEtcd, None);
}

#[test]
#[ignore = "the drill (10 minutes): scripts/failover-drill.sh --drill runs it"]
fn drill_with_a_failover_every_two_minutes() {
    drill();
}

/// A slow link (30 ms each way) between the second memesd host and every node, and the
/// primary killed meanwhile.
#[test]
#[ignore = "needs the replicated cluster: scripts/failover-drill.sh runs it"]
fn kill_9_of_the_primary_with_a_host_on_a_slow_link() {
    survive(Fault::Kill, Some(Duration::from_millis(30)));
}

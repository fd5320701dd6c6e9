//! A history of client operations under faults, and the checker that judges it against the
//! ledger once the faults have healed (Jepsen's bank test, for memes). Reusable by every fault
//! test: record each change a client sends ([`History::invoke`], [`History::complete`]), then
//! [`History::check`] with one healthy host.
//!
//! What it checks, per user, from the user's complete ledger history (`history`, every page):
//! - every acknowledged top-up is there exactly once, every refused one is absent, an
//!   unknown one at most once (each top-up carries its operation's id as its `reason`);
//! - unkeyed charges: as many as acknowledged, plus at most the unknown ones (a charge
//!   entry cannot name its operation, so they are counted);
//! - every idempotency key is on at most one entry, and every acknowledged reply for one key
//!   is identical;
//! - no balance is ever negative, each entry's balance is the previous one plus its delta,
//!   and the last one is the account's balance;
//! - charges equal deliveries: each charge entry takes one token per meme it names;
//! - and `memes audit` passes.
//!
//! A violation panics with the operations around it (that user's, ordered by invocation).
//! It does not inject faults or drive load: the tests do.

use crate::harness::Daemon;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A change a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `get`: one meme, one token.
    Charge,
    /// `topup` of this amount (may be negative).
    Topup(i64),
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not answered yet.
    Pending,
    /// `ok`: the reply's data.
    Ok(Value),
    /// An error that says nothing was done (its code).
    Refused(String),
    /// The outcome is unknown: the connection died, or the reply says it may or may not
    /// have been applied.
    Unknown(String),
}

/// One client operation.
#[derive(Debug, Clone)]
pub struct Op {
    pub id: usize,
    pub client: usize,
    pub user: String,
    pub change: Change,
    pub key: Option<String>,
    /// A top-up's reason: names this operation in the ledger.
    pub reason: String,
    pub invoked: Duration,
    pub completed: Option<Duration>,
    pub outcome: Outcome,
}

impl Op {
    /// The request line for this operation.
    pub fn request(&self) -> Value {
        let mut request = match self.change {
            Change::Charge => json!({"op": "get", "user": self.user, "query": "cats"}),
            Change::Topup(amount) => json!({
                "op": "topup", "user": self.user, "amount": amount,
                "reason": self.reason,
            }),
        };
        if let Some(key) = &self.key {
            request["idempotency_key"] = json!(key);
        }
        request
    }
}

/// Every operation of a test, in invocation order.
pub struct History {
    /// Tells this history's operations from any other's in the same ledger.
    tag: String,
    began: Instant,
    ops: Mutex<Vec<Op>>,
}

/// What the checker counted.
#[derive(Debug, Default)]
pub struct Verdict {
    pub ok: usize,
    pub refused: usize,
    pub unknown: usize,
    pub entries: usize,
}

impl History {
    pub fn new() -> History {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        History {
            tag: format!("h{}-{n}", std::process::id()),
            began: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Records an operation as invoked; returns it (with its id) to send.
    pub fn invoke(&self, client: usize, user: &str, change: Change, key: Option<String>) -> Op {
        let mut ops = self.ops.lock().unwrap();
        let op = Op {
            id: ops.len(),
            client,
            user: user.to_string(),
            change,
            key,
            reason: format!("{}-op-{}", self.tag, ops.len()),
            invoked: self.began.elapsed(),
            completed: None,
            outcome: Outcome::Pending,
        };
        ops.push(op.clone());
        op
    }

    /// Records how `op` ended: its reply, or None when the connection died before one came.
    pub fn complete(&self, op: &Op, reply: Option<&Value>) -> Outcome {
        let outcome = match reply {
            None => Outcome::Unknown("no reply: the connection died".into()),
            Some(reply) if reply["ok"] == true => Outcome::Ok(reply["data"].clone()),
            Some(reply) => {
                let code = reply["error"]["code"].as_str().unwrap_or("").to_string();
                let message = reply["error"]["message"].as_str().unwrap_or("");
                match message.contains("may or may not") {
                    true => Outcome::Unknown(message.to_string()),
                    false => Outcome::Refused(code),
                }
            }
        };
        let mut ops = self.ops.lock().unwrap();
        ops[op.id].completed = Some(self.began.elapsed());
        ops[op.id].outcome = outcome.clone();
        outcome
    }

    /// The operations recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    /// Since this history began (the clock of its operations' times).
    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    /// Judges the history against the ledger as `host` reads it now (after the faults
    /// healed). Panics on the first violation, printing the operations around it.
    pub fn check(&self, host: &Daemon) -> Verdict {
        let ops = self.ops();
        let mut verdict = Verdict::default();
        for op in &ops {
            match op.outcome {
                Outcome::Ok(_) => verdict.ok += 1,
                Outcome::Refused(_) => verdict.refused += 1,
                Outcome::Unknown(_) | Outcome::Pending => verdict.unknown += 1,
            }
        }
        let mut by_user: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for op in &ops {
            by_user.entry(op.user.as_str()).or_default().push(op);
        }
        let mut replies_by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
        for op in &ops {
            if let (Some(key), Outcome::Ok(_)) = (&op.key, &op.outcome) {
                replies_by_key.entry(key.as_str()).or_default().push(op);
            }
        }
        for (key, acknowledged) in &replies_by_key {
            let first = reply_of(acknowledged[0]);
            if let Some(other) = acknowledged.iter().find(|op| reply_of(op) != first) {
                fail(
                    &ops,
                    &other.user,
                    &format!("key {key}: two acknowledged replies differ"),
                );
            }
        }
        let mut key_entries: HashMap<String, usize> = HashMap::new();
        for (user, user_ops) in &by_user {
            let entries = ledger_history(host, user);
            verdict.entries += entries.len();
            check_entries(&ops, user, &entries, host);
            check_topups(&ops, user, user_ops, &entries);
            check_charges(&ops, user, user_ops, &entries);
            for entry in &entries {
                if let Some(key) = entry["key"].as_str() {
                    *key_entries.entry(key.to_string()).or_default() += 1;
                }
            }
        }
        for (key, count) in &key_entries {
            if *count > 1 {
                let user = ops
                    .iter()
                    .find(|op| op.key.as_deref() == Some(key))
                    .map_or("", |op| op.user.as_str());
                fail(&ops, user, &format!("key {key} is on {count} entries"));
            }
        }
        let audit = host.memes_json(&["audit"]);
        assert_eq!(audit["ok"], true, "memes audit: {audit}");
        verdict
    }
}

/// An acknowledged reply, without what legitimately differs between two replays (nothing:
/// a replay is the stored reply, byte for byte, so compare it whole).
fn reply_of(op: &Op) -> Value {
    match &op.outcome {
        Outcome::Ok(data) => data.clone(),
        _ => Value::Null,
    }
}

/// A user's complete history, oldest first (following `next`).
fn ledger_history(host: &Daemon, user: &str) -> Vec<Value> {
    let mut conn = host.connect();
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut request = json!({"op": "history", "user": user, "limit": 1000});
        if let Some(cursor) = &before {
            request["before"] = json!(cursor);
        }
        let reply = conn.request(&request.to_string());
        if reply["error"]["code"] == "not_found" {
            return Vec::new();
        }
        assert_eq!(reply["ok"], true, "history of {user}: {reply}");
        pages.push(reply["data"]["entries"].as_array().unwrap().clone());
        match reply["data"]["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    pages.into_iter().rev().flatten().collect()
}

/// Balances: never negative, each the previous plus its delta, the last the account's;
/// charges take one token per meme delivered.
fn check_entries(ops: &[Op], user: &str, entries: &[Value], host: &Daemon) {
    let mut balance: i64 = 0;
    for entry in entries {
        let delta = entry["delta"].as_i64().unwrap();
        let after = entry["balance"].as_i64().unwrap();
        if after < 0 {
            fail(ops, user, &format!("a negative balance: {entry}"));
        }
        if balance + delta != after {
            fail(
                ops,
                user,
                &format!("balance {balance} + delta {delta} is not {after}: {entry}"),
            );
        }
        if entry["kind"] == "charge" {
            let memes = entry["memes"].as_array().map_or(0, Vec::len) as i64;
            if memes == 0 || delta != -memes {
                fail(
                    ops,
                    user,
                    &format!("a charge that is not one token per meme delivered: {entry}"),
                );
            }
        }
        balance = after;
    }
    if let Some(stored) = host.balance(user)
        && stored as i64 != balance
    {
        fail(
            ops,
            user,
            &format!("the account says {stored}, its entries {balance}"),
        );
    }
}

/// Top-ups, by the operation id in their reason: acknowledged once, refused never, unknown
/// at most once.
fn check_topups(ops: &[Op], user: &str, user_ops: &[&Op], entries: &[Value]) {
    let on_key = entries_by_key(entries);
    let mut found: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        if let Some(reason) = entry["reason"].as_str() {
            *found.entry(reason.to_string()).or_default() += 1;
        }
    }
    for op in user_ops {
        let Change::Topup(_) = op.change else {
            continue;
        };
        let times = found.get(&op.reason).copied().unwrap_or(0);
        let wrong = match (&op.outcome, &op.key) {
            // A keyed top-up may be a retry, replayed from the entry of the first operation
            // with its key: the key must be on exactly one entry.
            (Outcome::Ok(_), Some(key)) => on_key.get(key.as_str()) != Some(&1),
            (Outcome::Ok(_), None) => times != 1,
            (Outcome::Refused(_), _) => times != 0,
            (Outcome::Unknown(_) | Outcome::Pending, _) => times > 1,
        };
        if wrong {
            fail(
                ops,
                user,
                &format!("op {} ({:?}) is on {times} entries", op.id, op.outcome),
            );
        }
    }
}

/// Unkeyed charges, counted: at least the acknowledged ones, at most those plus the unknown.
/// Keyed charges: each key on at most one entry (checked with every key), and a key with an
/// acknowledged charge on exactly one.
fn check_charges(ops: &[Op], user: &str, user_ops: &[&Op], entries: &[Value]) {
    let on_key = entries_by_key(entries);
    let charges = |keyed: bool| {
        entries
            .iter()
            .filter(|e| e["kind"] == "charge" && e["key"].is_string() == keyed)
            .count()
    };
    let unkeyed = user_ops
        .iter()
        .filter(|op| op.change == Change::Charge && op.key.is_none());
    let acknowledged = unkeyed
        .clone()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .count();
    let unknown = unkeyed
        .filter(|op| matches!(op.outcome, Outcome::Unknown(_) | Outcome::Pending))
        .count();
    let found = charges(false);
    if found < acknowledged || found > acknowledged + unknown {
        fail(
            ops,
            user,
            &format!(
                "{found} unkeyed charges in the ledger, {acknowledged} acknowledged, {unknown} unknown"
            ),
        );
    }
    for op in user_ops {
        if let (Change::Charge, Some(key), Outcome::Ok(_)) = (&op.change, &op.key, &op.outcome) {
            let on = on_key.get(key.as_str()).copied().unwrap_or(0);
            if on != 1 {
                fail(
                    ops,
                    user,
                    &format!("acknowledged keyed charge {key} is on {on} entries"),
                );
            }
        }
    }
}

/// How many of `entries` carry each idempotency key (counted once: a drill's history has a
/// million operations).
fn entries_by_key(entries: &[Value]) -> HashMap<&str, usize> {
    let mut on_key = HashMap::new();
    for key in entries.iter().filter_map(|e| e["key"].as_str()) {
        *on_key.entry(key).or_default() += 1;
    }
    on_key
}

/// Panics with the violation and `user`'s operations (the most recent 40 before the end).
fn fail(ops: &[Op], user: &str, violation: &str) -> ! {
    let around: Vec<String> = ops
        .iter()
        .filter(|op| op.user == user)
        .map(|op| {
            format!(
                "  op {:>5} client {:>2} at {:>9.3}s..{:<9} {:?} key {:?}: {:?}",
                op.id,
                op.client,
                op.invoked.as_secs_f64(),
                op.completed
                    .map_or("?".to_string(), |c| format!("{:.3}s", c.as_secs_f64())),
                op.change,
                op.key,
                op.outcome
            )
        })
        .collect();
    let shown = &around[around.len().saturating_sub(40)..];
    panic!(
        "history check failed for {user}: {violation}\n{} operations of {user}, the last {}:\n{}",
        around.len(),
        shown.len(),
        shown.join("\n")
    );
}

/// The checker can fail: a change acknowledged but absent, and one refused but present, are
/// both caught (on a real daemon, with the history made up around what it really did).
#[test]
fn the_checker_catches_a_lost_change_and_a_refused_change_that_was_applied() {
    let daemon = Daemon::start();
    let judge = |record_as: Option<Value>, send: bool| {
        let history = History::new();
        let op = history.invoke(0, "h", Change::Topup(5), None);
        let reply = match send {
            true => Some(daemon.connect().request(&op.request().to_string())),
            false => None,
        };
        history.complete(&op, record_as.as_ref().or(reply.as_ref()));
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| history.check(&daemon)))
            .map(|verdict| verdict.ok)
            .map_err(|panic| match panic.downcast::<String>() {
                Ok(message) => *message,
                Err(_) => "a panic".into(),
            })
    };
    // Sent and acknowledged: the history holds.
    assert_eq!(judge(None, true), Ok(1));
    // Acknowledged, never sent: lost.
    let lost = judge(
        Some(json!({"ok": true, "data": {"new_balance": 160}})),
        false,
    );
    let lost = lost.unwrap_err();
    assert!(lost.contains("is on 0 entries"), "{lost}");
    assert!(lost.contains("operations of h"), "{lost}");
    // Sent and applied, recorded as refused.
    let refused = json!({"ok": false, "error": {"code": "unavailable", "message": "no"}});
    let applied = judge(Some(refused), true).unwrap_err();
    assert!(applied.contains("is on 1 entries"), "{applied}");
}

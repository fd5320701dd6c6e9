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
//! - no balance is ever negative, and each entry's balance is the previous one plus its
//!   delta;
//! - charges equal deliveries: each charge entry takes one token per meme it names;
//! - the lots add up: each credit opens a lot (numbered by its entry), each debit and expiry
//!   names the lots it took from and takes what its delta says, never more than a lot holds
//!   and never from an expired lot; what the checker's replay leaves in each lot is what
//!   `lots` lists now, and the account's balance is the last entry's less what is left in
//!   the lots that expired since (a read never counts an expired lot; its `expire` entry
//!   may not be written yet);
//! - and `memes audit` passes (which replays the burn order and the expiries).
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
    /// A top-up that opens a lot with terms: it expires this long after it is made, is spent
    /// by this priority (0-100), and is promotional or paid.
    Credit {
        amount: i64,
        expires_in_ms: u64,
        priority: u8,
        promo: bool,
    },
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
            Change::Credit {
                amount,
                expires_in_ms,
                priority,
                promo,
            } => json!({
                "op": "topup", "user": self.user, "amount": amount,
                "reason": self.reason, "expires_in": format!("{expires_in_ms}ms"),
                "priority": priority, "promo": promo,
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
            check_entries(&ops, user, &entries);
            check_lots(&ops, user, &entries, host);
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

/// Balances: never negative, each the previous plus its delta; charges take one token per
/// meme delivered.
fn check_entries(ops: &[Op], user: &str, entries: &[Value]) {
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
}

/// The lots, replayed from the entries: credits open them, debits and expiries take what
/// they say from the lots they name; then compared with what `lots` lists.
fn check_lots(ops: &[Op], user: &str, entries: &[Value], host: &Daemon) {
    // Lot id → what is left of it, and whether it has expired.
    let mut lots: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
    for entry in entries {
        let delta = entry["delta"].as_i64().unwrap();
        let takes = entry["from"].as_array().map_or(&[][..], Vec::as_slice);
        match entry["kind"].as_str().unwrap() {
            "welcome" | "topup" if delta > 0 => {
                let seq = entry["seq"].as_u64().unwrap();
                if entry["lot"].as_u64() != Some(seq) {
                    fail(
                        ops,
                        user,
                        &format!("a credit that opens no lot of its own: {entry}"),
                    );
                }
                lots.insert(seq, (delta as u64, false));
            }
            "charge" | "deduct" | "expire" => {
                let mut taken = 0;
                for take in takes {
                    let (id, tokens) = (
                        take["lot"].as_u64().unwrap(),
                        take["tokens"].as_u64().unwrap(),
                    );
                    let Some((left, expired)) = lots.get_mut(&id) else {
                        fail(
                            ops,
                            user,
                            &format!("takes from lot {id}, never opened: {entry}"),
                        );
                    };
                    if *expired || tokens == 0 || tokens > *left {
                        fail(
                            ops,
                            user,
                            &format!(
                                "takes {tokens} from lot {id}, which holds {left} (expired: {expired}): {entry}"
                            ),
                        );
                    }
                    *left -= tokens;
                    taken += tokens as i64;
                    if entry["kind"] == "expire" {
                        if *left != 0 {
                            fail(
                                ops,
                                user,
                                &format!("an expiry that leaves tokens in lot {id}: {entry}"),
                            );
                        }
                        *expired = true;
                    }
                }
                if taken != -delta {
                    fail(
                        ops,
                        user,
                        &format!("takes {taken} from its lots for a delta of {delta}: {entry}"),
                    );
                }
            }
            _ => {}
        }
    }
    // The balance and the lots as of one instant: nothing else runs, but lots go on
    // expiring, so the lots are read before and after the balance until they agree.
    let mut conn = host.connect();
    let mut read = |op: &str| conn.request(&json!({"op": op, "user": user}).to_string());
    let (balance, reply) = (0..50)
        .find_map(|_| {
            let before = read("lots");
            let balance = read("balance");
            let after = read("lots");
            (before["data"]["lots"] == after["data"]["lots"]).then_some((balance, after))
        })
        .unwrap_or_else(|| panic!("{user}'s lots kept changing while read"));
    if reply["error"]["code"] == "not_found" {
        return;
    }
    assert_eq!(reply["ok"], true, "lots of {user}: {reply}");
    let balance = balance["data"]["balance"].as_u64().expect("a balance");
    let listed = reply["data"]["lots"].as_array().unwrap();
    // Lots with tokens left that `lots` no longer lists expired since the last change.
    let expired_since: u64 = lots
        .iter()
        .filter(|(id, (left, expired))| {
            *left > 0 && !expired && !listed.iter().any(|lot| lot["id"] == **id)
        })
        .map(|(_, (left, _))| left)
        .sum();
    let last = entries
        .last()
        .map_or(0, |entry| entry["balance"].as_u64().unwrap());
    if balance + expired_since != last {
        fail(
            ops,
            user,
            &format!(
                "the account says {balance}; its entries say {last}, less {expired_since} in lots expired since"
            ),
        );
    }
    for lot in listed {
        let (id, remaining) = (
            lot["id"].as_u64().unwrap(),
            lot["remaining"].as_u64().unwrap(),
        );
        if lots.get(&id).map(|(left, _)| *left) != Some(remaining) {
            fail(
                ops,
                user,
                &format!(
                    "lot {id} holds {remaining}; its entries leave {:?}",
                    lots.get(&id)
                ),
            );
        }
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
        if !matches!(op.change, Change::Topup(_) | Change::Credit { .. }) {
            continue;
        }
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

/// The lots' accounting can fail too: a debit from a lot never opened, one that takes more
/// than its delta says, more than a lot holds, or from an expired lot.
#[test]
fn the_checker_catches_lots_that_do_not_add_up() {
    let daemon = Daemon::start();
    let credit = json!({"seq": 1, "kind": "topup", "delta": 5, "balance": 5, "lot": 1});
    let expiry = json!({"seq": 2, "kind": "expire", "delta": -5, "balance": 0,
                        "from": [{"lot": 1, "tokens": 5}]});
    let judge = |entries: Vec<Value>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_lots(&[], "nobody", &entries, &daemon)
        }))
        .map_err(|panic| match panic.downcast::<String>() {
            Ok(message) => *message,
            Err(_) => "a panic".into(),
        })
    };
    let charge =
        |from: Value| json!({"seq": 3, "kind": "charge", "delta": -2, "balance": 3, "from": from});
    assert_eq!(
        judge(vec![
            credit.clone(),
            charge(json!([{"lot": 1, "tokens": 2}]))
        ]),
        Ok(())
    );
    let cases = [
        (
            vec![credit.clone(), charge(json!([{"lot": 7, "tokens": 2}]))],
            "never opened",
        ),
        (
            vec![credit.clone(), charge(json!([{"lot": 1, "tokens": 1}]))],
            "for a delta of -2",
        ),
        (
            vec![credit.clone(), charge(json!([{"lot": 1, "tokens": 6}]))],
            "which holds 5",
        ),
        (
            vec![
                credit.clone(),
                expiry,
                charge(json!([{"lot": 1, "tokens": 2}])),
            ],
            "expired: true",
        ),
    ];
    for (entries, says) in cases {
        let failure = judge(entries).unwrap_err();
        assert!(failure.contains(says), "{failure}");
    }
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

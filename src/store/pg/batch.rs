//! Group commit at the application: a writer task owns a pooled connection and turns every
//! change waiting in the host's queue into one transaction; while a batch commits, the next
//! one queues (or, with several writers, is already being written by the next writer).
//!
//! A batch, in two round trips whatever its size:
//! 1. `BEGIN`; lock the batch's accounts with `SELECT … FOR UPDATE ORDER BY user_id` (one
//!    fixed order, so hosts never deadlock each other over accounts); read the batch's
//!    idempotency keys. Sent together (pipelined).
//! 2. Decide each change in request order with [`rules::decide`] on the locked rows, as
//!    serial execution would: a user's later change sees the earlier one's result, a refused
//!    change (insufficient tokens, a key conflict) is refused alone and the others go on, a
//!    key already used (in the table or earlier in the batch) replays its reply. Then write
//!    everything in one statement (`INSERT … SELECT FROM unnest(…)`, `UPDATE … FROM
//!    unnest(…)` as data-modifying CTEs) and `COMMIT`, pipelined; only once the COMMIT
//!    succeeded is any waiter answered.
//!
//! Entries take their `seq` from the sequence in row order, so a user's entries are numbered
//! in the order they were applied (their account row is locked from before the first number
//! is drawn until COMMIT).
//!
//! Failures: a deadlock, a serialization failure or a unique violation (another host opened
//! the same new account, or used the same new key, at the same moment) rolls the batch back
//! and decides it again on fresh rows, a bounded number of times. A lost connection before
//! COMMIT is discarded and the batch retried on a new one until the changes' deadline, then
//! refused as `unavailable`. A connection lost *during* COMMIT leaves the outcome unknown:
//! those changes get an error saying so (a keyed retry is safe). Nothing is answered as
//! applied unless its COMMIT succeeded.

use super::columns::{EntryColumns, Extras, KeyColumns};
use super::{PgConfig, db_error};
use crate::domain::AccountView;
use crate::store::rules::{self, Change, KeyUse};
use crate::store::{Outcome, ReplyBuilder, StoreError};
use crate::telemetry;
use deadpool_postgres::{Object, Pool};
use serde_json::value::RawValue;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

/// A change waiting for its batch.
pub struct Pending {
    pub user: String,
    pub change: Change,
    pub memes: Vec<String>,
    pub reason: Option<String>,
    pub keyed: Option<OwnedKey>,
    pub time_ms: i64,
    /// When it was asked for: its deadline runs from here.
    pub asked: Instant,
    pub done: oneshot::Sender<Result<Applied, StoreError>>,
}

/// A change's idempotency key, owned so it can cross to the writer task.
pub struct OwnedKey {
    pub key: String,
    pub fingerprint: String,
    pub reply: ReplyBuilder,
}

/// What a committed change did.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Applied: the account after it.
    Account(AccountView),
    /// Its key was used before for the same request: the reply stored then.
    Replayed(Box<RawValue>),
}

impl Applied {
    pub fn into_outcome(self) -> Outcome<u64> {
        match self {
            Applied::Account(account) => Outcome::Applied(account.balance),
            Applied::Replayed(reply) => Outcome::Replayed(reply),
        }
    }
}

/// The writer's share of [`PgConfig`].
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    pub welcome: u64,
    pub deadline: Duration,
    pub max_batch: usize,
    pub attempts: u32,
}

impl From<&PgConfig> for WriterConfig {
    fn from(config: &PgConfig) -> WriterConfig {
        WriterConfig {
            welcome: config.welcome_tokens,
            deadline: config.change_deadline,
            max_batch: config.max_batch.max(1),
            attempts: config.attempts.max(1),
        }
    }
}

/// The shared end of the queue: each writer takes what is waiting when it is free.
pub type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>;

/// One writer task: batches until the queue closes (the store is closed or dropped) and
/// everything in it is answered. Several writers may share a queue: while one waits for its
/// COMMIT to be flushed, another locks, decides and writes the next batch (PostgreSQL then
/// flushes their commits together). A connection has at most one change in flight (it waits
/// for the answer), so a client's changes are still applied in the order it sent them;
/// accounts are locked in one order by every writer of every host.
pub async fn run(pool: Pool, queue: Queue, config: WriterConfig, writable: Arc<AtomicBool>) {
    let mut connection: Option<Object> = None;
    let mut batch = Vec::with_capacity(config.max_batch);
    loop {
        let received = queue
            .lock()
            .await
            .recv_many(&mut batch, config.max_batch)
            .await;
        if received == 0 {
            return;
        }
        let began = Instant::now();
        let results = commit(&pool, &mut connection, &batch, config, &writable).await;
        let took = began.elapsed();
        telemetry::store_commit(telemetry::Store::Postgres, took, batch.len());
        tracing::trace!(
            "batch of {} committed or refused in {} µs",
            batch.len(),
            took.as_micros()
        );
        for (pending, result) in batch.drain(..).zip(results) {
            let _ = pending.done.send(result);
        }
    }
}

/// Why one attempt at a batch failed.
enum Failure {
    /// Roll back and decide again (deadlock, serialization failure, a race on a new row).
    Retry(String),
    /// The connection is gone or unusable; nothing was committed.
    Lost(String),
    /// The connection failed during COMMIT: the outcome is unknown.
    Unknown(String),
    /// The database refused the batch (a constraint caught a wrong state, a read-only
    /// server): retrying would not help.
    Refused(String),
}

/// Commits one batch, with retries; one result per pending change, in order.
async fn commit(
    pool: &Pool,
    connection: &mut Option<Object>,
    batch: &[Pending],
    config: WriterConfig,
    writable: &AtomicBool,
) -> Vec<Result<Applied, StoreError>> {
    let oldest = batch
        .iter()
        .map(|p| p.asked)
        .min()
        .unwrap_or_else(Instant::now);
    let deadline = tokio::time::Instant::from_std(oldest + config.deadline);
    let mut attempt = 0;
    let mut pause = Duration::from_millis(20);
    let failure = loop {
        attempt += 1;
        let mut committing = false;
        let tried = tokio::time::timeout_at(
            deadline,
            attempt_batch(pool, connection, batch, config, &mut committing),
        );
        let failure = match tried.await {
            Ok(Ok(results)) => {
                writable.store(true, Ordering::Relaxed);
                return results;
            }
            Ok(Err(failure)) => failure,
            Err(_) => {
                // The connection may be stuck mid-statement: never hand it out again.
                discard(connection);
                writable.store(false, Ordering::Relaxed);
                let why = format!("PostgreSQL did not answer within {:?}", config.deadline);
                break match committing {
                    true => StoreError::Unconfirmed(why),
                    false => StoreError::Unavailable(why),
                };
            }
        };
        match failure {
            Failure::Retry(why) if attempt < config.attempts => {
                tracing::debug!("batch of {} retried: {why}", batch.len());
                continue;
            }
            Failure::Retry(why) => {
                break StoreError::Unavailable(format!("gave up after {attempt} attempts: {why}"));
            }
            Failure::Lost(why) => {
                discard(connection);
                writable.store(false, Ordering::Relaxed);
                let now = tokio::time::Instant::now();
                if attempt < config.attempts.max(64) && now + pause < deadline {
                    tracing::warn!("PostgreSQL connection lost ({why}); retrying the batch");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                    continue;
                }
                break StoreError::Unavailable(format!("PostgreSQL is unreachable: {why}"));
            }
            Failure::Unknown(why) => {
                discard(connection);
                writable.store(false, Ordering::Relaxed);
                break StoreError::Unconfirmed(why);
            }
            Failure::Refused(why) => {
                tracing::error!("PostgreSQL refused a batch of {}: {why}", batch.len());
                break StoreError::Unavailable(format!("PostgreSQL refused the change: {why}"));
            }
        }
    };
    batch.iter().map(|_| Err(failure.clone())).collect()
}

/// Takes a connection out of the pool for good (it is closed when dropped).
fn discard(connection: &mut Option<Object>) {
    if let Some(object) = connection.take() {
        drop(Object::take(object));
    }
}

/// Classifies a statement's error; `sent_commit` says whether COMMIT was under way.
fn classify(error: &tokio_postgres::Error, client_closed: bool, sent_commit: bool) -> Failure {
    let why = db_error(error);
    match error.code() {
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::UNIQUE_VIOLATION
                // statement_timeout, say while another host held a row lock too long
                || *code == SqlState::QUERY_CANCELED =>
        {
            Failure::Retry(why)
        }
        // The server is shutting down or restarting: the connection is going away.
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW =>
        {
            if sent_commit {
                Failure::Unknown(why)
            } else {
                Failure::Lost(why)
            }
        }
        Some(_) if !client_closed => Failure::Refused(why),
        _ if sent_commit => Failure::Unknown(why),
        _ => Failure::Lost(why),
    }
}

/// The rows one batch writes, column by column (for `unnest`).
#[derive(Default)]
struct Rows {
    // New accounts and changed accounts (their state after the batch).
    new: Columns4,
    changed: Columns4,
    // Entries, in the order they are numbered.
    entries: EntryColumns,
    // Keys first used in this batch.
    keys: KeyColumns,
}

#[derive(Default)]
struct Columns4 {
    user: Vec<String>,
    balance: Vec<i64>,
    tier: Vec<&'static str>,
    until: Vec<Option<i64>>,
}

impl Columns4 {
    fn push(&mut self, user: &str, account: &AccountView) {
        self.user.push(user.to_string());
        self.balance.push(account.balance as i64);
        self.tier.push(account.tier.as_str());
        self.until.push(account.until);
    }
}

const LOCK: &str = "SELECT user_id, balance, tier, until_ms FROM accounts
                    WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE";
const KEYS: &str = "SELECT key, fingerprint, reply FROM idempotency_keys WHERE key = ANY($1)";
/// Every row a batch writes, in one statement: new accounts, changed accounts, new keys
/// (data-modifying CTEs) and the entries (the main statement, so their numbers are drawn in
/// row order). A new account that another host opened meanwhile is a unique violation: the
/// batch is decided again.
const WRITE: &str = "WITH opened AS (
        INSERT INTO accounts (user_id, balance, tier, until_ms)
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
    ), updated AS (
        UPDATE accounts AS a SET balance = u.balance, tier = u.tier, until_ms = u.until_ms
        FROM unnest($5::text[], $6::bigint[], $7::text[], $8::bigint[])
             AS u (user_id, balance, tier, until_ms)
        WHERE a.user_id = u.user_id
    ), keyed AS (
        INSERT INTO idempotency_keys (key, fingerprint, reply)
        SELECT * FROM unnest($9::text[], $10::text[], $11::text[])
    )
    INSERT INTO entries (time_ms, user_id, kind, delta, balance, key, reason, memes, tier, until_ms)
    SELECT t, u, k, d, b, key, r,
           coalesce(m::text[], '{}'),
           tier, until
    FROM unnest($12::bigint[], $13::text[], $14::text[], $15::bigint[], $16::bigint[],
                $17::text[], $18::text[], $19::text[], $20::text[], $21::bigint[])
         AS x (t, u, k, d, b, key, r, m, tier, until)";

/// One attempt: lock, decide, write, commit.
async fn attempt_batch(
    pool: &Pool,
    connection: &mut Option<Object>,
    batch: &[Pending],
    config: WriterConfig,
    committing: &mut bool,
) -> Result<Vec<Result<Applied, StoreError>>, Failure> {
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        discard(connection);
        let fresh = pool.get().await.map_err(|e| Failure::Lost(e.to_string()))?;
        *connection = Some(fresh);
    }
    let client = connection.as_ref().expect("a connection");
    let fail = |e: tokio_postgres::Error| classify(&e, client.is_closed(), false);
    let (lock, keys_query, write) = tokio::try_join!(
        client.prepare_cached(LOCK),
        client.prepare_cached(KEYS),
        client.prepare_cached(WRITE),
    )
    .map_err(fail)?;

    let users: Vec<&str> = batch
        .iter()
        .map(|p| p.user.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|p| p.keyed.as_ref().map(|k| k.key.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // Round trip 1: begin, lock the accounts in user order, read the keys.
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&users];
    let (begun, locked, stored_keys) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query(&lock, &lock_params),
        async {
            match keys.is_empty() {
                true => Ok(Vec::new()),
                false => client.query(&keys_query, &[&keys]).await,
            }
        },
    );
    let read = begun
        .and(locked)
        .and_then(|locked| stored_keys.map(|keys| (locked, keys)));
    let (locked, stored_keys) = match read {
        Ok(read) => read,
        Err(error) => return Err(rollback(client, fail(error)).await),
    };

    // Decide, in request order, on the locked rows.
    let mut accounts: HashMap<&str, Option<AccountView>> =
        users.iter().map(|user| (*user, None)).collect();
    let mut existing: HashSet<String> = HashSet::new();
    for row in &locked {
        let user: String = row.get(0);
        let account = AccountView {
            balance: super::balance_from(row.get(1)),
            tier: super::tier_from(row.get(2)),
            until: row.get(3),
        };
        if let Some(slot) = accounts.get_mut(user.as_str()) {
            *slot = Some(account);
        }
        existing.insert(user);
    }
    let mut known_keys: HashMap<String, (String, Box<RawValue>)> = HashMap::new();
    for row in &stored_keys {
        let reply = RawValue::from_string(row.get(2))
            .map_err(|e| Failure::Refused(format!("a stored reply is not JSON: {e}")));
        let reply = match reply {
            Ok(reply) => reply,
            Err(failure) => return Err(rollback(client, failure).await),
        };
        known_keys.insert(row.get(0), (row.get(1), reply));
    }
    let mut rows = Rows::default();
    let mut touched: Vec<&str> = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        results.push(decide(
            pending,
            &mut accounts,
            &mut known_keys,
            &mut rows,
            &mut touched,
            config.welcome,
        ));
    }
    for user in touched.iter().collect::<BTreeSet<_>>() {
        let account = accounts[*user].as_ref().expect("a decided account");
        match existing.contains(*user) {
            true => rows.changed.push(user, account),
            false => rows.new.push(user, account),
        }
    }

    // Round trip 2: write everything and commit, pipelined. If the write fails, the
    // transaction is aborted and the COMMIT behind it only ends it (as a rollback).
    *committing = true;
    if rows.entries.is_empty() {
        // Only refusals and replays: nothing to write, the locks go with the transaction.
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify(&e, client.is_closed(), true))?;
        return Ok(results);
    }
    let (n, c) = (&rows.new, &rows.changed);
    let accounts: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &n.user, &n.balance, &n.tier, &n.until, &c.user, &c.balance, &c.tier, &c.until,
    ];
    let params: Vec<_> = accounts
        .into_iter()
        .chain(rows.keys.params())
        .chain(rows.entries.params())
        .collect();
    let (written, committed) = tokio::join!(
        client.execute(&write, &params),
        client.batch_execute("COMMIT"),
    );
    match (written, committed) {
        (Ok(_), Ok(())) => Ok(results),
        // The server refused the write: nothing was committed.
        (Err(error), _) if error.as_db_error().is_some() => {
            Err(classify(&error, client.is_closed(), false))
        }
        (Err(error), _) | (Ok(_), Err(error)) => Err(classify(&error, client.is_closed(), true)),
    }
}

/// Rolls back after a failed statement (if the connection still works) and passes the
/// failure on.
async fn rollback(client: &Object, failure: Failure) -> Failure {
    if !client.is_closed() && client.batch_execute("ROLLBACK").await.is_err() {
        return match failure {
            Failure::Unknown(why) => Failure::Unknown(why),
            Failure::Retry(why) | Failure::Lost(why) | Failure::Refused(why) => Failure::Lost(why),
        };
    }
    failure
}

/// Decides one change on the batch's state so far, and records what to write.
fn decide<'b>(
    pending: &'b Pending,
    accounts: &mut HashMap<&'b str, Option<AccountView>>,
    known_keys: &mut HashMap<String, (String, Box<RawValue>)>,
    rows: &mut Rows,
    touched: &mut Vec<&'b str>,
    welcome: u64,
) -> Result<Applied, StoreError> {
    if let Some(keyed) = &pending.keyed
        && let Some((fingerprint, reply)) = known_keys.get(&keyed.key)
    {
        return match rules::check_key(&keyed.key, Some(fingerprint), &keyed.fingerprint)? {
            KeyUse::Replay => Ok(Applied::Replayed(reply.clone())),
            KeyUse::New => unreachable!("a stored key is never new"),
        };
    }
    let user = pending.user.as_str();
    let before = accounts.get(user).copied().flatten();
    let decision = rules::decide(user, before.as_ref(), pending.change, welcome)?;
    let after = decision.after;
    let entries = decision.entries();
    let memes = match pending.memes.is_empty() {
        true => None,
        false => Some(super::array_literal(&pending.memes)),
    };
    let (tier, until) = match pending.change {
        Change::Entitle { tier, until } => (Some(tier), until),
        _ => (None, None),
    };
    rows.entries.push_request(
        pending.time_ms,
        &pending.user,
        entries,
        Extras {
            key: pending.keyed.as_ref().map(|keyed| keyed.key.as_str()),
            reason: pending.reason.as_deref(),
            memes,
            tier,
            until,
        },
    );
    if let Some(keyed) = &pending.keyed {
        let reply = (keyed.reply)(after.balance);
        rows.keys.push(&keyed.key, &keyed.fingerprint, reply.get());
        known_keys.insert(keyed.key.clone(), (keyed.fingerprint.clone(), reply));
    }
    accounts.insert(user, Some(after));
    touched.push(user);
    Ok(Applied::Account(after))
}

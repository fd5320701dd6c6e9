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
//! A batch on copies, in one round trip: a host keeps a copy of each account as its writers'
//! last COMMIT left it ([`Copies`]). A batch whose accounts are all copied and that carries no
//! idempotency key skips step 1: it is decided on the copies, and `BEGIN`, one statement and
//! `COMMIT` go together. That statement updates each changed account only if its row still
//! equals the copy (checked under the UPDATE's row lock, against the latest committed version),
//! appends entries only for the accounts it updated, and checks the accounts the batch left
//! unchanged (refusals) against their copies too. A user whose row differs (another host or
//! writer changed it) has nothing written; their changes go first into the next batch, which
//! locks and decides them on fresh rows; and since the rows are evidently shared, the host
//! takes the locking path for a while. The update locks rows in the sorted order of its input,
//! as step 1 does; a deadlock, should the planner ever order it otherwise, is retried like any.
//!
//! Entries take their `seq` from the sequence in row order, so a user's entries are numbered
//! in the order they were applied (their account row is locked from before the first number
//! is drawn until COMMIT).
//!
//! Lots: each account's lots are read with it (under its lock, or from the copy) and the
//! change is decided by [`rules::decide_lots`]. An account with many lots (more than
//! [`ALL_LOTS`]) is read in part on the locking path: only the lots its batch may touch
//! (see `LOTS`), so a charge costs the same whether the account holds ten lots or ten
//! thousand; such an account is never decided on a copy. A lot's id is the seq of the entry that
//! opened it, which is drawn only in the write: a lot opened in the batch is decided with a
//! provisional id ([`PROVISIONAL`] plus its entry's row number in the batch), and the write
//! statement puts the drawn seq in its place wherever it appears (the `lots` row, a take in
//! `lot_takes`) and returns it, so that the copies hold the real ids. The lots a batch
//! changed are written as what differs from before: lots opened, lots whose remainder
//! changed, lots gone (spent or expired). Every change bumps its account's `version`, which
//! is what a batch on copies compares (a balance can come back to the same number with
//! other lots).
//!
//! Holds ([`super::holds`]): the locking path reads each locked account's open holds (with
//! what they took from which lot), and the holds the batch's captures and voids name whatever
//! their state, in its first round trip, and draws from the `hold_ids` sequence an id for
//! each hold the batch makes (a stored reply names it before the write). The write statement
//! inserts the holds made and updates those ended, naming their entries by seq as it numbers
//! them. A batch with a hold, a capture or a void always takes the locking path, and an
//! account with open holds is never kept as a copy: the next change of it may have to release
//! one that expired, giving back to lots, all of which it then reads.
//!
//! Refunds ([`super::refunds`]): the locking path reads, in its first round trip and behind
//! the account's lock, the entry each refund names with the lots it took (each as it was)
//! and the sum already refunded of it, and reads the account's lots whole (what goes back may
//! re-open any lot). Refunds of one charge by two hosts therefore run one after the other,
//! the second reading the first's entry; within a batch, each refund adds to what the next
//! one of the same charge sees. A refund's entry is numbered only in the write, but its reply
//! (stored with its key) names it: it is decided with a provisional seq ([`PROVISIONAL`]
//! plus its row), which the write replaces in the stored reply and returns, and which the
//! batch's commit row keeps for a lookup after a lost COMMIT reply.
//!
//! Settles ([`Change::Settle`], what memesd's expirer asks for): decided like any change, on
//! the locked rows (the lots expired by the batch's time are read, an account with an expired
//! hold whole) or on a copy (written only if the row is still that copy). One that finds
//! nothing due writes nothing of its account, not even its version: of the hosts that settle
//! an account at once, the first writes what was due and the others find nothing.
//!
//! Failures: a deadlock, a serialization failure or a unique violation (another host opened
//! the same new account, or used the same new key, at the same moment) rolls the batch back
//! and decides it again on fresh rows, a bounded number of times. A lost connection before
//! COMMIT is discarded and the batch retried on a new one until the changes' deadline, then
//! refused as `unavailable`; but once no host gives a writable connection (no primary is
//! known, [`super::primary`]), waiting changes are refused at once, and so are new ones
//! until a primary is found. A server that turned read-only under a connection (a primary
//! demoted by a failover) counts as a lost connection: nothing was written, and the batch
//! goes to the new primary. A connection lost *during* COMMIT does not leave
//! the outcome unknown: every batch writes its own commit id (table `commits`) in its
//! transaction, and the writer looks it up on whichever server is the primary now, fencing
//! it if it is absent ([`look_up`]): committed, the changes get what was decided; not
//! committed (and now never), the batch is decided again. Only when nobody can be asked
//! before the deadline do the changes get `unavailable` saying the outcome is unknown, with
//! the commit id to look up later. Nothing is answered as applied unless its COMMIT
//! succeeded or its commit id was found.

use super::columns::{EntryColumns, Extras, KeyColumns, LotColumns, lot_from};
use super::holds::{self, HoldColumns};
use super::primary::Primary;
use super::refunds;
use super::{PgConfig, db_error, lock};
use crate::domain::{AccountView, EntryKind, Hold, HoldState, Lot};
use crate::store::recorded::RecordedEntry;
use crate::store::rules::{self, Change, KeyUse, Welcome};
use crate::store::{
    Changed, HoldSummary, Outcome, Refunded, ReplyBuilder, StoreError, StoredReply,
};
use crate::telemetry;
use deadpool_postgres::{Object, Pool};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

/// A change waiting for its batch.
pub struct Pending {
    pub user: String,
    pub change: Asked,
    pub memes: Vec<String>,
    pub reason: Option<String>,
    pub keyed: Option<OwnedKey>,
    pub time_ms: i64,
    /// When it was asked for: its deadline runs from here.
    pub asked: Instant,
    pub done: oneshot::Sender<Result<Applied, StoreError>>,
}

/// What a pending change asks the rules to decide.
#[derive(Debug, Clone, Copy)]
pub enum Asked {
    /// A change [`rules::decide_lots`] decides.
    Change(Change),
    /// A refund of entry `entry` ([`rules::decide_refund`]): `amount` tokens of it (all that
    /// is left if `None`); `named` when the request named the pending change's user (the
    /// entry must then be theirs).
    Refund {
        entry: u64,
        named: bool,
        amount: Option<u64>,
    },
}

/// A change's idempotency key, owned so it can cross to the writer task.
pub struct OwnedKey {
    pub key: String,
    pub fingerprint: String,
    pub reply: Reply,
}

/// How a keyed change's reply is made: from the account it changed, or from a refund.
pub enum Reply {
    Changed(ReplyBuilder),
    Refunded(ReplyBuilder<Refunded>),
}

/// What a committed change did.
#[derive(Debug, Clone)]
pub enum Applied {
    /// Applied: the account after it, the welcome grant if the change opened it, and the
    /// hold it made or ended.
    Account(AccountView, Option<u64>, Option<HoldSummary>),
    /// A refund applied (its `refund` seq provisional until the batch is written).
    Refunded(Refunded),
    /// A settle ([`Change::Settle`]): how many entries it wrote (0: nothing was due, and
    /// nothing of the account was written).
    Settled(u64),
    /// Its key was used before for the same request: the reply stored then.
    Replayed(StoredReply),
}

impl Applied {
    /// A change's outcome (a refund's is [`Applied::into_refunded`]).
    pub fn into_outcome(self) -> Result<Outcome<Changed>, StoreError> {
        match self {
            Applied::Account(account, welcome, hold) => Ok(Outcome::Applied(Changed {
                balance: account.balance,
                welcome,
                hold,
            })),
            Applied::Replayed(reply) => Ok(Outcome::Replayed(reply)),
            Applied::Refunded(_) | Applied::Settled(_) => Err(StoreError::Internal(
                "a change was answered as a refund or a settle".into(),
            )),
        }
    }

    /// A refund's outcome.
    pub fn into_refunded(self) -> Result<Outcome<Refunded>, StoreError> {
        match self {
            Applied::Refunded(refunded) => Ok(Outcome::Applied(refunded)),
            Applied::Replayed(reply) => Ok(Outcome::Replayed(reply)),
            Applied::Account(..) | Applied::Settled(_) => Err(StoreError::Internal(
                "a refund was answered as another change".into(),
            )),
        }
    }

    /// A settle's outcome: the entries it wrote.
    pub fn into_settled(self) -> Result<u64, StoreError> {
        match self {
            Applied::Settled(entries) => Ok(entries),
            _ => Err(StoreError::Internal(
                "a settle was answered as another change".into(),
            )),
        }
    }
}

/// The writer's share of [`PgConfig`].
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    pub welcome: Welcome,
    pub deadline: Duration,
    pub max_batch: usize,
    pub attempts: u32,
}

impl From<&PgConfig> for WriterConfig {
    fn from(config: &PgConfig) -> WriterConfig {
        WriterConfig {
            welcome: config.welcome(),
            deadline: config.change_deadline,
            max_batch: config.max_batch.max(1),
            attempts: config.attempts.max(1),
        }
    }
}

/// What a host's writers share with each other and with the store.
#[derive(Clone)]
pub struct Shared {
    /// False while the database is unreachable (or read-only) and changes fail.
    pub writable: Arc<AtomicBool>,
    /// The accounts as the writers last committed them.
    pub copies: Arc<Mutex<Copies>>,
    pub tally: Arc<Tally>,
    pub primary: Arc<Primary>,
}

/// The shared end of the queue: each writer takes what is waiting when it is free.
pub type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>;

/// How a host's batches went, for tests and traces.
#[derive(Debug, Default)]
pub struct Tally {
    /// Batches committed on copies, without the lock round trip.
    pub on_copies: AtomicU64,
    /// Changes decided on a stale copy, so decided again in the next batch.
    pub decided_again: AtomicU64,
}

/// One writer task: batches until the queue closes (the store is closed or dropped) and
/// everything in it is answered. Several writers may share a queue: while one waits for its
/// COMMIT to be flushed, another locks, decides and writes the next batch (PostgreSQL then
/// flushes their commits together). A connection has at most one change in flight (it waits
/// for the answer), so a client's changes are still applied in the order it sent them;
/// accounts are locked in one order by every writer of every host.
pub async fn run(pool: Pool, queue: Queue, config: WriterConfig, shared: Shared) {
    let mut connection: Option<Object> = None;
    let mut batch = Vec::with_capacity(config.max_batch);
    // Changes decided on a stale copy: first in the next batch, so each user's changes keep
    // their order.
    let mut again: Vec<Pending> = Vec::new();
    loop {
        if again.is_empty() {
            let received = queue
                .lock()
                .await
                .recv_many(&mut batch, config.max_batch)
                .await;
            if received == 0 {
                return;
            }
        } else {
            // Not waiting for the queue: another writer may be holding it, waiting for work.
            batch.append(&mut again);
            if let Ok(mut queue) = queue.try_lock() {
                while batch.len() < config.max_batch {
                    let Ok(pending) = queue.try_recv() else { break };
                    batch.push(pending);
                }
            }
        }
        let began = Instant::now();
        let answers = commit(&pool, &mut connection, &batch, config, &shared).await;
        let took = began.elapsed();
        telemetry::store_commit(telemetry::Store::Postgres, took, batch.len());
        tracing::trace!(
            "batch of {} committed or refused in {} µs",
            batch.len(),
            took.as_micros()
        );
        for (pending, answer) in batch.drain(..).zip(answers) {
            match answer {
                Some(result) => {
                    let _ = pending.done.send(result);
                }
                None => {
                    shared.tally.decided_again.fetch_add(1, Ordering::Relaxed);
                    telemetry::store_decided_again();
                    again.push(pending);
                }
            }
        }
    }
}

/// Why one attempt at a batch failed.
enum Failure {
    /// Roll back and decide again (deadlock, serialization failure, a race on a new row).
    Retry(String),
    /// The connection is gone or unusable; nothing was committed.
    Lost(String),
    /// The connection failed during COMMIT: the outcome is unknown until the batch's commit
    /// id is looked up.
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
    shared: &Shared,
) -> Vec<Answer> {
    let Shared {
        writable,
        copies,
        tally,
        primary,
    } = shared;
    let oldest = batch
        .iter()
        .map(|p| p.asked)
        .min()
        .unwrap_or_else(Instant::now);
    let deadline = tokio::time::Instant::from_std(oldest + config.deadline);
    let mut attempt = 0;
    let mut pause = Duration::from_millis(20);
    let failure = loop {
        if let Some(why) = primary.unavailable() {
            // The prober looks for a primary; waiting here would only hold the answer.
            writable.store(false, Ordering::Relaxed);
            break StoreError::Unavailable(why);
        }
        if connection
            .as_ref()
            .is_some_and(|held| !primary.usable(Object::metrics(held).created))
        {
            // Made before a connection in use broke (the primary died, froze or was cut
            // off, or failed over): it may lead to that server, and a frozen one would hold
            // this batch to its deadline. The pool's own check sees only connections it
            // hands out; this writer has held its one since.
            discard(connection);
        }
        attempt += 1;
        let id = commit_id();
        let mut committing = None;
        let tried = tokio::time::timeout_at(
            deadline,
            attempt_batch(
                pool,
                connection,
                batch,
                config,
                Attempt {
                    id: &id,
                    committing: &mut committing,
                },
                copies,
                tally,
            ),
        );
        let failure = match tried.await {
            Ok(Ok(results)) => {
                writable.store(true, Ordering::Relaxed);
                return results;
            }
            Ok(Err(failure)) => failure,
            Err(_) => {
                // The connection may be stuck mid-statement: never hand it out again, nor
                // the pooled ones made before it (the server may be frozen).
                discard(connection);
                primary.connection_broke();
                writable.store(false, Ordering::Relaxed);
                let why = format!("PostgreSQL did not answer within {:?}", config.deadline);
                break match committing {
                    Some(_) => StoreError::Unconfirmed(unconfirmed(&why, &id, None)),
                    None => StoreError::Unavailable(why),
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
                primary.connection_broke();
                writable.store(false, Ordering::Relaxed);
                if let Some(why) = primary.unavailable() {
                    break StoreError::Unavailable(why);
                }
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
                primary.connection_broke();
                writable.store(false, Ordering::Relaxed);
                let decided = committing.expect("an unknown outcome was committing");
                // Whatever it was, what was copied may no longer be what is stored.
                lock(copies).rows.clear();
                match look_up(pool, primary, &id, deadline).await {
                    Ok(Some((moved, refunds))) => {
                        tracing::info!(
                            "batch {id}: the reply to its COMMIT was lost ({why}); it is committed"
                        );
                        writable.store(true, Ordering::Relaxed);
                        let mut decided = decided;
                        // Its refunds, in row order, as the commit row keeps their seqs.
                        let rows = decided.iter().filter_map(|result| match result {
                            Ok(Applied::Refunded(refunded)) => {
                                refunded.refund.checked_sub(PROVISIONAL)
                            }
                            _ => None,
                        });
                        let drawn: Drawn = rows.zip(refunds).collect();
                        name_refunds(&mut decided, &drawn);
                        return answers(batch, decided, &moved);
                    }
                    Ok(None) => {
                        // Never committed, and now it never can: decide it again.
                        tracing::info!(
                            "batch {id}: the connection broke during COMMIT ({why}); it is not committed, retrying"
                        );
                        if tokio::time::Instant::now() + pause < deadline {
                            continue;
                        }
                        break StoreError::Unavailable(format!("PostgreSQL is unreachable: {why}"));
                    }
                    Err(looking) => {
                        tracing::warn!(
                            "batch {id}: the connection broke during COMMIT ({why}), and its outcome could not be learned before the deadline: {looking}"
                        );
                        return decided
                            .into_iter()
                            .map(|decision| {
                                Some(Err(StoreError::Unconfirmed(unconfirmed(
                                    &why,
                                    &id,
                                    Some(&decision),
                                ))))
                            })
                            .collect();
                    }
                }
            }
            Failure::Refused(why) => {
                tracing::error!("PostgreSQL refused a batch of {}: {why}", batch.len());
                break StoreError::Unavailable(format!("PostgreSQL refused the change: {why}"));
            }
        }
    };
    // Whatever the failure, what was copied may no longer be what is stored.
    lock(copies).rows.clear();
    batch.iter().map(|_| Some(Err(failure.clone()))).collect()
}

/// One attempt's commit id, and the decisions once its COMMIT is under way (None before).
struct Attempt<'a> {
    id: &'a str,
    committing: &'a mut Option<Vec<Result<Applied, StoreError>>>,
}

/// A new commit id: 128 random bits, hex. Each attempt has its own, since a lookup that found
/// an attempt not committed fences its id for good.
fn commit_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: the time and a counter are unique enough on one host, and
        // hosts differ by their process id.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        bytes[12..].copy_from_slice(&(NEXT.fetch_add(1, Ordering::Relaxed) as u32).to_le_bytes());
    }
    hex::encode(bytes)
}

/// The answers of a batch found committed: its decisions, but for the users it left for the
/// next batch (`moved`: decided on a stale copy, nothing of theirs written).
fn answers(
    batch: &[Pending],
    decided: Vec<Result<Applied, StoreError>>,
    moved: &HashSet<String>,
) -> Vec<Answer> {
    batch
        .iter()
        .zip(decided)
        .map(|(pending, result)| match moved.contains(&pending.user) {
            true => None,
            false => Some(result),
        })
        .collect()
}

/// The message of a change whose batch's outcome could not be learned before the deadline:
/// the commit id to look up later, and what the change did if the batch committed.
fn unconfirmed(why: &str, id: &str, decision: Option<&Result<Applied, StoreError>>) -> String {
    let if_committed = match decision {
        Some(Ok(Applied::Account(account, ..))) => {
            format!(
                "; if it did, this change was applied (balance {})",
                account.balance
            )
        }
        Some(Ok(Applied::Refunded(refunded))) => {
            format!(
                "; if it did, this refund was applied (balance {})",
                refunded.balance
            )
        }
        Some(Ok(Applied::Settled(entries))) => {
            format!("; if it did, this settle wrote {entries} entries")
        }
        Some(Ok(Applied::Replayed(_))) => "; either way this was a replay of a keyed change".into(),
        Some(Err(error)) => format!("; either way this change was refused: {error}"),
        None => String::new(),
    };
    format!(
        "{why}; commit id {id}: the change's batch committed if table `commits` has id '{id}' with fenced = false{if_committed}; README: \"Learning an outcome later\""
    )
}

/// Puts the seqs the write drew for refund entries (`drawn`: row number → seq) in place of
/// their provisional ones: in what each refund answers, and in a reply replayed from a key
/// that a refund of the same batch used first.
fn name_refunds(results: &mut [Result<Applied, StoreError>], drawn: &Drawn) {
    let mut named = Vec::new();
    for result in results.iter_mut() {
        if let Ok(Applied::Refunded(refunded)) = result
            && let Some(row) = refunded.refund.checked_sub(PROVISIONAL)
            && let Some(seq) = drawn.get(&row)
        {
            named.push((refunded.refund.to_string(), seq.to_string()));
            refunded.refund = *seq;
        }
    }
    for result in results.iter_mut() {
        if let Ok(Applied::Replayed(reply)) = result
            && let Some((provisional, seq)) = named
                .iter()
                .find(|(provisional, _)| reply.as_str().contains(provisional.as_str()))
            && let Ok(renamed) = StoredReply::parse(reply.as_str().replace(provisional, seq))
        {
            *reply = renamed;
        }
    }
}

/// How long a lookup waits before asking again (while no primary is known, or after a
/// failed attempt).
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// Learns whether the batch with commit id `id` committed, from whichever server is now the
/// primary, before `deadline`: `Some((moved, refunds))` if it did (the seqs of its refund
/// entries in row order), `None` if it did not (and now never will: its id is fenced), an
/// error if nobody could say in time.
async fn look_up(
    pool: &Pool,
    primary: &Primary,
    id: &str,
    deadline: tokio::time::Instant,
) -> Result<Option<Committed>, String> {
    let mut last = String::from("no primary was found");
    loop {
        if primary.unknown().is_none() {
            match tokio::time::timeout_at(deadline, fence(pool, id)).await {
                Ok(Ok(found)) => return Ok(found),
                Ok(Err(why)) => last = why,
                Err(_) => return Err(format!("no answer before the deadline ({last})")),
            }
        } else if let Some(why) = primary.unavailable() {
            last = why;
        }
        if tokio::time::Instant::now() + LOOK_AGAIN >= deadline {
            return Err(last);
        }
        tokio::time::sleep(LOOK_AGAIN).await;
    }
}

/// One lookup: insert the id fenced. If that succeeds the batch never committed (and its own
/// insert, should it still be in progress somewhere, was waited for or will conflict); if it
/// conflicts, the row says whether a batch or an earlier lookup put it there.
async fn fence(pool: &Pool, id: &str) -> Result<Option<Committed>, String> {
    let client = pool.get().await.map_err(|e| super::pool_failure(&e))?;
    let fenced = client
        .execute(
            "INSERT INTO commits (id, fenced) VALUES ($1, true) ON CONFLICT (id) DO NOTHING",
            &[&id],
        )
        .await
        .map_err(|e| db_error(&e))?;
    if fenced == 1 {
        return Ok(None);
    }
    // A statement of its own: under READ COMMITTED it sees the row the insert conflicted with.
    let row = client
        .query_one(
            "SELECT fenced, moved, refunds FROM commits WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(|e| db_error(&e))?;
    match row.get::<_, bool>(0) {
        true => Ok(None),
        false => Ok(Some((
            row.get::<_, Vec<String>>(1).into_iter().collect(),
            row.get::<_, Vec<i64>>(2)
                .into_iter()
                .map(|seq| seq as u64)
                .collect(),
        ))),
    }
}

/// What a committed batch's commit row says: the users it moved, the seqs of its refunds.
type Committed = (HashSet<String>, Vec<u64>);

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
        // A primary demoted under this connection (or a standby reached without
        // `target_session_attrs=read-write`): nothing was written; find the primary.
        Some(code) if *code == SqlState::READ_ONLY_SQL_TRANSACTION => {
            Failure::Lost(format!("the server is read-only now: {why}"))
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

/// The first provisional lot id: a lot opened in a batch is decided with this plus its
/// entry's row number in the batch (1-based), and the write statement replaces it by the
/// entry's seq. Far above any seq a ledger will draw, so a provisional id is never taken for
/// a real one, and it sorts after every lot opened before (as the seq it stands for will).
pub const PROVISIONAL: u64 = 1 << 62;

/// An account as a batch holds it: its row, its lots (in burn order), its open holds and its
/// version.
#[derive(Debug, Clone)]
pub struct Held {
    pub view: AccountView,
    pub lots: Vec<Lot>,
    /// Open holds (an account with any is never kept as a copy: see [`Copies`]).
    pub holds: Vec<Hold>,
    /// Bumped by every change (0: a new account).
    pub version: i64,
    /// False when only the lots the batch may touch were read (an account with more than
    /// [`ALL_LOTS`] lots, see `LOTS`): enough to decide the batch, never kept as a copy.
    pub complete: bool,
}

/// An account with at most this many lots is read whole by the locking path (and may then
/// be kept as a copy); one with more, only the lots its batch may touch.
pub const ALL_LOTS: i64 = 64;

/// The rows one batch writes, column by column (for `unnest`).
#[derive(Default)]
struct Rows {
    // New accounts and changed accounts (their state after the batch).
    new: Columns4,
    changed: Columns4,
    // Entries, in the order they are numbered.
    entries: EntryColumns,
    // Keys first used in this batch, and for each the row of the refund entry its reply
    // names (by its provisional seq, which the write replaces by the drawn one).
    keys: KeyColumns,
    key_names: Vec<Option<i64>>,
    // The rows of the refund entries, whose seqs the write returns.
    refunds: Vec<i64>,
    // Holds opened and ended.
    holds: HoldColumns,
    // Lots opened, lots whose remainder changed, lots gone.
    opened: LotColumns,
    respent: (Vec<String>, Vec<i64>, Vec<i64>),
    gone: (Vec<String>, Vec<i64>),
}

impl Rows {
    /// What differs between a user's lots before the batch and after it (linear: an
    /// account may hold thousands of lots).
    fn lots(&mut self, user: &str, before: &[Lot], after: &[Lot]) {
        let was: HashMap<u64, &Lot> = before.iter().map(|lot| (lot.id, lot)).collect();
        let kept: HashSet<u64> = after.iter().map(|lot| lot.id).collect();
        for lot in after {
            match was.get(&lot.id) {
                None => self.opened.push(user, lot),
                Some(old) if old.remaining != lot.remaining => {
                    self.respent.0.push(user.to_string());
                    self.respent.1.push(lot.id as i64);
                    self.respent.2.push(lot.remaining as i64);
                }
                Some(_) => {}
            }
        }
        for old in before {
            if !kept.contains(&old.id) {
                self.gone.0.push(user.to_string());
                self.gone.1.push(old.id as i64);
            }
        }
    }

    /// The lot parameters of both write statements, from the entries' lot columns on.
    fn lot_params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
        params.extend(self.entries.lot_params());
        params.extend(self.entries.take_params());
        params.extend(self.opened.params());
        params.extend([
            &self.respent.0 as &(dyn tokio_postgres::types::ToSql + Sync),
            &self.respent.1,
            &self.respent.2,
            &self.gone.0,
            &self.gone.1,
        ]);
        params
    }
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

const LOCK: &str = "SELECT user_id, balance, tier, until_ms, version FROM accounts
                    WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE";
/// Sent right behind [`LOCK`] in the same round trip, so it runs once the rows are locked
/// and reads the lots as the last change left them (columns as [`lot_from`] reads them,
/// then how many lots the account holds, counted up to one more than [`ALL_LOTS`]). An
/// account with more than [`ALL_LOTS`] lots is read in part, so that a change neither
/// carries thousands of lots through the batch nor makes the database scan them: the lots
/// expired by the batch's last time ($3, they leave first), and the first of the others in
/// burn order ([`rules::burn_order`], the same keys) that can cover every token the batch's
/// changes of that user could take ($2, per user of $1): as many lots as tokens, since a lot
/// holds at least one. A lot that has not expired by $3 is spendable at every time of the
/// batch ([`rules::spendable`]), so each burn stops inside what was read. Both parts are
/// index ranges (schema version 5, `0005_lots_read_in_part.sql`): a top-up reads no lot, a
/// charge of one token one. An account whose batch ends a hold (a capture or a void: its
/// need is the most there is, or an open hold expired by $3) is read whole: what goes back
/// may go to any lot.
static LOTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let columns = "user_id, id, amount, remaining, effective_ms, expires_ms, priority, kind";
    format!(
        "SELECT l.*, k.total
         FROM (SELECT x.u, CASE WHEN EXISTS (SELECT 1 FROM holds AS h
                                            WHERE h.user_id = x.u AND h.state = 'open'
                                              AND h.expires_ms <= $3)
                                THEN 9223372036854775807 ELSE x.need END
               FROM unnest($1::text[], $2::bigint[]) AS x (u, need)) AS n (u, need)
         CROSS JOIN LATERAL (
             SELECT count(*) AS total
             FROM (SELECT 1 FROM lots WHERE user_id = n.u LIMIT {more}) AS c
         ) AS k
         CROSS JOIN LATERAL (
             SELECT {columns} FROM lots WHERE user_id = n.u AND k.total <= {ALL_LOTS}
             UNION ALL
             SELECT {columns} FROM lots
             WHERE user_id = n.u AND k.total > {ALL_LOTS} AND expires_ms <= $3
             UNION ALL
             (SELECT {columns} FROM lots
              WHERE user_id = n.u AND k.total > {ALL_LOTS}
                AND (expires_ms IS NULL OR expires_ms > $3)
              ORDER BY priority, expires_ms IS NULL, expires_ms, kind <> 'promo', effective_ms, id
              LIMIT n.need)
         ) AS l",
        more = ALL_LOTS + 1,
    )
});
const KEYS: &str = "SELECT key, fingerprint, reply FROM idempotency_keys WHERE key = ANY($1)";

/// The part of both write statements that numbers the entries and writes them and the lots:
/// CTEs `numbered` (each entry row's seq, drawn in row order: only for the users `updated`
/// when `only_updated`, i.e. after their rows are locked), `appended`, `taken`,
/// `lots_opened`, `respent`, `gone`. `e` is the number of the first entries parameter: ten
/// entry columns, then the commit id, eight lot, hold and refund columns, four take columns,
/// eight columns of lots opened ([`opened_lot_ids`]), three of lots respent, two of lots
/// gone (up to [`after_lots`]).
fn entries_and_lots(e: usize, only_updated: bool) -> String {
    let p = PROVISIONAL;
    let filter = |column: &str| match only_updated {
        true => format!("WHERE {column} IN (SELECT user_id FROM updated)"),
        false => String::new(),
    };
    let and_filter = |column: &str| match only_updated {
        true => format!("AND {column} IN (SELECT user_id FROM updated)"),
        false => String::new(),
    };
    let (lot, take, opened, respent, gone) = (e + 11, e + 19, e + 23, e + 31, e + 34);
    format!(
        "numbered AS (
        SELECT x.n, nextval('entries_seq') AS seq
        FROM unnest(${u}::text[]) WITH ORDINALITY AS x (u, n)
        {numbered_filter}
        ORDER BY x.n
    ), appended AS (
        INSERT INTO entries (seq, time_ms, user_id, kind, delta, balance, key, reason, memes, tier,
                             until_ms, lot_expires_ms, lot_priority, lot_kind, at_ms, hold_id,
                             captured, reverses, refunded)
        SELECT s.seq, t, u, k, d, b, key, r, coalesce(m::text[], '{{}}'), tier, until, le, lp, lk,
               at, h, c, rv, rf
        FROM unnest(${e}::bigint[], ${u}::text[], ${k}::text[], ${d}::bigint[], ${b}::bigint[],
                    ${key}::text[], ${r}::text[], ${m}::text[], ${tier}::text[], ${until}::bigint[],
                    ${lot}::bigint[], ${lp}::smallint[], ${lk}::text[], ${at}::bigint[],
                    ${hold}::bigint[], ${captured}::bigint[], ${reverses}::bigint[],
                    ${refunded}::bigint[])
             WITH ORDINALITY
             AS x (t, u, k, d, b, key, r, m, tier, until, le, lp, lk, at, h, c, rv, rf, n)
        JOIN numbered AS s ON s.n = x.n
    ), taken AS (
        INSERT INTO lot_takes (seq, ord, lot, tokens)
        SELECT s.seq, y.o, coalesce(v.seq, y.l), y.k
        FROM unnest(${take}::bigint[], ${to}::int[], ${tl}::bigint[], ${tt}::bigint[])
             AS y (n, o, l, k)
        JOIN numbered AS s ON s.n = y.n
        LEFT JOIN numbered AS v ON v.n = y.l - {p}
    ), lots_opened AS (
        INSERT INTO lots (user_id, id, amount, remaining, effective_ms, expires_ms, priority, kind)
        SELECT z.u, coalesce(v.seq, z.i), z.a, z.r, z.ef, z.ex, z.pr, z.k
        FROM unnest(${opened}::text[], ${o1}::bigint[], ${o2}::bigint[], ${o3}::bigint[],
                    ${o4}::bigint[], ${o5}::bigint[], ${o6}::smallint[], ${o7}::text[])
             AS z (u, i, a, r, ef, ex, pr, k)
        LEFT JOIN numbered AS v ON v.n = z.i - {p}
        {opened_filter}
    ), respent AS (
        UPDATE lots AS l SET remaining = w.r
        FROM unnest(${respent}::text[], ${r1}::bigint[], ${r2}::bigint[]) AS w (u, i, r)
        WHERE l.user_id = w.u AND l.id = w.i {respent_filter}
    ), gone AS (
        DELETE FROM lots AS l USING unnest(${gone}::text[], ${g1}::bigint[]) AS w (u, i)
        WHERE l.user_id = w.u AND l.id = w.i {gone_filter}
    )",
        u = e + 1,
        k = e + 2,
        d = e + 3,
        b = e + 4,
        key = e + 5,
        r = e + 6,
        m = e + 7,
        tier = e + 8,
        until = e + 9,
        lp = lot + 1,
        lk = lot + 2,
        at = lot + 3,
        hold = lot + 4,
        captured = lot + 5,
        reverses = lot + 6,
        refunded = lot + 7,
        to = take + 1,
        tl = take + 2,
        tt = take + 3,
        o1 = opened + 1,
        o2 = opened + 2,
        o3 = opened + 3,
        o4 = opened + 4,
        o5 = opened + 5,
        o6 = opened + 6,
        o7 = opened + 7,
        r1 = respent + 1,
        r2 = respent + 2,
        g1 = gone + 1,
        numbered_filter = filter("x.u"),
        opened_filter = filter("z.u"),
        respent_filter = and_filter("w.u"),
        gone_filter = and_filter("w.u"),
    )
}

/// The parameter of the lots-opened ids in [`entries_and_lots`] from `e` (what the write
/// returns the drawn seqs of).
fn opened_lot_ids(e: usize) -> usize {
    e + 24
}

/// The first parameter after those of [`entries_and_lots`] from `e`.
fn after_lots(e: usize) -> usize {
    e + 36
}

/// An entry's row number in the batch as its seq ([`holds::write`]): the `numbered` row.
const ENTRY_SEQ: holds::Mapping = holds::Mapping {
    value: |_, alias| format!("{alias}.seq"),
    join: |column, alias, optional| {
        let join = if optional { "LEFT JOIN" } else { "JOIN" };
        format!("{join} numbered AS {alias} ON {alias}.n = {column}")
    },
};

/// A lot id as the lot's: a provisional one ([`PROVISIONAL`] plus its entry's row number) as
/// the seq drawn for that entry.
const LOT_ID: holds::Mapping = holds::Mapping {
    value: |column, alias| format!("coalesce({alias}.seq, {column})"),
    join: |column, alias, _| {
        format!("LEFT JOIN numbered AS {alias} ON {alias}.n = {column} - {PROVISIONAL}")
    },
};

/// Every row a batch writes, in one statement: new accounts ($1–$4), changed accounts
/// ($5–$8), new keys ($9–$11), the entries ($12–$21, numbered in row order), the batch's
/// commit id ($22), the lots ([`entries_and_lots`]), the holds opened and ended
/// ([`holds::write`]), then the rows of the refund entries, the refund row each new key's
/// reply names, and the lots refunds re-opened ([`after_holds`] on). A stored reply that
/// names a refund names it by its provisional seq, replaced here by the drawn one; the commit
/// row keeps the refunds' seqs, for a batch whose COMMIT reply is lost. Returns the seq drawn
/// for each lot opened and each refund (row number, seq). A new account that another host
/// opened meanwhile is a unique violation: the batch is decided again.
static WRITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let refunds = after_holds();
    format!(
        "WITH opened AS (
        INSERT INTO accounts (user_id, balance, tier, until_ms, version)
        SELECT u, b, t, un, 1 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
             AS n (u, b, t, un)
    ), updated AS (
        UPDATE accounts AS a SET balance = u.balance, tier = u.tier, until_ms = u.until_ms,
                                 version = a.version + 1
        FROM unnest($5::text[], $6::bigint[], $7::text[], $8::bigint[])
             AS u (user_id, balance, tier, until_ms)
        WHERE a.user_id = u.user_id
    ), {}, {}, keyed AS (
        INSERT INTO idempotency_keys (key, fingerprint, reply)
        SELECT x.key, x.fp,
               CASE WHEN s.seq IS NULL THEN x.reply
                    ELSE replace(x.reply, ({p} + x.n)::text, s.seq::text) END
        FROM unnest($9::text[], $10::text[], $11::text[], ${names}::bigint[])
             AS x (key, fp, reply, n)
        LEFT JOIN numbered AS s ON s.n = x.n
    ), recorded AS (
        INSERT INTO commits (id, refunds)
        SELECT $22, array(SELECT s.seq FROM numbered AS s
                          WHERE s.n = ANY(${refunds}::bigint[]) ORDER BY s.n)
    ), reopened AS (
        INSERT INTO reopened_lots (seq, lot, amount, effective_ms, expires_ms, priority, kind)
        SELECT s.seq, y.l, y.a, y.ef, y.ex, y.pr, y.k
        FROM unnest(${r0}::bigint[], ${r1}::bigint[], ${r2}::bigint[], ${r3}::bigint[],
                    ${r4}::bigint[], ${r5}::smallint[], ${r6}::text[])
             AS y (n, l, a, ef, ex, pr, k)
        JOIN numbered AS s ON s.n = y.n
    )
    SELECT s.n, s.seq FROM numbered AS s
    WHERE s.n IN (SELECT i - {p} FROM unnest(${ids}::bigint[]) AS i)
       OR s.n = ANY(${refunds}::bigint[])",
        entries_and_lots(12, false),
        holds::write(after_lots(12), &ENTRY_SEQ, &LOT_ID),
        p = PROVISIONAL,
        ids = opened_lot_ids(12),
        names = refunds + 1,
        r0 = refunds + 2,
        r1 = refunds + 3,
        r2 = refunds + 4,
        r3 = refunds + 5,
        r4 = refunds + 6,
        r5 = refunds + 7,
        r6 = refunds + 8,
    )
});

/// The first parameter of [`WRITE`] after the holds': the rows of the refund entries.
fn after_holds() -> usize {
    after_lots(12) + HoldColumns::PARAMS
}

/// What a batch's change got: `None` when it was decided on a copy of its account that
/// turned out stale, so it is decided again in the next batch.
type Answer = Option<Result<Applied, StoreError>>;

/// The locked path's and the copies' view of a batch's accounts, before deciding.
struct Before<'b> {
    accounts: HashMap<&'b str, Option<Held>>,
    existing: HashSet<String>,
    known_keys: HashMap<String, (String, StoredReply)>,
    /// The holds the batch's captures and voids name, with their owners, as the batch has
    /// left them so far.
    named: HashMap<u64, (String, Hold)>,
    /// Hold ids drawn for the batch's holds, taken in request order (from the back).
    hold_ids: Vec<u64>,
    /// The entries the batch's refunds reverse, by seq, with what the batch refunded of
    /// them so far (or why one could not be read).
    reversed: HashMap<u64, Result<rules::Reversed, String>>,
}

/// A batch decided on copies, in one statement. Update each changed account ($3–$6, in user
/// order) only if its version is still its copy's ($7: compared under the update's row
/// lock, on the latest committed version); append the entries ($8–$17, in request order, so
/// numbered as on the locking path) and write the lots ([`entries_and_lots`]) of the users
/// updated. Returns the users that "moved" (user, NULL, NULL): an account the batch leaves
/// unchanged ($1, its version $2; its refusals decided on the copy) that is gone or no
/// longer its copy, and a changed account that was not updated; and the seq drawn for each
/// lot opened (NULL, row number, seq). Records the batch's commit id ($18) with the users
/// that moved, so that a lost COMMIT reply can be resolved.
static WRITE_ON_COPIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH updated AS (
        UPDATE accounts AS a SET balance = u.balance, tier = u.tier, until_ms = u.until_ms,
                                 version = a.version + 1
        FROM unnest($3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[])
             AS u (user_id, balance, tier, until_ms, was_version)
        WHERE a.user_id = u.user_id AND a.version = u.was_version
        RETURNING a.user_id
    ), {}, moved AS (
        SELECT e.user_id
        FROM unnest($1::text[], $2::bigint[]) AS e (user_id, version)
        LEFT JOIN accounts AS a USING (user_id)
        WHERE a.user_id IS NULL OR a.version IS DISTINCT FROM e.version
        UNION ALL
        SELECT c FROM unnest($3::text[]) AS c WHERE c NOT IN (SELECT user_id FROM updated)
    ), recorded AS (
        INSERT INTO commits (id, moved) SELECT $18, array(SELECT user_id FROM moved)
    )
    SELECT user_id, NULL::bigint, NULL::bigint FROM moved
    UNION ALL
    SELECT NULL, s.n, s.seq FROM numbered AS s
    WHERE s.n IN (SELECT i - {p} FROM unnest(${ids}::bigint[]) AS i)",
        entries_and_lots(8, true),
        p = PROVISIONAL,
        ids = opened_lot_ids(8),
    )
});

/// What this host's writers last committed for the accounts they touched (one set per host,
/// shared by its writers). A batch whose users are all here and that carries no idempotency
/// key is decided on these copies, which saves the lock round trip and the row-lock pass: its
/// one statement applies nothing for a user whose row is no longer the copy (another host or
/// writer changed it); that user's changes are decided again in the next batch, on locked
/// rows. After such a miss the rows are evidently shared, and batches take the locking path
/// for a while.
#[derive(Default)]
pub struct Copies {
    rows: HashMap<String, Held>,
    locking_until: Option<Instant>,
}

/// At most this many copies (about 100 bytes each, plus their lots); when full, they are all
/// dropped.
const COPIES: usize = 100_000;
/// How long batches take the locking path after a copy was found stale.
pub const LOCKING_AFTER_A_MISS: Duration = Duration::from_secs(1);

impl Copies {
    /// The batch's accounts as copied, if it can be decided on copies: every user's account
    /// is copied, no change carries a key or is about a hold or a refund (a hold's id is
    /// drawn, and the hold a capture or a void names and the entry a refund reverses are
    /// read, on the locking path), and no copy was found stale lately.
    fn cover<'b>(&self, batch: &[Pending], users: &[&'b str]) -> Option<HashMap<&'b str, Held>> {
        let cooling = self
            .locking_until
            .is_some_and(|until| Instant::now() < until);
        let locking = |p: &Pending| {
            p.keyed.is_some()
                || matches!(
                    p.change,
                    Asked::Change(
                        Change::Hold { .. } | Change::Capture { .. } | Change::Void { .. }
                    ) | Asked::Refund { .. }
                )
        };
        if cooling || batch.iter().any(locking) {
            return None;
        }
        users
            .iter()
            .map(|user| Some((*user, self.rows.get(*user)?.clone())))
            .collect()
    }

    /// After a COMMIT: each user's account as the batch left it, but the moved ones'.
    fn committed(
        &mut self,
        users: &[&str],
        accounts: &HashMap<&str, Option<Held>>,
        moved: &HashSet<String>,
    ) {
        if !moved.is_empty() {
            self.locking_until = Some(Instant::now() + LOCKING_AFTER_A_MISS);
        }
        for user in users {
            match accounts.get(user).cloned().flatten() {
                // An account with open holds is decided on locked rows, where its holds are
                // read with it; so is one that has grown past ALL_LOTS lots, where only the
                // lots its batch may touch are read (a copy would carry them all).
                Some(held)
                    if held.complete
                        && held.lots.len() <= ALL_LOTS as usize
                        && held.holds.is_empty()
                        && !moved.contains(*user) =>
                {
                    if self.rows.len() >= COPIES && !self.rows.contains_key(*user) {
                        self.rows.clear();
                    }
                    self.rows.insert(user.to_string(), held);
                }
                _ => {
                    self.rows.remove(*user);
                }
            }
        }
    }
}

/// One attempt: lock (or take the copies), decide, write, commit.
async fn attempt_batch(
    pool: &Pool,
    connection: &mut Option<Object>,
    batch: &[Pending],
    config: WriterConfig,
    attempt: Attempt<'_>,
    copies: &Mutex<Copies>,
    tally: &Tally,
) -> Result<Vec<Answer>, Failure> {
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        discard(connection);
        let fresh = pool
            .get()
            .await
            .map_err(|e| Failure::Lost(super::pool_failure(&e)))?;
        *connection = Some(fresh);
    }
    let client = connection.as_ref().expect("a connection");
    let users: Vec<&str> = batch
        .iter()
        .map(|p| p.user.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let copied = lock(copies).cover(batch, &users);
    let mut before = match &copied {
        Some(copied) => Before {
            accounts: copied
                .iter()
                .map(|(user, held)| (*user, Some(held.clone())))
                .collect(),
            existing: users.iter().map(|user| user.to_string()).collect(),
            known_keys: HashMap::new(),
            named: HashMap::new(),
            hold_ids: Vec::new(),
            reversed: HashMap::new(),
        },
        None => lock_and_read(client, batch, &users).await?,
    };
    let start = before.accounts.clone();

    // Decide, in request order, on the locked rows (or the copies). The batch's time never
    // goes back: a lot opened by one change is spendable by the next.
    let mut rows = Rows::default();
    let mut touched: Vec<&str> = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    let mut now = i64::MIN;
    for pending in batch {
        now = now.max(pending.time_ms);
        results.push(decide(
            pending,
            &mut before,
            &mut rows,
            &mut touched,
            config.welcome,
            now,
        ));
    }
    let touched: BTreeSet<&str> = touched.into_iter().collect();
    for user in &touched {
        let held = before.accounts[*user].as_ref().expect("a decided account");
        let was = start[*user].as_ref().map_or(&[][..], |held| &held.lots[..]);
        rows.lots(user, was, &held.lots);
        match before.existing.contains(*user) {
            true => rows.changed.push(user, &held.view),
            false => rows.new.push(user, &held.view),
        }
    }

    // Write everything and commit, pipelined. If the write fails, the transaction is aborted
    // and the COMMIT behind it only ends it (as a rollback).
    let write = client
        .prepare_cached(if copied.is_some() {
            &WRITE_ON_COPIES
        } else {
            &WRITE
        })
        .await
        .map_err(|e| classify(&e, client.is_closed(), false))?;
    // From here the outcome may be unknown: keep the decisions, to answer with them if the
    // lookup finds the batch committed.
    *attempt.committing = Some(results);
    let (moved, drawn) = match &copied {
        Some(copied) => write_on_copies(client, &write, &users, copied, &rows, attempt.id).await?,
        None => (
            HashSet::new(),
            write_locked(client, &write, &rows, attempt.id).await?,
        ),
    };
    let mut results = attempt.committing.take().expect("decided");
    name_refunds(&mut results, &drawn);
    // The accounts as committed: their new version, their lots with the seqs drawn.
    let mut accounts = before.accounts;
    for user in &touched {
        if let Some(held) = accounts.get_mut(*user).and_then(Option::as_mut) {
            held.version += 1;
            for lot in &mut held.lots {
                if lot.id >= PROVISIONAL {
                    match drawn.get(&(lot.id - PROVISIONAL)) {
                        Some(seq) => lot.id = *seq,
                        // Not written (a moved user): the copy is dropped below.
                        None => held.version = -1,
                    }
                }
            }
            held.lots.sort_by(rules::burn_order);
        }
    }
    lock(copies).committed(&users, &accounts, &moved);
    if copied.is_some() {
        tally.on_copies.fetch_add(1, Ordering::Relaxed);
    }
    Ok(batch
        .iter()
        .zip(results)
        .map(
            |(pending, result)| match moved.contains(pending.user.as_str()) {
                true => None,
                false => Some(result),
            },
        )
        .collect())
}

/// Round trip 1 of the locking path: begin, lock the batch's accounts in user order, read
/// their lots, open holds and keys, and the entries its refunds reverse.
async fn lock_and_read<'b>(
    client: &Object,
    batch: &'b [Pending],
    users: &[&'b str],
) -> Result<Before<'b>, Failure> {
    let fail = |e: tokio_postgres::Error| classify(&e, client.is_closed(), false);
    let (lock, lots_query, keys_query, holds_query, reversed_query) = tokio::try_join!(
        client.prepare_cached(LOCK),
        client.prepare_cached(&LOTS),
        client.prepare_cached(KEYS),
        client.prepare_cached(holds::HOLDS),
        client.prepare_cached(refunds::REVERSED),
    )
    .map_err(fail)?;
    let named: Vec<i64> = batch
        .iter()
        .filter_map(|p| match p.change {
            Asked::Change(Change::Capture { hold, .. } | Change::Void { hold }) => {
                Some(hold as i64)
            }
            _ => None,
        })
        .collect();
    let new_holds = batch
        .iter()
        .filter(|p| matches!(p.change, Asked::Change(Change::Hold { .. })))
        .count() as i64;
    let reversed: Vec<i64> = batch
        .iter()
        .filter_map(|p| match p.change {
            Asked::Refund { entry, .. } => i64::try_from(entry).ok(),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let keys: Vec<&str> = batch
        .iter()
        .filter_map(|p| p.keyed.as_ref())
        .flat_map(|k| rules::key_lookups(&k.key))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&users];
    // Every token each user's changes could take, and the batch's last time.
    let needs: Vec<i64> = users
        .iter()
        .map(|user| {
            batch
                .iter()
                .filter(|p| p.user == *user)
                .map(|p| match p.change {
                    Asked::Change(Change::Charge { cost }) => {
                        i64::try_from(cost).unwrap_or(i64::MAX)
                    }
                    Asked::Change(Change::Topup { amount, .. }) => amount.min(0).saturating_neg(),
                    Asked::Change(Change::Hold { amount, .. }) => {
                        i64::try_from(amount).unwrap_or(i64::MAX)
                    }
                    // What goes back may go to any lot, and a lot not read would be taken
                    // for one emptied: read them all.
                    Asked::Change(Change::Capture { .. } | Change::Void { .. })
                    | Asked::Refund { .. } => i64::MAX,
                    // Only what has ended: the lots expired by the batch's time are read
                    // anyway, and an account with an expired hold whole.
                    Asked::Change(Change::Entitle { .. } | Change::Settle) => 0,
                })
                .fold(0i64, i64::saturating_add)
        })
        .collect();
    let last = batch.iter().map(|p| p.time_ms).max().unwrap_or(0);
    let lots_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&users, &needs, &last];
    let holds_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&users, &named];
    let (begun, locked, lots, stored_keys, open_holds, drawn, reversed_rows) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query(&lock, &lock_params),
        client.query(&lots_query, &lots_params),
        async {
            match keys.is_empty() {
                true => Ok(Vec::new()),
                false => client.query(&keys_query, &[&keys]).await,
            }
        },
        client.query(&holds_query, &holds_params),
        async {
            match new_holds {
                0 => Ok(Vec::new()),
                n => {
                    let draw = "SELECT nextval('hold_ids') FROM generate_series(1, $1::bigint)";
                    client.query(draw, &[&n]).await
                }
            }
        },
        async {
            match reversed.is_empty() {
                true => Ok(Vec::new()),
                false => client.query(&reversed_query, &[&reversed]).await,
            }
        },
    );
    let read = begun.and(locked).and_then(|locked| {
        Ok((
            locked,
            lots?,
            stored_keys?,
            open_holds?,
            drawn?,
            reversed_rows?,
        ))
    });
    let (locked, lots, stored_keys, open_holds, drawn, reversed_rows) = match read {
        Ok(read) => read,
        Err(error) => return Err(rollback(client, fail(error)).await),
    };
    let reversed = refunds::reversed_from(&reversed_rows);
    let mut before = Before {
        accounts: users.iter().map(|user| (*user, None)).collect(),
        existing: HashSet::new(),
        known_keys: HashMap::new(),
        named: HashMap::new(),
        // Taken from the back, in request order.
        hold_ids: drawn
            .iter()
            .rev()
            .map(|row| row.get::<_, i64>(0) as u64)
            .collect(),
        reversed: reversed.into_iter().collect(),
    };
    for row in &locked {
        let user: String = row.get(0);
        let held = Held {
            view: AccountView {
                balance: super::balance_from(row.get(1)),
                tier: super::tier_from(row.get(2)),
                until: row.get(3),
            },
            lots: Vec::new(),
            holds: Vec::new(),
            version: row.get(4),
            complete: true,
        };
        if let Some(slot) = before.accounts.get_mut(user.as_str()) {
            *slot = Some(held);
        }
        before.existing.insert(user);
    }
    // How many lots each account holds (up to one more than ALL_LOTS), where any were read.
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for row in &lots {
        let user: &str = row.get(0);
        if let Some(Some(held)) = before.accounts.get_mut(user) {
            held.lots.push(lot_from(row, 1));
            totals.insert(user, row.get(8));
        }
    }
    for (user, held) in before.accounts.iter_mut() {
        let Some(held) = held else { continue };
        held.lots.sort_by(rules::burn_order);
        // An account with a balance holds lots: none read means they were all left out.
        held.complete = match totals.get(user) {
            Some(total) => *total <= ALL_LOTS,
            None => held.view.balance == 0,
        };
    }
    for (owner, hold) in holds::holds_from(&open_holds, 0) {
        if hold.state == HoldState::Open
            && let Some(Some(held)) = before.accounts.get_mut(owner.as_str())
        {
            held.holds.push(hold.clone());
        }
        if named.contains(&(hold.id as i64)) {
            before.named.insert(hold.id, (owner, hold));
        }
    }
    for row in &stored_keys {
        let reply = StoredReply::parse(row.get(2)).map_err(|e| Failure::Refused(e.to_string()));
        let reply = match reply {
            Ok(reply) => reply,
            Err(failure) => return Err(rollback(client, failure).await),
        };
        before.known_keys.insert(row.get(0), (row.get(1), reply));
    }
    Ok(before)
}

/// The seqs a write drew for lots opened: row number → seq.
type Drawn = HashMap<u64, u64>;

/// Round trip 2 of the locking path: write every row and commit.
async fn write_locked(
    client: &Object,
    write: &Statement,
    rows: &Rows,
    id: &str,
) -> Result<Drawn, Failure> {
    if rows.entries.is_empty() {
        // Only refusals and replays: nothing to write, the locks go with the transaction,
        // and the answers, decided on locked rows, stand whether or not COMMIT's reply comes.
        return match client.batch_execute("COMMIT").await {
            Ok(()) => Ok(Drawn::new()),
            Err(error) if error.as_db_error().is_none() => Ok(Drawn::new()),
            Err(error) => Err(classify(&error, client.is_closed(), true)),
        };
    }
    let (n, c) = (&rows.new, &rows.changed);
    let accounts: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
        &n.user, &n.balance, &n.tier, &n.until, &c.user, &c.balance, &c.tier, &c.until,
    ];
    let params: Vec<_> = accounts
        .into_iter()
        .chain(rows.keys.params())
        .chain(rows.entries.params())
        .chain([&id as &(dyn tokio_postgres::types::ToSql + Sync)])
        .chain(rows.lot_params())
        .chain(rows.holds.params())
        .chain([
            &rows.refunds as &(dyn tokio_postgres::types::ToSql + Sync),
            &rows.key_names,
        ])
        .chain(rows.entries.reopened_params())
        .collect();
    let (written, committed) =
        tokio::join!(client.query(write, &params), client.batch_execute("COMMIT"),);
    let drawn = match &written {
        Ok(found) => found
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
            .collect(),
        Err(_) => Drawn::new(),
    };
    settle(client, written.map(drop), committed)?;
    Ok(drawn)
}

/// The one round trip of a batch decided on copies: begin, write what still applies (see
/// [`WRITE_ON_COPIES`]), commit. Returns the users whose account had moved on (nothing of
/// theirs was written), and the seqs drawn for lots opened.
async fn write_on_copies(
    client: &Object,
    write: &Statement,
    users: &[&str],
    copied: &HashMap<&str, Held>,
    rows: &Rows,
    id: &str,
) -> Result<(HashSet<String>, Drawn), Failure> {
    // The users whose account the batch leaves as it was (only refusals) are checked
    // against their copies; the changed ones are updated only if they still are their copy.
    let c = &rows.changed;
    let changed: HashSet<&str> = c.user.iter().map(String::as_str).collect();
    let (mut unchanged, mut unchanged_version) = (Vec::new(), Vec::new());
    for user in users {
        if !changed.contains(user) {
            unchanged.push(user.to_string());
            unchanged_version.push(copied[*user].version);
        }
    }
    let was_version: Vec<i64> = c.user.iter().map(|u| copied[u.as_str()].version).collect();
    let accounts: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &unchanged,
        &unchanged_version,
        &c.user,
        &c.balance,
        &c.tier,
        &c.until,
        &was_version,
    ];
    let params: Vec<_> = accounts
        .into_iter()
        .chain(rows.entries.params())
        .chain([&id as &(dyn tokio_postgres::types::ToSql + Sync)])
        .chain(rows.lot_params())
        .collect();
    let (begun, written, committed) = tokio::join!(
        client.batch_execute("BEGIN"),
        client.query(write, &params),
        client.batch_execute("COMMIT"),
    );
    let written = begun.and(written);
    let (mut moved, mut drawn) = (HashSet::new(), Drawn::new());
    if let Ok(found) = &written {
        for row in found {
            match row.get::<_, Option<String>>(0) {
                Some(user) => {
                    moved.insert(user);
                }
                None => {
                    let n: i64 = row.get(1);
                    let seq: i64 = row.get(2);
                    drawn.insert(n as u64, seq as u64);
                }
            }
        }
    }
    settle(client, written.map(drop), committed)?;
    Ok((moved, drawn))
}

/// A pipelined write and COMMIT's outcome.
fn settle(
    client: &Object,
    written: Result<(), tokio_postgres::Error>,
    committed: Result<(), tokio_postgres::Error>,
) -> Result<(), Failure> {
    match (written, committed) {
        (Ok(()), Ok(())) => Ok(()),
        // The server refused the write: nothing was committed.
        (Err(error), _) if error.as_db_error().is_some() => {
            Err(classify(&error, client.is_closed(), false))
        }
        (Err(error), _) | (Ok(()), Err(error)) => Err(classify(&error, client.is_closed(), true)),
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

/// Decides one change on the batch's state so far, at `now`, and records what to write.
fn decide<'b>(
    pending: &'b Pending,
    before: &mut Before<'b>,
    rows: &mut Rows,
    touched: &mut Vec<&'b str>,
    welcome: Welcome,
    now: i64,
) -> Result<Applied, StoreError> {
    if let Some(keyed) = &pending.keyed
        && let Some((fingerprint, reply)) =
            rules::find_key(&keyed.key, |key| before.known_keys.get(key), |(fp, _)| fp)
    {
        return match rules::check_key(&keyed.key, Some(fingerprint), &keyed.fingerprint)? {
            KeyUse::Replay => Ok(Applied::Replayed(reply.clone())),
            KeyUse::New => unreachable!("a stored key is never new"),
        };
    }
    if let Some(keyed) = &pending.keyed
        && matches!(pending.change, Asked::Refund { .. })
            != matches!(keyed.reply, Reply::Refunded(_))
    {
        return Err(StoreError::Internal(
            "a reply made for another change".into(),
        ));
    }
    let user = pending.user.as_str();
    let held = before.accounts.get(user).and_then(Option::as_ref);
    // Its open holds, and the one a capture or a void names if it is the user's, whatever
    // its state (the rules tell an ended hold from an unknown one).
    let mut holds = held.map_or_else(Vec::new, |held| held.holds.clone());
    // Entries are numbered by their row in the batch until the write draws their seq: so
    // are the lots they open, and a refund's reply names its entry so.
    let first_row = rows.entries.len() as u64 + 1;
    let account = held.map(|held| (&held.view, &held.lots[..]));
    let (change, decision) = match pending.change {
        Asked::Refund {
            entry,
            named,
            amount,
        } => {
            let reversed = match before.reversed.get(&entry) {
                Some(Ok(reversed)) => reversed,
                Some(Err(broken)) => return Err(StoreError::Internal(broken.clone())),
                None => {
                    let of = named.then(|| format!(" of user {user:?}"));
                    return Err(StoreError::UnknownEntry(entry, of.unwrap_or_default()));
                }
            };
            let named = named.then_some(user);
            let decision = rules::decide_refund(named, account, &holds, reversed, amount, now)?;
            (None, decision)
        }
        Asked::Change(change) => {
            let change =
                match change {
                    Change::Hold { amount, ttl_ms, .. } => Change::Hold {
                        amount,
                        ttl_ms,
                        id: Some(before.hold_ids.pop().ok_or_else(|| {
                            StoreError::Internal("a hold without a drawn id".into())
                        })?),
                    },
                    Change::Capture { hold: id, .. } | Change::Void { hold: id } => {
                        if !holds.iter().any(|hold| hold.id == id)
                            && let Some((owner, hold)) = before.named.get(&id)
                            && owner == user
                        {
                            holds.push(hold.clone());
                        }
                        change
                    }
                    change => change,
                };
            let decision = rules::decide_lots(
                user,
                account,
                &holds,
                change,
                welcome,
                now,
                PROVISIONAL + first_row,
            )?;
            (Some(change), decision)
        }
    };
    if change == Some(Change::Settle) && decision.postings.is_empty() {
        // Nothing was due (another host or writer may have written it already): the account
        // is left as it is, not even its version bumped.
        return Ok(Applied::Settled(0));
    }
    let version = held.map_or(0, |held| held.version);
    let complete = held.is_none_or(|held| held.complete);
    let after = decision.after;
    let welcome = decision.welcome();
    let hold = change.and_then(|change| decision.hold(change));
    // The holds the change opened or ended, each with the row of the entry that did it.
    let mut open: Vec<Hold> = holds
        .into_iter()
        .filter(|hold| hold.state == HoldState::Open)
        .collect();
    for changed in &decision.holds {
        let made = |p: &rules::Posting| {
            p.hold == Some(changed.id)
                && (changed.state == HoldState::Open) == (p.entry.kind == EntryKind::Hold)
        };
        let index = decision.postings.iter().position(made).unwrap_or(0);
        let row = (first_row + index as u64) as i64;
        open.retain(|hold| hold.id != changed.id);
        match changed.state {
            HoldState::Open => {
                rows.holds.opened(user, changed, row);
                open.push(changed.clone());
            }
            _ => {
                rows.holds.ended(changed, row);
                if let Some((_, named)) = before.named.get_mut(&changed.id) {
                    *named = changed.clone();
                }
            }
        }
    }
    // A refund: what it did, its entry (the last) named by its row until the write, and
    // what the batch has refunded of the entry so far, for the batch's next refund of it.
    let refunded = match pending.change {
        Asked::Refund { entry, .. } => {
            let posting = decision.postings.last().expect("a refund posts its entry");
            let row = first_row + decision.postings.len() as u64 - 1;
            let refunded = posting.refunded.unwrap_or(0);
            let Some(Ok(reversed)) = before.reversed.get_mut(&entry) else {
                unreachable!("decided on it above");
            };
            let left = reversed.spent - reversed.refunded - refunded;
            reversed.refunded += refunded;
            rows.refunds.push(row as i64);
            Some(Refunded {
                balance: after.balance,
                refund: PROVISIONAL + row,
                reverses: entry,
                refunded,
                returned: posting.entry.delta.unsigned_abs(),
                left,
            })
        }
        Asked::Change(_) => None,
    };
    let entries: Vec<RecordedEntry> = decision
        .postings
        .into_iter()
        .map(RecordedEntry::from)
        .collect();
    let entries_written = entries.len() as u64;
    let memes = match pending.memes.is_empty() {
        true => None,
        false => Some(super::array_literal(&pending.memes)),
    };
    let (tier, until) = match pending.change {
        Asked::Change(Change::Entitle { tier, until }) => (Some(tier), until),
        _ => (None, None),
    };
    rows.entries.push_request(
        now,
        &pending.user,
        &entries,
        Extras {
            key: pending.keyed.as_ref().map(|keyed| keyed.key.as_str()),
            reason: pending.reason.as_deref(),
            memes,
            tier,
            until,
        },
    );
    if let Some(keyed) = &pending.keyed {
        let reply = match (&keyed.reply, refunded) {
            (Reply::Refunded(reply), Some(refunded)) => reply(refunded),
            (Reply::Changed(reply), _) => reply(Changed {
                balance: after.balance,
                welcome,
                hold,
            }),
            (Reply::Refunded(_), None) => unreachable!("checked above"),
        };
        // A refund's reply names its entry by its provisional seq, which the write replaces.
        let names = refunded.map(|refunded| (refunded.refund - PROVISIONAL) as i64);
        rows.keys
            .push(&keyed.key, &keyed.fingerprint, reply.as_str());
        rows.key_names.push(names);
        before
            .known_keys
            .insert(keyed.key.clone(), (keyed.fingerprint.clone(), reply));
    }
    before.accounts.insert(
        user,
        Some(Held {
            view: after,
            lots: decision.lots,
            holds: open,
            version,
            complete,
        }),
    );
    touched.push(user);
    Ok(match (refunded, change) {
        (Some(refunded), _) => Applied::Refunded(refunded),
        (None, Some(Change::Settle)) => Applied::Settled(entries_written),
        (None, _) => Applied::Account(after, welcome, hold),
    })
}

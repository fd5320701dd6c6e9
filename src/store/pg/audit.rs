//! The audit, over the database: the same invariants the file store's audit checks in its
//! journal, as SQL over one consistent snapshot (a REPEATABLE READ, READ ONLY transaction),
//! so hosts keep writing while it runs.
//!
//! Checked: every entry's balance equals the user's running sum of deltas (window functions,
//! in `seq` order) and the previous entry's balance plus its delta, and never went below
//! zero; the sign of each delta fits its kind; each user's first entry, and only that one,
//! is the welcome grant; every account's balance equals the sum of its entries (and every
//! user with entries has an account); every idempotency key occurs on exactly one entry,
//! has its stored reply and fits that entry ([`rules::key_fits_entry`], decided in Rust);
//! every account's lots add up to its balance, and none holds a remainder below one token
//! or above its amount; every entry's lots follow from the account's by
//! [`rules::replay_lots`] (a credit opens one, a debit takes from them in burn order, an
//! expiry takes a lot's remainder at its `expires_at`, nothing is spent from an expired lot:
//! decided in Rust, as the file store's audit does) and the `lots` table holds exactly what
//! the ledger derives; so does the `holds` table (each hold in the one state its entries
//! leave it, with the parts it took); each refund reverses a charge or a capture of its own
//! account, never more than is left of it, giving back what the rules say
//! ([`rules::Refundable`]). Stops at the first discrepancy, which the report names.

use crate::domain::{AuditReport, Entry, Hold, Lot, LotTake, LotTerms};
use crate::store::rules::{self, Recorded};
use futures_util::TryStreamExt;
use std::collections::VecDeque;
use tokio_postgres::{Client, Portal, Row, Transaction};

/// The first entry that breaks a per-entry rule, oldest first.
const ENTRIES: &str = "
WITH e AS (
    SELECT seq, user_id, kind, delta, balance,
           sum(delta) OVER w AS running,
           lag(balance) OVER w AS previous,
           row_number() OVER w AS n
    FROM entries
    WINDOW w AS (PARTITION BY user_id ORDER BY seq)
)
SELECT seq, user_id, kind, delta, balance, running::text, previous, n FROM e
WHERE running < 0
   OR balance <> running
   OR balance <> coalesce(previous, 0) + delta
   OR (kind = 'welcome') <> (n = 1)
   OR NOT CASE kind WHEN 'welcome' THEN delta >= 0 WHEN 'topup' THEN delta >= 0
                    WHEN 'charge' THEN delta <= 0 WHEN 'deduct' THEN delta < 0
                    WHEN 'entitle' THEN delta = 0 WHEN 'expire' THEN delta < 0
                    WHEN 'hold' THEN delta < 0
                    WHEN 'capture' THEN delta >= 0 WHEN 'void' THEN delta >= 0
                    WHEN 'release' THEN delta >= 0
                    WHEN 'refund' THEN delta >= 0 ELSE false END
ORDER BY seq
LIMIT 1";

/// The first account whose balance is not what its entries add up to.
const BALANCES: &str = "
SELECT coalesce(a.user_id, s.user_id), a.balance, s.total::text
FROM accounts a
FULL JOIN (SELECT user_id, sum(delta) AS total FROM entries GROUP BY user_id) s
       ON s.user_id = a.user_id
WHERE a.balance IS DISTINCT FROM s.total
LIMIT 1";

/// The first account whose lots do not add up to its balance, or that holds a lot with
/// nothing (or more than its amount) left.
const LOTS: &str = "
SELECT a.user_id, a.balance, coalesce(s.total, 0)::text, coalesce(s.bad, -1)
FROM accounts a
LEFT JOIN (SELECT user_id, sum(remaining) AS total,
                  min(id) FILTER (WHERE remaining <= 0 OR remaining > amount) AS bad
           FROM lots GROUP BY user_id) s
       ON s.user_id = a.user_id
WHERE a.balance <> coalesce(s.total, 0) OR s.bad IS NOT NULL
LIMIT 1";

/// A key used twice, or without its stored reply, or a stored reply without its entry.
const KEYS: &str = "
(SELECT key, 'occurs on more than one entry' FROM entries
  WHERE key IS NOT NULL GROUP BY key HAVING count(*) > 1 LIMIT 1)
UNION ALL
(SELECT e.key, 'has no stored reply' FROM entries e
  LEFT JOIN idempotency_keys k ON k.key = e.key
  WHERE e.key IS NOT NULL AND k.key IS NULL LIMIT 1)
UNION ALL
(SELECT k.key, 'has a stored reply but no entry' FROM idempotency_keys k
  LEFT JOIN entries e ON e.key = k.key
  WHERE e.key IS NULL LIMIT 1)
LIMIT 1";

/// Every entry whose key is scoped to an owner (keys stored before scoping have no owner to
/// check), for [`rules::key_fits_entry`].
const SCOPED_KEYS: &str =
    "SELECT seq, key, user_id, kind FROM entries WHERE strpos(key, chr(31)) > 0 ORDER BY seq";

/// Every entry with what it says about lots, user by user (in byte order, as Rust compares
/// strings) and in `seq` order within a user, for [`rules::replay_lots`]: the columns
/// [`ReplayRow`] reads, which the past view and the export read too.
static REPLAY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM entries AS e ORDER BY e.user_id COLLATE \"C\", e.seq",
        replay_columns()
    )
});

/// The columns of an entry `e` that [`ReplayRow::read`] reads, [`REPLAY_COLUMNS`] of them.
pub(super) fn replay_columns() -> String {
    format!(
        "e.user_id, e.seq, e.time_ms, e.kind, e.delta, e.balance,
         e.lot_kind, e.lot_expires_ms, e.lot_priority, e.at_ms,
         (SELECT array_agg(lot ORDER BY ord) FROM lot_takes AS t WHERE t.seq = e.seq),
         (SELECT array_agg(tokens ORDER BY ord) FROM lot_takes AS t WHERE t.seq = e.seq),
         e.hold_id, e.captured, {}",
        super::refunds::REPLAY_COLUMNS
    )
}

/// How many columns [`replay_columns`] names: a query's own columns come after them.
pub(super) const REPLAY_COLUMNS: usize = 17;

/// Every lot, in the order of [`REPLAY`]'s users, then by id (columns as
/// [`super::columns::lot_from`] reads them, from 1).
const HELD_LOTS: &str = "
SELECT user_id, id, amount, remaining, effective_ms, expires_ms, priority, kind
FROM lots ORDER BY user_id COLLATE \"C\", id";

/// Every hold with its parts, in the order of [`REPLAY`]'s users, then by id and in burn order
/// (columns as [`super::holds::HOLDS`] has them).
const HELD_HOLDS: &str = "
SELECT h.user_id, h.id, h.amount, h.captured, h.created_ms, h.expires_ms, h.state,
       p.lot, p.amount, p.tokens, p.effective_ms, p.expires_ms, p.priority, p.kind
FROM holds AS h JOIN hold_parts AS p ON p.hold_id = h.id
ORDER BY h.user_id COLLATE \"C\", h.id, p.ord";

/// Rows fetched at a time by the replay: a ledger of any size in bounded memory.
const CHUNK: i32 = 2_000;

const COUNTS: &str = "
SELECT count(*) FILTER (WHERE kind <> 'welcome'),
       count(*),
       (SELECT count(*) FROM accounts),
       count(key),
       count(*) FILTER (WHERE kind = 'welcome')
FROM entries";

/// Audits the whole ledger in one snapshot.
pub async fn audit(client: &mut Client) -> Result<AuditReport, tokio_postgres::Error> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let report = check(&transaction).await?;
    transaction.commit().await?;
    Ok(report)
}

/// The audit's checks, inside a transaction the caller owns (an import audits what it
/// wrote before it commits).
pub async fn check(
    transaction: &tokio_postgres::Transaction<'_>,
) -> Result<AuditReport, tokio_postgres::Error> {
    // A large ledger takes longer than a request may.
    transaction
        .batch_execute("SET LOCAL statement_timeout = 0")
        .await?;
    let counts = transaction.query_one(COUNTS, &[]).await?;
    let mut report = AuditReport {
        ok: true,
        transactions: counts.get::<_, i64>(0) as u64,
        entries: counts.get::<_, i64>(1) as u64,
        accounts: counts.get::<_, i64>(2) as u64,
        keys: counts.get::<_, i64>(3) as u64,
        welcomes: counts.get::<_, i64>(4) as u64,
        discrepancy: None,
        store: Some("postgres".to_string()),
    };
    let discrepancy = match transaction.query_opt(ENTRIES, &[]).await? {
        Some(row) => Some(entry_problem(&row)),
        None => match transaction.query_opt(BALANCES, &[]).await? {
            Some(row) => {
                let user: String = row.get(0);
                let held: Option<i64> = row.get(1);
                let total: Option<String> = row.get(2);
                Some(match (held, total) {
                    (Some(held), Some(total)) => format!(
                        "user {user:?}: the account holds a balance of {held} but the ledger sums to {total}"
                    ),
                    (Some(_), None) => {
                        format!("user {user:?}: an account that the ledger never opened")
                    }
                    (None, _) => format!("user {user:?}: ledger entries but no account"),
                })
            }
            None => match transaction.query_opt(LOTS, &[]).await? {
                Some(row) => {
                    let user: String = row.get(0);
                    let balance: i64 = row.get(1);
                    let total: String = row.get(2);
                    let bad: i64 = row.get(3);
                    Some(match bad {
                        -1 => format!(
                            "user {user:?}: the lots add up to {total} but the balance is {balance}"
                        ),
                        lot => format!("user {user:?}: lot {lot} holds a remainder out of range"),
                    })
                }
                None => match transaction.query_opt(KEYS, &[]).await? {
                    Some(row) => {
                        let key: String = row.get(0);
                        let what: &str = row.get(1);
                        Some(format!("idempotency key {key:?} {what}"))
                    }
                    None => misplaced_key(transaction).await?,
                },
            },
        },
    };
    let discrepancy = match discrepancy {
        Some(found) => Some(found),
        None => replay(transaction).await?,
    };
    if discrepancy.is_some() {
        report.ok = false;
        report.discrepancy = discrepancy;
    }
    Ok(report)
}

/// Rows of one query, fetched a chunk at a time through a portal (two such queries are read
/// side by side in one transaction).
pub(super) struct Chunked<'t> {
    transaction: &'t Transaction<'t>,
    portal: Portal,
    rows: VecDeque<Row>,
    done: bool,
}

impl<'t> Chunked<'t> {
    pub(super) async fn new(
        transaction: &'t Transaction<'t>,
        query: &str,
    ) -> Result<Chunked<'t>, tokio_postgres::Error> {
        let portal = transaction.bind(query, &[]).await?;
        Ok(Chunked {
            transaction,
            portal,
            rows: VecDeque::new(),
            done: false,
        })
    }

    /// The next row, left in place.
    async fn peek(&mut self) -> Result<Option<&Row>, tokio_postgres::Error> {
        if self.rows.is_empty() && !self.done {
            let fetched = self.transaction.query_portal(&self.portal, CHUNK).await?;
            self.done = fetched.len() < CHUNK as usize;
            self.rows.extend(fetched);
        }
        Ok(self.rows.front())
    }

    pub(super) async fn next(&mut self) -> Result<Option<Row>, tokio_postgres::Error> {
        self.peek().await?;
        Ok(self.rows.pop_front())
    }
}

/// Replays every user's entries onto their lots and holds ([`rules::replay_lots`]) and
/// compares what they derive with the `lots` and `holds` tables: the first entry that breaks
/// a rule of the lots or the holds, or the first account whose lots or holds (each in its
/// one state, with the parts it took) are not what its ledger derives.
async fn replay(transaction: &Transaction<'_>) -> Result<Option<String>, tokio_postgres::Error> {
    let mut entries = Chunked::new(transaction, &REPLAY).await?;
    let mut held = Chunked::new(transaction, HELD_LOTS).await?;
    let mut kept_holds = Chunked::new(transaction, HELD_HOLDS).await?;
    let mut user: Option<String> = None;
    let mut derived = Derived::default();
    while let Some(row) = entries.next().await? {
        let owner: &str = row.get(0);
        if user.as_deref() != Some(owner) {
            if let Some(done) = &user
                && let Some(problem) =
                    compare(&mut held, &mut kept_holds, done, &mut derived).await?
            {
                return Ok(Some(problem));
            }
            user = Some(owner.to_string());
            derived = Derived::default();
        }
        let seq: i64 = row.get(1);
        if let Err(fault) = derived.replay(&row) {
            return Ok(Some(format!("seq {seq}: user {owner:?}: {fault}")));
        }
    }
    if let Some(done) = &user
        && let Some(problem) = compare(&mut held, &mut kept_holds, done, &mut derived).await?
    {
        return Ok(Some(problem));
    }
    if let Some(row) = held.next().await? {
        let owner: String = row.get(0);
        return Ok(Some(format!(
            "user {owner:?}: lots kept without a ledger entry"
        )));
    }
    Ok(kept_holds.next().await?.map(|row| {
        let owner: String = row.get(0);
        format!("user {owner:?}: holds kept without a ledger entry")
    }))
}

/// What one user's entries derive: their lots, their open holds, every hold they made as it
/// is now (by id), and their charges as refunds may reverse them (a refund is of its own
/// account's charge, so they are remembered user by user).
#[derive(Default)]
struct Derived {
    lots: Vec<Lot>,
    open: Vec<Hold>,
    holds: std::collections::BTreeMap<u64, Hold>,
    charges: rules::Refundable,
}

impl Derived {
    /// Replays one row of [`REPLAY`].
    fn replay(&mut self, row: &Row) -> Result<(), String> {
        let read = ReplayRow::read(row)?;
        let changed = rules::replay_lots(
            &mut self.lots,
            &mut self.open,
            &read.entry,
            read.recorded(),
            read.seq,
            read.time,
        )?;
        self.charges
            .note(row.get(0), read.seq, &read.entry, read.recorded())?;
        if let Some(hold) = changed {
            self.holds.insert(hold.id, hold);
        }
        Ok(())
    }
}

/// An entry as a row of [`REPLAY`]'s columns holds it (user_id first), with what it says
/// about lots: what [`rules::replay_lots`] reads. Also read by the past view, whose query
/// has the same columns.
pub(super) struct ReplayRow {
    pub seq: u64,
    pub time: i64,
    pub entry: Entry,
    opened: Option<LotTerms>,
    from: Vec<LotTake>,
    at: Option<i64>,
    hold: Option<u64>,
    captured: Option<u64>,
    reverses: Option<u64>,
    refunded: Option<u64>,
    reopened: Vec<Lot>,
}

impl ReplayRow {
    pub fn read(row: &Row) -> Result<ReplayRow, String> {
        Ok(ReplayRow {
            seq: row.get::<_, i64>(1) as u64,
            time: row.get(2),
            entry: Entry {
                kind: super::kind_from(row.get(3))?,
                delta: row.get(4),
                balance: super::balance_from(row.get(5)),
            },
            opened: row.get::<_, Option<&str>>(6).map(|kind| LotTerms {
                expires_at: row.get(7),
                priority: row.get::<_, Option<i16>>(8).unwrap_or(0).clamp(0, 100) as u8,
                kind: super::columns::lot_kind_from(kind),
            }),
            from: super::columns::takes_from(row.get(10), row.get(11)),
            at: row.get(9),
            hold: row.get::<_, Option<i64>>(12).map(|id| id as u64),
            captured: row.get::<_, Option<i64>>(13).map(|tokens| tokens as u64),
            reverses: row.get::<_, Option<i64>>(14).map(|seq| seq as u64),
            refunded: row.get::<_, Option<i64>>(15).map(|tokens| tokens as u64),
            reopened: super::refunds::reopened_from(row.get(16))?,
        })
    }

    /// The entry as a ledger records it (what a dump carries).
    pub fn recorded_entry(self) -> crate::store::recorded::RecordedEntry {
        crate::store::recorded::RecordedEntry {
            kind: self.entry.kind,
            delta: self.entry.delta,
            balance: self.entry.balance,
            at: self.at,
            lot: self
                .opened
                .map(|terms| crate::store::recorded::TermsRecord {
                    expires_at: terms.expires_at,
                    priority: terms.priority,
                    kind: terms.kind,
                }),
            from: self.from,
            hold: self.hold,
            captured: self.captured,
            reverses: self.reverses,
            refunded: self.refunded,
            reopened: self.reopened,
        }
    }

    pub fn recorded(&self) -> Recorded<'_> {
        Recorded {
            opened: self.opened,
            from: &self.from,
            at: self.at,
            hold: self.hold,
            captured: self.captured,
            reverses: self.reverses,
            refunded: self.refunded,
            reopened: &self.reopened,
        }
    }
}

/// Compares the lots and holds the ledger derives for `user` with the `lots` and `holds`
/// tables', reading the tables' rows up to and including that user's.
async fn compare(
    held: &mut Chunked<'_>,
    kept_holds: &mut Chunked<'_>,
    user: &str,
    derived: &mut Derived,
) -> Result<Option<String>, tokio_postgres::Error> {
    let table: Vec<Lot> = match rows_of(held, user, "lots").await? {
        Ok(rows) => rows
            .iter()
            .map(|row| super::columns::lot_from(row, 1))
            .collect(),
        Err(problem) => return Ok(Some(problem)),
    };
    derived.lots.sort_by_key(|lot| lot.id);
    if table != derived.lots {
        return Ok(Some(format!(
            "user {user:?}: the lots table holds {table:?} but the ledger derives {:?}",
            derived.lots
        )));
    }
    let kept: Vec<Hold> = match rows_of(kept_holds, user, "holds").await? {
        Ok(rows) => super::holds::holds_from(&rows, 0)
            .into_iter()
            .map(|(_, hold)| hold)
            .collect(),
        Err(problem) => return Ok(Some(problem)),
    };
    let made: Vec<&Hold> = derived.holds.values().collect();
    Ok(kept.iter().ne(made.iter().copied()).then(|| {
        format!("user {user:?}: the holds table keeps {kept:?} but the ledger derives {made:?}")
    }))
}

/// The rows of a table in user order (user_id first) up to and including `user`'s: theirs,
/// or the problem if an earlier user's are there (kept without a ledger entry).
async fn rows_of(
    table: &mut Chunked<'_>,
    user: &str,
    what: &str,
) -> Result<Result<Vec<Row>, String>, tokio_postgres::Error> {
    let mut rows = Vec::new();
    while let Some(row) = table.peek().await? {
        let owner: &str = row.get(0);
        if owner > user {
            break;
        }
        if owner < user {
            return Ok(Err(format!(
                "user {owner:?}: {what} kept without a ledger entry"
            )));
        }
        rows.extend(table.next().await?);
    }
    Ok(Ok(rows))
}

/// The first keyed entry that does not fit its key's owner.
async fn misplaced_key(
    transaction: &tokio_postgres::Transaction<'_>,
) -> Result<Option<String>, tokio_postgres::Error> {
    let no_params: [&str; 0] = [];
    let rows = transaction.query_raw(SCOPED_KEYS, no_params).await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let kind = match super::kind_from(row.get(3)) {
            Ok(kind) => kind,
            Err(problem) => return Ok(Some(problem)),
        };
        if let Err(problem) = rules::key_fits_entry(row.get(1), row.get(2), kind) {
            let seq: i64 = row.get(0);
            return Ok(Some(format!("seq {seq}: {problem}")));
        }
    }
    Ok(None)
}

/// Names what is wrong with the entry the audit query found.
fn entry_problem(row: &tokio_postgres::Row) -> String {
    let seq: i64 = row.get(0);
    let user: String = row.get(1);
    let kind: String = row.get(2);
    let delta: i64 = row.get(3);
    let balance: i64 = row.get(4);
    let running: String = row.get(5);
    let previous: Option<i64> = row.get(6);
    let n: i64 = row.get(7);
    let before = previous.unwrap_or(0);
    if running.starts_with('-') {
        return format!("seq {seq}: user {user:?}'s balance went below zero ({before} {delta:+})");
    }
    if kind == "welcome" && n != 1 {
        return format!("seq {seq}: a second welcome grant for user {user:?}");
    }
    if kind != "welcome" && n == 1 {
        return format!("seq {seq}: user {user:?}'s first entry is not the welcome grant");
    }
    if balance.to_string() != running || previous.is_some_and(|p| p + delta != balance) {
        return format!(
            "seq {seq}: user {user:?}'s balance is recorded as {balance} but {before} {delta:+} = {}",
            before + delta
        );
    }
    format!("seq {seq}: a {kind} entry with delta {delta}")
}

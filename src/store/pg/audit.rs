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
//! or above its amount. Stops at the first discrepancy, which the report names.

use crate::domain::AuditReport;
use crate::store::rules;
use futures_util::TryStreamExt;
use tokio_postgres::Client;

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
                    WHEN 'entitle' THEN delta = 0 WHEN 'expire' THEN delta < 0 ELSE false END
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
    if discrepancy.is_some() {
        report.ok = false;
        report.discrepancy = discrepancy;
    }
    Ok(report)
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

//! PostgreSQL's side of `memesd export`: the database's ledger written as a
//! [dump](crate::store::dump), from one consistent snapshot (a REPEATABLE READ, READ ONLY
//! transaction), so hosts keep writing while it runs; like the file store's export, it
//! refuses a ledger that fails its audit (run in the same snapshot).
//!
//! The database keeps entries, not the requests that wrote them: a dump's transaction is
//! rebuilt as one request wrote it, its expiries and welcome grant (same user, same time,
//! consecutive numbers) followed by its own entry, which carries the key (with its
//! fingerprint and stored reply), reason, memes, tier and until. Entries that two hosts'
//! numbers interleaved stay apart, each its own transaction: a dump's reader asks only that a
//! transaction's entries be of one user, at one time, numbered consecutively.

use super::audit::{self, Chunked, ReplayRow};
use super::{PgStore, db_error, tier_from};
use crate::domain::{EntryKind, Tier};
use crate::store::dump::{Counts, Transaction, Writer};
use crate::store::recorded::RecordedEntry;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Write;

/// Every entry in `seq` order: first the columns of the audit's replay ([`ReplayRow`]), then
/// what a request's own entry carries (from [`audit::REPLAY_COLUMNS`] on).
static ENTRIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, e.key, e.reason, e.memes, e.tier, e.until_ms, k.fingerprint, k.reply
         FROM entries AS e LEFT JOIN idempotency_keys AS k ON k.key = e.key
         ORDER BY e.seq",
        audit::replay_columns()
    )
});

/// A transaction being gathered, owned.
struct Request {
    seq: u64,
    time: i64,
    user: String,
    entries: Vec<RecordedEntry>,
    memes: Vec<String>,
    key: Option<String>,
    fp: Option<String>,
    reply: Option<Box<RawValue>>,
    reason: Option<String>,
    tier: Option<Tier>,
    until: Option<i64>,
}

impl Request {
    fn write(&self, dump: &mut Writer<&mut dyn Write>) -> Result<(), String> {
        let transaction = Transaction {
            seq: self.seq,
            time: self.time,
            user: Cow::Borrowed(&self.user),
            entries: self.entries.clone(),
            memes: self
                .memes
                .iter()
                .map(|m| Cow::Borrowed(m.as_str()))
                .collect(),
            key: self.key.as_deref().map(Cow::Borrowed),
            fp: self.fp.as_deref().map(Cow::Borrowed),
            reply: self.reply.as_deref(),
            reason: self.reason.as_deref().map(Cow::Borrowed),
            tier: self.tier,
            until: self.until,
            prev_sha256: None,
        };
        dump.write(&transaction)
            .map_err(|e| format!("writing the export: {e}"))
    }

    /// Whether an entry made at `time` for `user`, numbered `seq`, was written by this
    /// request (which has not had its own entry yet).
    fn continues(&self, seq: u64, time: i64, user: &str) -> bool {
        self.seq + self.entries.len() as u64 == seq && self.time == time && self.user == user
    }
}

/// Writes the store's ledger to `out` as a dump, once its audit passes.
pub async fn export(store: &PgStore, out: &mut dyn Write) -> Result<Counts, String> {
    let mut object = store
        .pool()
        .get()
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let client: &mut tokio_postgres::Client = &mut object;
    let db =
        |what: &'static str| move |e: tokio_postgres::Error| format!("{what}: {}", db_error(&e));
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db("beginning"))?;
    let report = audit::check(&transaction).await.map_err(db("auditing"))?;
    if !report.ok {
        return Err(format!(
            "the ledger fails its audit, so it is not exported: {}",
            report.discrepancy.as_deref().unwrap_or("(no detail)")
        ));
    }
    let mut dump = Writer::start(out, None).map_err(|e| format!("writing the export: {e}"))?;
    let mut rows = Chunked::new(&transaction, &ENTRIES)
        .await
        .map_err(db("reading the entries"))?;
    let mut pending: Option<Request> = None;
    while let Some(row) = rows.next().await.map_err(db("reading the entries"))? {
        let user: String = row.get(0);
        let read = ReplayRow::read(&row)?;
        let (seq, time, kind) = (read.seq, read.time, read.entry.kind);
        if let Some(request) = pending.take_if(|request| !request.continues(seq, time, &user)) {
            request.write(&mut dump)?;
        }
        let request = pending.get_or_insert_with(|| Request {
            seq,
            time,
            user,
            entries: Vec::new(),
            memes: Vec::new(),
            key: None,
            fp: None,
            reply: None,
            reason: None,
            tier: None,
            until: None,
        });
        request.entries.push(read.recorded_entry());
        if matches!(
            kind,
            EntryKind::Welcome | EntryKind::Expire | EntryKind::Release
        ) {
            // A request's own entry follows.
            continue;
        }
        let own = audit::REPLAY_COLUMNS;
        request.key = row.get(own);
        request.reason = row.get(own + 1);
        request.memes = row
            .get::<_, Option<Vec<String>>>(own + 2)
            .unwrap_or_default();
        request.tier = row.get::<_, Option<&str>>(own + 3).map(tier_from);
        request.until = row.get(own + 4);
        request.fp = row.get(own + 5);
        request.reply = row
            .get::<_, Option<String>>(own + 6)
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| format!("seq {seq}: a stored reply that is not JSON: {e}"))?;
        if let Some(request) = pending.take() {
            request.write(&mut dump)?;
        }
    }
    if let Some(request) = pending.take() {
        request.write(&mut dump)?;
    }
    transaction.commit().await.map_err(db("ending"))?;
    dump.finish()
        .map_err(|e| format!("writing the export: {e}"))
}

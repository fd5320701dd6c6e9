//! PostgreSQL's side of `memesd import`: a [dump](crate::store::dump) of any store's ledger
//! loaded into the database, in one transaction.
//!
//! Everything is written in one transaction, into an empty database (or, told `--replace`,
//! one it empties first, and only while no memesd host serves it), audited with the
//! PostgreSQL audit before it commits, and the entry sequence is set past the last imported
//! number. Sequence numbers and times are kept, so history, stored replies and the audit
//! read the same as they did in the store the dump came from. The dump's own checks (its
//! header, order, counts and end line) are [`crate::store::dump::Reader`]'s; a dump that
//! fails them leaves the database as it was.
//!
//! Lots: each account's lots are what its entries say, replayed by the rules that made them
//! ([`rules::replay_lots`], which also refuses an entry that breaks them); entries that name
//! no lots (a version 1 dump, or lines written before lots) leave the balance as one
//! carried-over lot. What each entry did to lots is kept with it (`lot_*`, `at_ms`,
//! `lot_takes`), so history reads the same. Holds likewise: each is what its entries leave it
//! (open, or ended once), with the parts it took, and keeps its id. A refund keeps what it
//! reverses and refunded, and the lots it re-opened (`reopened_lots`); the audit before
//! COMMIT checks each against its charge.

use super::columns::{EntryColumns, Extras, KeyColumns, LotColumns};
use super::holds::{self, HoldColumns};
use super::{PgStore, audit, db_error};
use crate::domain::{AuditReport, Hold, HoldState, Lot};
use crate::store::dump::{Counts, Reader, Source, Transaction};
use crate::store::rules;
use std::collections::HashMap;
use std::io::BufRead;

/// What an import loaded, and the audit of the database it committed.
#[derive(Debug, Clone)]
pub struct Imported {
    pub counts: Counts,
    pub audit: AuditReport,
    /// The ledger the dump was made from, if it says.
    pub source: Option<Source>,
}

/// Entries written per statement.
const CHUNK: usize = 10_000;

const ENTRIES: &str = "INSERT INTO entries (seq, time_ms, user_id, kind, delta, balance, key, reason, memes, tier, until_ms,
                         lot_expires_ms, lot_priority, lot_kind, at_ms, hold_id, captured,
                         reverses, refunded)
    SELECT s, t, u, k, d, b, key, r,
           coalesce(m::text[], '{}'),
           tier, until, le, lp, lk, at, h, c, rv, rf
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],
                $12::bigint[], $13::smallint[], $14::text[], $15::bigint[], $16::bigint[],
                $17::bigint[], $18::bigint[], $19::bigint[])
         AS x (s, t, u, k, d, b, key, r, m, tier, until, le, lp, lk, at, h, c, rv, rf)";
/// `lot_takes` rows: the entry's row number in the chunk ($1) names its seq among the
/// chunk's ($5).
const TAKES: &str = "INSERT INTO lot_takes (seq, ord, lot, tokens)
    SELECT s.seq, y.o, y.l, y.k
    FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::bigint[]) AS y (n, o, l, k)
    JOIN unnest($5::bigint[]) WITH ORDINALITY AS s (seq, n) ON s.n = y.n";
/// `reopened_lots` rows: the refund's row number in the chunk ($1) names its seq among the
/// chunk's ($8).
const REOPENED: &str =
    "INSERT INTO reopened_lots (seq, lot, amount, effective_ms, expires_ms, priority, kind)
    SELECT s.seq, y.l, y.a, y.ef, y.ex, y.pr, y.k
    FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                $6::smallint[], $7::text[]) AS y (n, l, a, ef, ex, pr, k)
    JOIN unnest($8::bigint[]) WITH ORDINALITY AS s (seq, n) ON s.n = y.n";
const LOTS: &str =
    "INSERT INTO lots (user_id, id, amount, remaining, effective_ms, expires_ms, priority, kind)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                         $6::bigint[], $7::smallint[], $8::text[])";
const KEYS: &str = "INSERT INTO idempotency_keys (key, fingerprint, reply)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[])";
const ACCOUNTS: &str = "INSERT INTO accounts (user_id, balance, tier, until_ms, version)
    SELECT u, b, t, un, 1 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
         AS a (u, b, t, un)";

/// Entries and keys read but not yet written.
#[derive(Default)]
struct Buffer {
    seq: Vec<i64>,
    entries: EntryColumns,
    keys: KeyColumns,
}

impl Buffer {
    fn add(&mut self, record: &Transaction) {
        let memes = match record.memes.is_empty() {
            true => None,
            false => Some(super::array_literal(&record.memes)),
        };
        let count = record.entries.len() as u64;
        self.seq
            .extend((record.seq..record.seq + count).map(|seq| seq as i64));
        self.entries.push_request(
            record.time,
            &record.user,
            &record.entries,
            Extras {
                key: record.key.as_deref(),
                reason: record.reason.as_deref(),
                memes,
                tier: record.tier,
                until: record.until,
            },
        );
        if let (Some(key), Some(fp), Some(reply)) = (&record.key, &record.fp, record.reply) {
            self.keys.push(key, fp, reply.get());
        }
    }

    async fn flush(&mut self, tx: &tokio_postgres::Transaction<'_>) -> Result<(), String> {
        let db = |e: tokio_postgres::Error| format!("writing entries: {}", db_error(&e));
        if !self.seq.is_empty() {
            let seq: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&self.seq];
            let params: Vec<_> = seq
                .into_iter()
                .chain(self.entries.params())
                .chain(self.entries.lot_params())
                .collect();
            tx.execute(ENTRIES, &params).await.map_err(db)?;
            if !self.entries.take_rows().is_empty() {
                let mut takes: Vec<_> = self.entries.take_params().into_iter().collect();
                takes.push(&self.seq);
                tx.execute(TAKES, &takes).await.map_err(db)?;
            }
            if self.entries.reopens() {
                let mut reopened: Vec<_> = self.entries.reopened_params().into_iter().collect();
                reopened.push(&self.seq);
                tx.execute(REOPENED, &reopened).await.map_err(db)?;
            }
        }
        if !self.keys.is_empty() {
            tx.execute(KEYS, &self.keys.params()).await.map_err(db)?;
        }
        *self = Buffer::default();
        Ok(())
    }
}

/// An account as the stream leaves it.
struct Final {
    balance: u64,
    tier: crate::domain::Tier,
    until: Option<i64>,
    lots: Vec<Lot>,
    open: Vec<Hold>,
}

/// Refuses to replace a ledger that memesd hosts are serving: they would go on deciding
/// changes on balances the import is about to overwrite.
async fn refuse_if_served(tx: &tokio_postgres::Transaction<'_>) -> Result<(), String> {
    let row = tx
        .query_one(
            "SELECT count(*), string_agg(DISTINCT coalesce(host(client_addr), 'the local socket'), ', ')
             FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
            &[&super::SERVING_APPLICATION],
        )
        .await
        .map_err(|e| format!("looking for memesd hosts: {}", db_error(&e)))?;
    let sessions: i64 = row.get(0);
    match sessions {
        0 => Ok(()),
        _ => Err(format!(
            "memesd hosts are serving this database ({sessions} connections, from {}): stop them before replacing its ledger, then start them again once the import is done",
            row.get::<_, Option<String>>(1).unwrap_or_default()
        )),
    }
}

/// Loads a dump into the store's database, in one transaction. Refuses a database that
/// already holds a ledger unless `replace`.
pub async fn import(
    store: &PgStore,
    input: &mut dyn BufRead,
    replace: bool,
) -> Result<Imported, String> {
    let mut object = store
        .pool()
        .get()
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let client: &mut tokio_postgres::Client = &mut object;
    let db =
        |what: &'static str| move |e: tokio_postgres::Error| format!("{what}: {}", db_error(&e));
    let tx = client.transaction().await.map_err(db("beginning"))?;
    tx.batch_execute("SET LOCAL statement_timeout = 0; SET CONSTRAINTS ALL DEFERRED")
        .await
        .map_err(db("preparing the transaction"))?;
    let held = tx
        .query_one(
            "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM entries)",
            &[],
        )
        .await
        .map_err(db("looking at the database"))?;
    let (accounts, entries): (i64, i64) = (held.get(0), held.get(1));
    if accounts + entries > 0 && replace {
        refuse_if_served(&tx).await?;
    }
    if accounts + entries > 0 {
        if !replace {
            return Err(format!(
                "the database already holds a ledger ({}, {}); import only into an empty one, or pass --replace to discard what it holds",
                counted(accounts, "account"),
                counted(entries, "entry")
            ));
        }
        tx.batch_execute(
            "TRUNCATE idempotency_keys, lot_takes, reopened_lots, lots, hold_parts, holds, entries,
                      accounts",
        )
        .await
        .map_err(db("emptying the database"))?;
    }

    let mut dump = Reader::open(input)?;
    let mut buffer = Buffer::default();
    let mut accounts: HashMap<String, Final> = HashMap::new();
    let mut holds = HoldColumns::default();
    while let Some(record) = dump.read()? {
        let account = accounts.entry(record.user.to_string()).or_insert(Final {
            balance: 0,
            tier: crate::domain::Tier::Free,
            until: None,
            lots: Vec::new(),
            open: Vec::new(),
        });
        for (i, entry) in record.entries.iter().enumerate() {
            let seq = record.seq + i as u64;
            let changed = rules::replay_lots(
                &mut account.lots,
                &mut account.open,
                &entry.entry(),
                entry.recorded(),
                seq,
                record.time,
            )
            .map_err(|e| format!("seq {seq} (user {:?}): {e}", record.user))?;
            // A hold as its last entry leaves it, named by the entries that made and ended it.
            match changed {
                Some(hold) if hold.state == HoldState::Open => {
                    holds.opened(&record.user, &hold, seq as i64);
                }
                Some(hold) => holds.ended(&hold, seq as i64),
                None => {}
            }
        }
        account.balance = record.final_balance();
        if let Some(tier) = record.tier {
            account.tier = tier;
            account.until = record.until;
        }
        buffer.add(&record);
        if buffer.seq.len() >= CHUNK {
            buffer.flush(&tx).await?;
        }
    }
    buffer.flush(&tx).await?;
    let (counts, next_seq) = (dump.counts(), dump.next_seq());
    let source = dump.source().cloned();
    let mut users = Vec::with_capacity(CHUNK);
    let (mut balances, mut tiers, mut untils) = (Vec::new(), Vec::new(), Vec::new());
    let mut all = accounts.into_iter().peekable();
    while all.peek().is_some() {
        let mut lots = LotColumns::default();
        for (user, account) in all.by_ref().take(CHUNK) {
            for lot in &account.lots {
                lots.push(&user, lot);
            }
            users.push(user);
            balances.push(account.balance as i64);
            tiers.push(account.tier.as_str());
            untils.push(account.until);
        }
        tx.execute(ACCOUNTS, &[&users, &balances, &tiers, &untils])
            .await
            .map_err(db("writing accounts"))?;
        if !lots.is_empty() {
            tx.execute(LOTS, &lots.params())
                .await
                .map_err(db("writing lots"))?;
        }
        users.clear();
        balances.clear();
        tiers.clear();
        untils.clear();
    }
    if !holds.is_empty() {
        let statement = format!(
            "WITH {} SELECT 1",
            holds::write(1, &holds::AS_IS, &holds::AS_IS)
        );
        tx.execute(statement.as_str(), &holds.params())
            .await
            .map_err(db("writing holds"))?;
        // Holds made from now on are numbered after the imported ones.
        tx.execute("SELECT setval('hold_ids', max(id)) FROM holds", &[])
            .await
            .map_err(db("setting the hold sequence"))?;
    }
    if next_seq > 1 {
        tx.execute(
            "SELECT setval('entries_seq', $1)",
            &[&((next_seq - 1) as i64)],
        )
        .await
        .map_err(db("setting the entry sequence"))?;
    }
    tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE")
        .await
        .map_err(db("checking the constraints"))?;
    let audit = audit::check(&tx).await.map_err(db("auditing the import"))?;
    if !audit.ok {
        return Err(format!(
            "the imported ledger fails the audit, so nothing was imported: {}",
            audit.discrepancy.as_deref().unwrap_or("(no detail)")
        ));
    }
    tx.commit().await.map_err(db("committing"))?;
    // The planner's statistics, as after any bulk load: without them, hosts started right
    // after an import plan the batch writer's statements for empty tables (sequential scans
    // of every account per batch) until autovacuum gets round to these tables.
    client
        .batch_execute(
            "ANALYZE accounts, entries, idempotency_keys, lots, lot_takes, holds, hold_parts,
                     reopened_lots",
        )
        .await
        .map_err(db("analyzing the imported tables"))?;
    Ok(Imported {
        counts,
        audit,
        source,
    })
}

/// `1 account`, `2 entries`: a count with its noun, singular or plural.
fn counted(n: i64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn counts_name_their_kind_in_the_right_number() {
        assert_eq!(counted(1, "account"), "1 account");
        assert_eq!(counted(2, "entry"), "2 entries");
        assert_eq!(counted(0, "account"), "0 accounts");
        assert_eq!(counted(1, "entry"), "1 entry");
    }
}

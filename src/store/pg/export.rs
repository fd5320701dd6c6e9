//! Moving a ledger from the file store into PostgreSQL: `memesd export` writes the file
//! store's whole ledger as a stream, `memesd import` loads it into a database.
//!
//! The stream is NDJSON: a header line `{"format":"memes-ledger","version":1}`, then one line
//! per transaction exactly as the journal has it (sequence number, time, user, entries with
//! kind, delta and balance after, and the memes, key, fingerprint, stored reply, reason,
//! tier and until that came with it; the journal's byte offsets are left out, they mean
//! nothing elsewhere), then a trailer `{"end":{…counts…}}` so a cut-short stream is never
//! taken for a whole one. Sequence numbers and times are kept: history, stored replies and
//! the audit read the same before and after.
//!
//! Export audits the file store first and refuses a ledger that fails its audit. Import
//! writes everything in one transaction, into an empty database (or, told `--replace`, one
//! it empties first), audits what it wrote with the PostgreSQL audit before it commits, and
//! sets the entry sequence past the last imported number.

use super::columns::{EntryColumns, Extras, KeyColumns};
use super::{PgStore, audit, db_error};
use crate::domain::AuditReport;
use crate::store::file::FileStore;
use crate::store::file::record::{JournalLine, RecordIn, RecordOut};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::FileExt;

/// The stream's format name and version.
pub const FORMAT: &str = "memes-ledger";
pub const VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// Where the exported ledger lives, so that an import can mark it as moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
}

/// The file ledger an export was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The machine's host name.
    pub host: String,
    /// The data directory, absolute.
    pub dir: std::path::PathBuf,
}

impl Source {
    /// The ledger in `dir`, on this machine.
    pub fn here(dir: &std::path::Path) -> Source {
        Source {
            host: host_name(),
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        }
    }
}

/// This machine's name (empty if it has none).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    end: Counts,
}

/// What a stream holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub transactions: u64,
    pub entries: u64,
    pub accounts: u64,
    pub keys: u64,
}

/// Writes the ledger of an open file store to `out`, after auditing it. Blocking.
pub fn export_file_store(
    store: &FileStore,
    report: &AuditReport,
    out: &mut dyn Write,
) -> Result<Counts, String> {
    if !report.ok {
        return Err(format!(
            "the ledger fails its audit, so it is not exported: {}",
            report.discrepancy.as_deref().unwrap_or("(no detail)")
        ));
    }
    let path = store.dir().join(crate::store::file::recovery::JOURNAL_FILE);
    let end = store.journal_end();
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = io::BufReader::with_capacity(1 << 20, ReadAt { file, at: 0 }.take(end));
    let write_error = |e: io::Error| format!("writing the export: {e}");
    let mut line_out = Vec::with_capacity(4096);
    serde_json::to_writer(
        &mut line_out,
        &Header {
            format: FORMAT.into(),
            version: VERSION,
            source: Some(Source::here(store.dir())),
        },
    )
    .expect("header serialises");
    line_out.push(b'\n');
    out.write_all(&line_out).map_err(write_error)?;
    let mut counts = Counts::default();
    let mut users = std::collections::HashSet::new();
    for (number, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let parsed = JournalLine::parse(&line)
            .map_err(|e| format!("{}, line {}: {e}", path.display(), number + 1))?;
        let JournalLine::Transaction(record) = parsed else {
            continue;
        };
        let memes: Vec<&str> = record.memes.iter().map(|m| m.as_ref()).collect();
        line_out.clear();
        RecordOut {
            seq: record.seq,
            time: record.time,
            user: &record.user,
            prev: None,
            entries: &record.entries,
            memes: &memes,
            key: record.key.as_deref(),
            fp: record.fp.as_deref(),
            reply: record.reply,
            reason: record.reason.as_deref(),
            tier: record.tier,
            until: record.until,
        }
        .encode(&mut line_out);
        out.write_all(&line_out).map_err(write_error)?;
        counts.transactions += 1;
        counts.entries += record.entries.len() as u64;
        counts.keys += u64::from(record.key.is_some());
        if !users.contains(record.user.as_ref()) {
            users.insert(record.user.to_string());
        }
    }
    counts.accounts = users.len() as u64;
    if (counts.transactions, counts.entries, counts.keys)
        != (report.transactions, report.entries, report.keys)
    {
        return Err(format!(
            "the journal changed while it was exported ({counts:?}, audited {report:?})"
        ));
    }
    line_out.clear();
    serde_json::to_writer(&mut line_out, &Trailer { end: counts }).expect("trailer serialises");
    line_out.push(b'\n');
    out.write_all(&line_out).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    Ok(counts)
}

/// Positional reads from the start of a file (a journal another handle appends to).
struct ReadAt {
    file: std::fs::File,
    at: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buf, self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

/// What an import loaded, and the audit of the database it committed.
#[derive(Debug, Clone)]
pub struct Imported {
    pub counts: Counts,
    pub audit: AuditReport,
    /// The file ledger the stream was exported from, if it says.
    pub source: Option<Source>,
}

/// Entries written per statement.
const CHUNK: usize = 10_000;

const ENTRIES: &str = "INSERT INTO entries (seq, time_ms, user_id, kind, delta, balance, key, reason, memes, tier, until_ms)
    SELECT s, t, u, k, d, b, key, r,
           coalesce(m::text[], '{}'),
           tier, until
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])
         AS x (s, t, u, k, d, b, key, r, m, tier, until)";
const KEYS: &str = "INSERT INTO idempotency_keys (key, fingerprint, reply)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[])";
const ACCOUNTS: &str = "INSERT INTO accounts (user_id, balance, tier, until_ms)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])";

/// Entries and keys read but not yet written.
#[derive(Default)]
struct Buffer {
    seq: Vec<i64>,
    entries: EntryColumns,
    keys: KeyColumns,
}

impl Buffer {
    fn add(&mut self, record: &RecordIn) {
        let memes = match record.memes.is_empty() {
            true => None,
            false => Some(super::array_literal(&record.memes)),
        };
        let count = record.entries.len() as u64;
        let entries: Vec<_> = record.entries.iter().map(|entry| entry.entry()).collect();
        self.seq
            .extend((record.seq..record.seq + count).map(|seq| seq as i64));
        self.entries.push_request(
            record.time,
            &record.user,
            &entries,
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
            let params: Vec<_> = seq.into_iter().chain(self.entries.params()).collect();
            tx.execute(ENTRIES, &params).await.map_err(db)?;
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

/// Loads a stream made by [`export_file_store`] into the store's database, in one
/// transaction. Refuses a database that already holds a ledger unless `replace`.
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
        tx.batch_execute("TRUNCATE idempotency_keys, entries, accounts")
            .await
            .map_err(db("emptying the database"))?;
    }

    let mut lines = input.split(b'\n');
    let mut line_no = 0u64;
    let mut next_line = |line_no: &mut u64| -> Result<Option<Vec<u8>>, String> {
        *line_no += 1;
        lines
            .next()
            .transpose()
            .map_err(|e| format!("reading the stream: {e}"))
    };
    let header = next_line(&mut line_no)?.ok_or("the stream is empty")?;
    let source = match serde_json::from_slice::<Header>(&header) {
        Ok(h) if h.format == FORMAT && h.version == VERSION => h.source,
        Ok(h) => {
            return Err(format!(
                "the stream is {} version {}; this memesd reads {FORMAT} version {VERSION}",
                h.format, h.version
            ));
        }
        Err(_) => return Err("line 1: not a memes ledger export (no header)".into()),
    };
    let mut buffer = Buffer::default();
    let mut accounts: HashMap<String, Final> = HashMap::new();
    let mut counts = Counts::default();
    let mut next_seq = 1u64;
    let mut trailer = None;
    while let Some(line) = next_line(&mut line_no)? {
        if line.is_empty() {
            continue;
        }
        if trailer.is_some() {
            return Err(format!("line {line_no}: data after the end of the stream"));
        }
        if line.starts_with(br#"{"end":"#) {
            let end: Trailer = serde_json::from_slice(&line)
                .map_err(|e| format!("line {line_no}: not a valid end line: {e}"))?;
            trailer = Some(end.end);
            continue;
        }
        let record = RecordIn::parse(&line).map_err(|e| format!("line {line_no}: {e}"))?;
        if record.seq < next_seq {
            return Err(format!(
                "line {line_no}: sequence number {} does not follow {}",
                record.seq,
                next_seq - 1
            ));
        }
        next_seq = record.next_seq();
        counts.transactions += 1;
        counts.entries += record.entries.len() as u64;
        counts.keys += u64::from(record.key.is_some());
        let account = accounts.entry(record.user.to_string()).or_insert(Final {
            balance: 0,
            tier: crate::domain::Tier::Free,
            until: None,
        });
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
    counts.accounts = accounts.len() as u64;
    match trailer {
        None => return Err("the stream is cut short: it has no end line".into()),
        Some(end) if end != counts => {
            return Err(format!(
                "the stream's end line counts {end:?} but it holds {counts:?}"
            ));
        }
        Some(_) => {}
    }
    let mut users = Vec::with_capacity(CHUNK);
    let (mut balances, mut tiers, mut untils) = (Vec::new(), Vec::new(), Vec::new());
    let mut all = accounts.into_iter().peekable();
    while all.peek().is_some() {
        for (user, account) in all.by_ref().take(CHUNK) {
            users.push(user);
            balances.push(account.balance as i64);
            tiers.push(account.tier.as_str());
            untils.push(account.until);
        }
        tx.execute(ACCOUNTS, &[&users, &balances, &tiers, &untils])
            .await
            .map_err(db("writing accounts"))?;
        users.clear();
        balances.clear();
        tiers.clear();
        untils.clear();
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
        .batch_execute("ANALYZE accounts, entries, idempotency_keys")
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

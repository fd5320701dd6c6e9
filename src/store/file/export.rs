//! The file store's side of `memesd export`: its ledger written as a [dump](crate::store::dump),
//! read straight from the journal, one transaction line after another.
//!
//! The journal's lines and the dump's transactions hold the same facts, so this is a
//! translation, line by line, that leaves out what only the journal needs (each line's `prev`
//! byte offset, the batch end lines). It reads the journal up to where its last complete
//! line ends, through a handle of its own, and never writes to the data directory.
//!
//! It refuses a ledger that fails its audit: a dump is how a ledger moves to another store,
//! and a damaged one must be repaired where it is, not spread.

use super::FileStore;
use super::record::{JournalLine, RecordIn};
use super::recovery::JOURNAL_FILE;
use crate::domain::AuditReport;
use crate::store::dump::{Counts, Source, Transaction, Writer};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::fs::FileExt;

/// Writes the ledger of an open file store to `out` as a dump, once `report` (its audit)
/// says the ledger is sound. Blocking.
pub fn export(
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
    let path = store.dir().join(JOURNAL_FILE);
    let end = store.journal_end();
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = io::BufReader::with_capacity(1 << 20, ReadAt { file, at: 0 }.take(end));
    let write_error = |e: io::Error| format!("writing the export: {e}");
    let mut dump = Writer::start(out, Some(Source::here(store.dir()))).map_err(write_error)?;
    for (number, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        let parsed = JournalLine::parse(&line)
            .map_err(|e| format!("{}, line {}: {e}", path.display(), number + 1))?;
        let JournalLine::Transaction(record) = parsed else {
            continue;
        };
        dump.write(&transaction(record)).map_err(write_error)?;
    }
    let counts = dump.counts();
    // The audit counted the same journal: a difference means something appended (or cut)
    // it in between, and the dump would not be the ledger that was audited.
    if (counts.transactions, counts.entries, counts.keys)
        != (report.transactions, report.entries, report.keys)
    {
        return Err(format!(
            "the journal changed while it was exported ({counts:?}, audited {report:?})"
        ));
    }
    dump.finish().map_err(write_error)
}

/// A journal line as a dump's transaction: the same facts, without the journal's offsets.
fn transaction(record: RecordIn<'_>) -> Transaction<'_> {
    let RecordIn {
        seq,
        time,
        user,
        prev: _,
        entries,
        memes,
        key,
        fp,
        reply,
        reason,
        tier,
        until,
    } = record;
    Transaction {
        seq,
        time,
        user,
        entries,
        memes,
        key,
        fp,
        reply,
        reason,
        tier,
        until,
        prev_sha256: None,
    }
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

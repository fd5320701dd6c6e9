//! Start-up: rebuild the ledger from the last checkpoint plus the journal written after it.
//!
//! A crash in the middle of an append leaves a last line without its newline (or a run of
//! zero bytes the file system extended the file with); no reply was ever sent for it, so it is
//! trimmed with a warning. Anything else that does not read back (a malformed line with
//! lines after it, a gap in sequence numbers, a missing journal) stops start-up with a
//! message naming the file and line: starting with wrong balances is worse than not starting.

use super::OpenError;
use super::ledger::Ledger;
use super::record::RecordIn;
use super::snapshot;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The journal's file name inside the data directory.
pub const JOURNAL_FILE: &str = "journal.ndjson";
/// The checkpoint's file name inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// What start-up found, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Accounts restored from the checkpoint.
    pub checkpoint_accounts: usize,
    /// Journal lines replayed after the checkpoint.
    pub replayed_lines: u64,
    pub replayed_bytes: u64,
    /// Bytes of a torn last line that were cut off.
    pub trimmed_bytes: u64,
}

/// The rebuilt ledger and the journal, open for appending at its end.
pub struct Recovered {
    pub ledger: Ledger,
    pub journal: File,
    pub stats: RecoveryStats,
}

/// Rebuilds the ledger kept in `dir`. Creates an empty journal if there is none and no
/// checkpoint refers to one.
pub fn recover(dir: &Path, welcome: u64) -> Result<Recovered, OpenError> {
    let journal_path = dir.join(JOURNAL_FILE);
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { path, source }
    };
    let checkpoint = snapshot::load(&snapshot_path)?;
    let mut stats = RecoveryStats::default();
    let mut ledger = match checkpoint {
        Some(loaded) => {
            stats.checkpoint_accounts = loaded.accounts.len();
            Ledger::restore(
                welcome,
                loaded.next_seq,
                loaded.journal_offset,
                loaded.accounts,
                loaded.keys,
            )
        }
        None => Ledger::new(welcome),
    };
    let start = ledger.end();
    if start > 0 && !journal_path.exists() {
        return Err(OpenError::Corrupt {
            path: journal_path,
            line: 0,
            reason: format!(
                "the journal is missing but {} refers to its first {start} bytes",
                snapshot_path.display()
            ),
        });
    }
    let mut journal = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&journal_path)
        .map_err(io_error(&journal_path))?;
    let len = journal.metadata().map_err(io_error(&journal_path))?.len();
    if len < start {
        return Err(OpenError::Corrupt {
            path: journal_path.clone(),
            line: 0,
            reason: format!(
                "the journal has {len} bytes but the checkpoint covers {start}: it was truncated"
            ),
        });
    }
    journal
        .seek(SeekFrom::Start(start))
        .map_err(io_error(&journal_path))?;
    let mut reader = BufReader::with_capacity(1 << 20, &mut journal);
    let mut line = Vec::with_capacity(1024);
    let mut offset = start;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error(&journal_path))?;
        if read == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // The tail was being appended when the process died: never acknowledged.
            stats.trimmed_bytes = read as u64;
            break;
        }
        let corrupt = |reason: String| OpenError::Corrupt {
            line: line_number_at(&journal_path, offset),
            path: journal_path.clone(),
            reason,
        };
        let record = RecordIn::parse(&line[..read - 1])
            .map_err(|e| corrupt(format!("not a valid ledger line: {e}")))?;
        ledger.redo(&record, offset, read as u64).map_err(corrupt)?;
        offset += read as u64;
        stats.replayed_lines += 1;
    }
    drop(reader);
    stats.replayed_bytes = offset - start;
    if stats.trimmed_bytes > 0 {
        tracing::warn!(
            "{}: cut off a torn last line of {} bytes at offset {offset} (a write interrupted by a crash; it was never acknowledged)",
            journal_path.display(),
            stats.trimmed_bytes
        );
        journal
            .set_len(offset)
            .and_then(|()| journal.sync_all())
            .map_err(io_error(&journal_path))?;
    }
    let _ = std::fs::remove_file(temporary_snapshot_path(dir));
    Ok(Recovered {
        ledger,
        journal,
        stats,
    })
}

/// Where a checkpoint is written before it is published.
pub fn temporary_snapshot_path(dir: &Path) -> PathBuf {
    dir.join(format!("{SNAPSHOT_FILE}.tmp"))
}

/// The 1-based line number of the line starting at byte `offset` (for error messages only).
fn line_number_at(path: &Path, offset: u64) -> u64 {
    let count = || -> io::Result<u64> {
        let mut reader = BufReader::new(File::open(path)?).take(offset);
        let mut newlines = 0u64;
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(newlines + 1);
            }
            newlines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            let consumed = chunk.len();
            reader.consume(consumed);
        }
    };
    count().unwrap_or(0)
}

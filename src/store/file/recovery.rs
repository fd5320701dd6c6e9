//! Start-up: rebuild the ledger from the last checkpoint plus the journal written after it.
//!
//! A whole line (ending in a newline) that does not read back stops start-up, wherever it is.
//! Otherwise reading stops at the first line cut short or holding zero bytes, which is what an
//! interrupted write leaves behind (space not yet written reads as zeros, and no line holds a
//! zero byte). What follows decides what it is:
//! - only zeros: the space the writer sets aside ahead of its writes; nothing is lost;
//! - no batch that began after that point: a write interrupted by a crash. The writer writes
//!   one batch at a time and flushes it before it acknowledges anything in it or starts the
//!   next, so only the last batch can be incomplete, and no reply was sent for it. It can be
//!   short, or have holes of zeros where pages never reached the disk; its lines before the
//!   first hole are kept (a prefix of the order in which changes were applied) and the rest
//!   is cut off with a warning;
//! - a batch end line naming a batch that began after that point: a batch was written after
//!   the damaged one, so the damage is not an interrupted write.
//!
//! That last case, and anything else that does not read back (a gap in sequence numbers, a
//! batch end out of place, a missing journal), stops start-up with a message naming the
//! file and line: starting with wrong balances is worse than not starting.

use super::ledger::Ledger;
use super::record::{BatchEnd, JournalLine};
use super::snapshot;
use crate::store::OpenError;
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
    /// Transaction lines replayed after the checkpoint (batch ends are not counted).
    pub replayed_lines: u64,
    pub replayed_bytes: u64,
    /// Bytes of an interrupted write that were cut off (up to its last non-zero byte).
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
    // Where the current batch began at the earliest: the end of the previous batch end line.
    // (Unknown after a checkpoint, which may fall inside a batch.)
    let mut batch_floor = 0;
    let stop = loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_error(&journal_path))?;
        if read == 0 {
            break None;
        }
        let corrupt = |reason: String| OpenError::Corrupt {
            line: line_number_at(&journal_path, offset),
            path: journal_path.clone(),
            reason,
        };
        let parsed = match line.strip_suffix(b"\n") {
            Some(body) => JournalLine::parse(body),
            None => Err("the line has no end".to_string()),
        };
        match parsed {
            Ok(JournalLine::Transaction(record)) => {
                ledger.redo(&record, offset, read as u64).map_err(corrupt)?;
                stats.replayed_lines += 1;
            }
            Ok(JournalLine::BatchEnd(end)) => {
                end.check_place(batch_floor, offset).map_err(corrupt)?;
                ledger.skip(read as u64);
                batch_floor = offset + read as u64;
            }
            // What an interrupted write leaves: a line cut short, or zeros where pages did not
            // land (new space reads as zeros, and no line holds a zero byte). A whole line
            // of anything else is damage, wherever it is.
            Err(reason) if line.last() != Some(&b'\n') || line.contains(&0) => break Some(reason),
            Err(reason) => return Err(corrupt(format!("not a valid ledger line: {reason}"))),
        }
        offset += read as u64;
    };
    drop(reader);
    stats.replayed_bytes = offset - start;
    if let Some(reason) = stop {
        match examine_tail(&mut journal, offset).map_err(io_error(&journal_path))? {
            Tail::Zeros => {}
            Tail::Torn { len } => {
                stats.trimmed_bytes = len;
                tracing::warn!(
                    "{}: cut off {len} bytes of an interrupted write at offset {offset} (never acknowledged)",
                    journal_path.display(),
                );
                journal
                    .set_len(offset)
                    .and_then(|()| journal.sync_all())
                    .map_err(io_error(&journal_path))?;
            }
            Tail::LaterBatch { at } => {
                return Err(OpenError::Corrupt {
                    line: line_number_at(&journal_path, offset),
                    path: journal_path,
                    reason: format!(
                        "not a valid ledger line ({reason}), and not an interrupted write: a later batch ends at offset {at}"
                    ),
                });
            }
        }
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

/// What follows the point where the journal stops reading as lines.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// Nothing but zeros.
    Zeros,
    /// An interrupted write, `len` bytes long up to its last non-zero byte.
    Torn { len: u64 },
    /// A batch that began after the damage ends at offset `at`.
    LaterBatch { at: u64 },
}

/// Reads the file from `from` to its end, looking for batch end lines that name a start past
/// `from`. Such a line may follow a hole of zeros without a newline in between, so a zero
/// byte also ends a line here.
fn examine_tail(file: &mut File, from: u64) -> io::Result<Tail> {
    // Longer than any batch end line.
    const LONGEST: usize = 64;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(LONGEST);
    let mut line_start = from;
    let mut too_long = false;
    let mut offset = from;
    let mut last_nonzero = None;
    loop {
        let block = reader.fill_buf()?;
        if block.is_empty() {
            break;
        }
        for (i, &byte) in block.iter().enumerate() {
            let at = offset + i as u64;
            match byte {
                // No line holds a zero byte: a run of them is a hole or the space set aside,
                // and whatever follows it starts afresh.
                0 => {
                    line.clear();
                    too_long = false;
                }
                b'\n' => {
                    last_nonzero = Some(at);
                    let later = BatchEnd::parse(&line).is_some_and(|end| end.batch_start > from);
                    if later && !too_long {
                        return Ok(Tail::LaterBatch { at: line_start });
                    }
                    line.clear();
                    too_long = false;
                }
                _ => {
                    last_nonzero = Some(at);
                    if line.is_empty() && !too_long {
                        line_start = at;
                    }
                    if line.len() < LONGEST {
                        line.push(byte);
                    } else {
                        too_long = true;
                    }
                }
            }
        }
        let consumed = block.len();
        offset += consumed as u64;
        reader.consume(consumed);
    }
    Ok(match last_nonzero {
        None => Tail::Zeros,
        Some(last) => Tail::Torn {
            len: last + 1 - from,
        },
    })
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

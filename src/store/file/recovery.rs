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
//!
//! Each line replayed is checked against the account it replays onto, by the same rules as
//! the audit ([`super::verify`]): its `prev` is the account's latest line, its balances are
//! the running sum of its deltas and never negative, its deltas' signs fit their kinds, a
//! welcome grant opens an account and nothing else does; and an idempotency key it carries
//! is new, or already in the checkpoint with the same request and reply. A line that fails
//! stops start-up, naming the file and line.
//!
//! A checkpoint taken while the daemon ran may already include lines written after its
//! `journal_offset` (see [`super::snapshot`]): an account whose row says its latest line is
//! at or after that offset is *ahead* of it. Its lines up to that one are not new, so
//! they are checked against each other instead, starting from the line their `prev` names
//! (read directly, it is before the checkpoint), and the last of them must leave exactly
//! the balance the row holds. Only then do the account's later lines chain onto the row.

use super::history::read_line_at;
use super::ledger::Ledger;
use super::record::{BatchEnd, JournalLine, RecordIn};
use super::snapshot;
use super::verify::{self, Derived};
use crate::store::OpenError;
use crate::store::rules::Welcome;
use std::collections::{HashMap, HashSet};
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
pub fn recover(dir: &Path, welcome: Welcome) -> Result<Recovered, OpenError> {
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
                loaded.holds,
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
    let mut checks = Checks::new(&ledger);
    let mut reader = BufReader::with_capacity(1 << 20, &journal);
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
                let included = checks
                    .line(&ledger, &journal, &record, offset)
                    .map_err(&corrupt)?;
                ledger
                    .redo(&record, offset, read as u64, included)
                    .map_err(corrupt)?;
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
    checks.finish().map_err(|reason| OpenError::Corrupt {
        path: snapshot_path.clone(),
        line: 1,
        reason,
    })?;
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

/// What start-up checks beyond each line's own rules: accounts ahead of the checkpoint's
/// offset (see the module docs), and keys.
struct Checks {
    /// Where replay starts (the checkpoint's journal offset).
    start: u64,
    /// Accounts whose checkpoint row already includes lines from `start` on: the offset of
    /// the latest line it includes, and the balance it holds. Removed once that line is
    /// replayed.
    ahead: HashMap<Box<str>, (u64, u64)>,
    /// For accounts ahead: what their lines replayed so far add up to.
    catching_up: HashMap<Box<str>, Derived>,
    /// Keys of the lines replayed so far.
    keys: HashSet<Box<str>>,
    /// The line at a `prev` offset read directly.
    buf: Vec<u8>,
}

impl Checks {
    fn new(ledger: &Ledger) -> Checks {
        let start = ledger.end();
        let ahead = (0..ledger.accounts_len())
            .filter_map(|i| ledger.account_at(i))
            .filter(|(_, account)| account.last >= start)
            .map(|(user, account)| (user.into(), (account.last, account.balance)))
            .collect();
        Checks {
            start,
            ahead,
            catching_up: HashMap::new(),
            keys: HashSet::new(),
            buf: Vec::new(),
        }
    }

    /// Checks the transaction `record`, found at `offset`, before it is replayed onto `ledger`.
    /// True when the account's checkpoint row already includes the line.
    fn line(
        &mut self,
        ledger: &Ledger,
        journal: &File,
        record: &RecordIn,
        offset: u64,
    ) -> Result<bool, String> {
        verify::sequence(record, ledger.next_seq())?;
        let user = record.user.as_ref();
        let included = self.ahead.contains_key(user);
        match self.ahead.get(user).copied() {
            None => {
                let before = ledger.account(user).map(|account| Derived {
                    balance: account.balance,
                    last: account.last,
                });
                verify::transaction(record, offset, before)?;
            }
            Some((included, _)) if offset > included => {
                return Err(format!(
                    "user {user:?}'s checkpoint row says its latest line is at offset {included}, but no line of theirs starts there"
                ));
            }
            Some((included, balance)) => {
                let before = match self.catching_up.get(user) {
                    Some(derived) => Some(*derived),
                    None => self.line_before(journal, record)?,
                };
                let after = verify::transaction(record, offset, before)?;
                if offset < included {
                    self.catching_up.insert(user.into(), after);
                } else {
                    if after.balance != balance {
                        return Err(format!(
                            "seq {}: user {user:?}'s balance is {} after this line, but the checkpoint, which includes it, says {balance}",
                            record.seq, after.balance
                        ));
                    }
                    self.catching_up.remove(user);
                    self.ahead.remove(user);
                }
            }
        }
        if let (Some(key), Some(fp), Some(reply)) = (&record.key, &record.fp, record.reply) {
            if !self.keys.insert(key.as_ref().into()) {
                return Err(format!(
                    "seq {}: idempotency key {key:?} occurs more than once",
                    record.seq
                ));
            }
            // Only a checkpoint that includes this very line can know its key already.
            if let Some(known) = ledger.key(key)
                && (*known.fingerprint != **fp || known.reply.as_str() != reply.get())
            {
                return Err(format!(
                    "seq {}: idempotency key {key:?} is in the checkpoint for another request or reply",
                    record.seq
                ));
            }
        }
        Ok(included)
    }

    /// The account as it was before the first line replayed of an account ahead: what the
    /// line its `prev` names says (that line is before the checkpoint, so it is read directly).
    fn line_before(
        &mut self,
        journal: &File,
        record: &RecordIn,
    ) -> Result<Option<Derived>, String> {
        let Some(prev) = record.prev else {
            return Ok(None);
        };
        let user = record.user.as_ref();
        let broken = |why: String| {
            format!(
                "seq {}: user {user:?}'s previous line at {prev}: {why}",
                record.seq
            )
        };
        if prev >= self.start {
            return Err(broken("none of their lines was replayed there".into()));
        }
        read_line_at(journal, prev, &mut self.buf).map_err(|e| broken(e.to_string()))?;
        let previous = RecordIn::parse(&self.buf).map_err(&broken)?;
        if previous.user != user {
            return Err(broken(format!("a line of user {:?}", previous.user)));
        }
        Ok(Some(Derived {
            balance: previous.final_balance(),
            last: prev,
        }))
    }

    /// Checks, once every line is replayed, that each account ahead met the line its
    /// checkpoint row includes last.
    fn finish(self) -> Result<(), String> {
        match self.ahead.into_iter().next() {
            None => Ok(()),
            Some((user, (included, _))) => Err(format!(
                "user {user:?}'s row says its latest line is at journal offset {included}, after the {} bytes the checkpoint covers, but the journal has no line of theirs there",
                self.start
            )),
        }
    }
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

//! A user's history, read from the journal by following the `prev` chain of their lines
//! backwards from the newest one. Needs no index in memory beyond each account's latest
//! offset, and reads only that user's lines however long the journal is. An account at a
//! past instant is read the same way, every line of the user's, and replayed by the rules.

use super::record::{JournalLine, RecordIn, RecordedEntry};
use crate::domain::{
    EntryKind, HistoryCursor, HistoryEntry, HistoryPage, Lot, LotTake, Tier, format_instant,
};
use crate::store::rules;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Reads the line starting at `offset` into `buf` (without its newline).
pub fn read_line_at(file: &File, offset: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let read = file.read_at(&mut chunk, offset + buf.len() as u64)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("no complete line at offset {offset}"),
            ));
        }
        if let Some(end) = chunk[..read].iter().position(|b| *b == b'\n') {
            buf.extend_from_slice(&chunk[..end]);
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// The line of `user`'s at `offset`, read into `buf`, checked to be theirs and to point
/// backwards; what is wrong with it otherwise.
fn read_users_line<'b>(
    file: &File,
    user: &str,
    offset: u64,
    buf: &'b mut Vec<u8>,
) -> Result<RecordIn<'b>, String> {
    read_line_at(file, offset, buf).map_err(|e| e.to_string())?;
    let record = RecordIn::parse(buf)?;
    if record.user != user {
        return Err(format!(
            "expected a line of {user:?}, found one of {:?}",
            record.user
        ));
    }
    if record.prev.is_some_and(|prev| prev >= offset) {
        return Err("prev does not point backwards".into());
    }
    Ok(record)
}

/// Where a history page continues: the journal line to read next and the sequence number
/// the page stops before. Clients see it as the opaque cursor `"<offset>:<seq>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub before_seq: u64,
}

impl Position {
    /// Reads a cursor back; `None` if it is not one this store made.
    pub fn parse(cursor: &HistoryCursor) -> Option<Position> {
        let (offset, seq) = cursor.as_str().split_once(':')?;
        Some(Position {
            offset: offset.parse().ok()?,
            before_seq: seq.parse().ok()?,
        })
    }

    pub fn cursor(self) -> HistoryCursor {
        HistoryCursor::new(format!("{}:{}", self.offset, self.before_seq))
    }
}

/// Why a history could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// The line to start from is not one of the user's (a forged or stale cursor).
    NotTheUsersLine(u64),
    /// The chain is broken further back: the journal is damaged.
    Corrupt(String),
}

/// The newest `limit` entries of `user` from the line at `from` backwards (only those
/// before `before_seq`, if given), oldest first.
pub fn read_history(
    file: &File,
    user: &str,
    from: u64,
    before_seq: Option<u64>,
    limit: usize,
) -> Result<HistoryPage, HistoryError> {
    let mut newest_first = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let mut offset = Some(from);
    let mut next = None;
    while let Some(at) = offset {
        let corrupt = |what: String| match at == from {
            true => HistoryError::NotTheUsersLine(at),
            false => HistoryError::Corrupt(format!("journal offset {at}: {what}")),
        };
        let record = read_users_line(file, user, at, &mut buf).map_err(corrupt)?;
        let time = format_instant(record.time);
        for (i, entry) in record.entries.iter().enumerate().rev() {
            let seq = record.seq + i as u64;
            if before_seq.is_some_and(|before| seq >= before) {
                continue;
            }
            if newest_first.len() == limit {
                // Full, and this entry is older: the next page starts here.
                next = Some(Position {
                    offset: at,
                    before_seq: seq + 1,
                });
                break;
            }
            // Keys, reasons and memes belong to the request's own entry (the last one),
            // not to a welcome grant written in the same line.
            let own = i + 1 == record.entries.len();
            newest_first.push(HistoryEntry {
                seq,
                time: entry.dated().map_or_else(|| time.clone(), format_instant),
                kind: entry.kind,
                delta: entry.delta,
                balance: entry.balance,
                key: record
                    .key
                    .as_deref()
                    .filter(|_| own)
                    .map(|key| rules::sent_key(key).to_string()),
                reason: record.reason.as_deref().filter(|_| own).map(str::to_string),
                memes: match own {
                    true => record.memes.iter().map(|m| m.to_string()).collect(),
                    false => Vec::new(),
                },
                tier: record.tier.filter(|_| own),
                until: record.until.filter(|_| own).map(format_instant),
                lot: entry.lot.map(|_| seq),
                from: entry.from.clone(),
                hold: entry.hold,
                reverses: entry.reverses,
                refunded: entry.refunded,
            });
        }
        if next.is_some() {
            break;
        }
        offset = record.prev;
        if newest_first.len() == limit
            && let (Some(prev), Some(oldest)) = (offset, newest_first.last())
        {
            // Full exactly at a line boundary: older lines remain.
            next = Some(Position {
                offset: prev,
                before_seq: oldest.seq,
            });
            break;
        }
    }
    newest_first.reverse();
    Ok(HistoryPage {
        entries: newest_first,
        next: next.map(Position::cursor),
        // A file store has no standby: every page it reads is current.
        stale: None,
    })
}

/// `user`'s account as it was at `t` ([`rules::account_at`]), from every line of theirs, the
/// chain followed back from the line at `from` (their newest). `None`: no entry by `t`.
pub fn read_account_at(
    file: &File,
    user: &str,
    from: u64,
    t: i64,
) -> Result<Option<rules::Past>, HistoryError> {
    struct Line {
        seq: u64,
        time: i64,
        entries: Vec<RecordedEntry>,
        entitled: Option<(Tier, Option<i64>)>,
    }
    let mut newest_first = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let mut offset = Some(from);
    while let Some(at) = offset {
        let record = read_users_line(file, user, at, &mut buf)
            .map_err(|what| HistoryError::Corrupt(format!("journal offset {at}: {what}")))?;
        newest_first.push(Line {
            seq: record.seq,
            time: record.time,
            entitled: record.tier.map(|tier| (tier, record.until)),
            entries: record.entries,
        });
        offset = record.prev;
    }
    let steps = newest_first.iter().rev().flat_map(|line| {
        let own = line.entries.len().saturating_sub(1);
        line.entries
            .iter()
            .enumerate()
            .map(move |(i, entry)| rules::Step {
                seq: line.seq + i as u64,
                time: line.time,
                entry: entry.entry(),
                recorded: entry.recorded(),
                // A tier belongs to the line's own entry, not to a welcome grant before it.
                entitled: line
                    .entitled
                    .filter(|_| i == own && entry.kind == EntryKind::Entitle),
            })
    });
    rules::account_at(steps, t).map_err(HistoryError::Corrupt)
}

/// The user whose line holds entry `seq`, found in the journal's first `end` bytes (complete
/// lines, numbered in order) by bisection: `None` if no line holds it.
pub fn user_of_entry(file: &File, end: u64, seq: u64) -> Result<Option<String>, HistoryError> {
    let corrupt =
        |at: u64| move |what: String| HistoryError::Corrupt(format!("journal offset {at}: {what}"));
    let mut buf = Vec::with_capacity(1024);
    // The line holding `seq`, if any, starts in lo..hi.
    let (mut lo, mut hi) = (0u64, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some(mut at) =
            line_start_from(file, mid, hi).map_err(|e| corrupt(mid)(e.to_string()))?
        else {
            hi = mid;
            continue;
        };
        // The first transaction line from `at` on (batch end lines hold no entries).
        let record = loop {
            if at >= hi {
                break None;
            }
            read_line_at(file, at, &mut buf).map_err(|e| corrupt(at)(e.to_string()))?;
            let len = buf.len() as u64 + 1;
            match JournalLine::parse(&buf).map_err(corrupt(at))? {
                JournalLine::BatchEnd(_) => at += len,
                JournalLine::Transaction(record) => {
                    break Some((record.seq, record.next_seq(), record.user.into_owned(), len));
                }
            }
        };
        match record {
            None => hi = mid,
            // Between `mid` and `at` only batch ends start: the line holding `seq` is earlier.
            Some((first, _, _, _)) if seq < first => hi = mid,
            Some((_, next, user, _)) if seq < next => return Ok(Some(user)),
            Some((_, _, _, len)) => lo = at + len,
        }
    }
    Ok(None)
}

/// The offset of the first line that starts at or after `from` and before `end`, if any.
fn line_start_from(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    if from == 0 {
        return Ok((end > 0).then_some(0));
    }
    let mut chunk = [0u8; 1024];
    let mut at = from - 1;
    while at < end {
        let read = file.read_at(&mut chunk, at)?;
        if read == 0 {
            return Ok(None);
        }
        if let Some(newline) = chunk[..read].iter().position(|b| *b == b'\n') {
            let start = at + newline as u64 + 1;
            return Ok((start < end).then_some(start));
        }
        at += read as u64;
    }
    Ok(None)
}

/// Entry `seq` of `user`, as a refund reverses it ([`rules::Reversed`]), read from their
/// lines, the chain followed back from the line at `from` (their newest): what it took from
/// which lots, each lot as it was (from `held`, the account's lots now, or else from the
/// entry that opened it), and what the refunds after it gave back of it. A capture's parts
/// are its hold's, which the caller keeps: they are left empty here, and the hold named.
/// `None` when no line of theirs holds it.
pub fn read_reversed(
    file: &File,
    user: &str,
    from: u64,
    seq: u64,
    held: &[Lot],
) -> Result<Option<(rules::Reversed, Option<u64>)>, HistoryError> {
    let mut buf = Vec::with_capacity(1024);
    let mut offset = Some(from);
    let mut refunded = 0u64;
    // The entry's kind, what it spent, the lots it took from, its hold.
    let mut found: Option<(EntryKind, u64, Vec<LotTake>, Option<u64>)> = None;
    let mut was: Vec<Lot> = Vec::new();
    while let Some(at) = offset {
        let record = read_users_line(file, user, at, &mut buf)
            .map_err(|what| HistoryError::Corrupt(format!("journal offset {at}: {what}")))?;
        for (i, entry) in record.entries.iter().enumerate().rev() {
            let here = record.seq + i as u64;
            match &found {
                None if here > seq => {
                    if entry.kind == EntryKind::Refund && entry.reverses == Some(seq) {
                        refunded += entry.refunded.unwrap_or(0);
                    }
                }
                None if here == seq && entry.kind == EntryKind::Capture => {
                    let spent = entry.captured.unwrap_or(0);
                    found = Some((entry.kind, spent, Vec::new(), entry.hold));
                }
                None if here == seq => {
                    let takes = match entry.kind {
                        EntryKind::Charge => entry.from.clone(),
                        _ => Vec::new(),
                    };
                    let spent = entry.delta.min(0).unsigned_abs();
                    found = Some((entry.kind, spent, takes, None));
                    for take in &entry.from {
                        if let Some(lot) = held.iter().find(|lot| lot.id == take.lot) {
                            was.push(*lot);
                        }
                    }
                }
                None => return Ok(None),
                Some((_, _, takes, _)) => {
                    let wanted = |id: u64| {
                        takes.iter().any(|t| t.lot == id) && !was.iter().any(|l| l.id == id)
                    };
                    if let Some(terms) = entry.lot
                        && wanted(here)
                    {
                        let terms = terms.terms();
                        was.push(Lot {
                            id: here,
                            amount: entry.delta.unsigned_abs(),
                            remaining: 0,
                            effective_at: record.time,
                            expires_at: terms.expires_at,
                            priority: terms.priority,
                            kind: terms.kind,
                        });
                    } else if !entry.names_lots() && entry.delta != 0 && wanted(0) {
                        // The newest entry before lots: lot 0 is its balance (carried over).
                        was.extend(rules::carried_over(entry.balance));
                    }
                }
            }
        }
        if let Some((_, _, takes, _)) = &found
            && takes
                .iter()
                .all(|take| was.iter().any(|lot| lot.id == take.lot))
        {
            break;
        }
        offset = record.prev;
    }
    let Some((kind, spent, takes, hold)) = found else {
        return Ok(None);
    };
    let parts = rules::parts_of(&was, &takes);
    if parts.len() != takes.len() {
        return Err(HistoryError::Corrupt(format!(
            "entry {seq} of user {user:?} takes from lots {takes:?}, not all of which its account's lines open"
        )));
    }
    let reversed = rules::Reversed {
        seq,
        user: user.to_string(),
        kind,
        spent,
        parts,
        refunded,
    };
    Ok(Some((reversed, hold)))
}

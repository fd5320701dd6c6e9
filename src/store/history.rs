//! A user's history, read from the journal by following the `prev` chain of their lines
//! backwards from the newest one. Needs no index in memory beyond each account's latest
//! offset, and reads only that user's lines however long the journal is.

use super::record::RecordIn;
use crate::protocol::{HistoryEntry, format_instant};
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

/// The entries of `user`, whose newest line starts at `last`, oldest first; with `limit`,
/// only the newest `limit` entries.
pub fn read_history(
    file: &File,
    user: &str,
    last: u64,
    limit: Option<u64>,
) -> Result<Vec<HistoryEntry>, String> {
    let limit = limit.unwrap_or(u64::MAX) as usize;
    let mut newest_first = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let mut offset = Some(last);
    while let Some(at) = offset {
        if newest_first.len() >= limit {
            break;
        }
        read_line_at(file, at, &mut buf).map_err(|e| format!("journal offset {at}: {e}"))?;
        let record = RecordIn::parse(&buf).map_err(|e| format!("journal offset {at}: {e}"))?;
        if record.user != user {
            return Err(format!(
                "journal offset {at}: expected a line of {user:?}, found one of {:?}",
                record.user
            ));
        }
        if record.prev.is_some_and(|prev| prev >= at) {
            return Err(format!(
                "journal offset {at}: prev does not point backwards"
            ));
        }
        let time = format_instant(record.time);
        for (i, entry) in record.entries.iter().enumerate().rev() {
            if newest_first.len() >= limit {
                break;
            }
            // Keys, reasons and memes belong to the request's own entry (the last one),
            // not to a welcome grant written in the same line.
            let own = i + 1 == record.entries.len();
            newest_first.push(HistoryEntry {
                seq: record.seq + i as u64,
                time: time.clone(),
                kind: entry.kind,
                delta: entry.delta,
                balance: entry.balance,
                key: record.key.as_deref().filter(|_| own).map(str::to_string),
                reason: record.reason.as_deref().filter(|_| own).map(str::to_string),
                memes: match own {
                    true => record.memes.iter().map(|m| m.to_string()).collect(),
                    false => Vec::new(),
                },
                tier: record.tier.filter(|_| own),
                until: record.until.filter(|_| own).map(format_instant),
            });
        }
        offset = record.prev;
    }
    newest_first.reverse();
    Ok(newest_first)
}

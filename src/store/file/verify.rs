//! The rules a journal line must satisfy against the account it applies to, written once for
//! the two readers that judge lines: the audit (every line, from the first byte) and start-up
//! (the lines after the checkpoint, see [`super::recovery`]).
//!
//! Per transaction line: its sequence number continues the previous line's; its `prev` is the
//! offset of the account's latest line (none for an account it opens); every entry obeys the
//! rules of the money as [`rules::check_entry`] states them (balance = before + delta,
//! never below zero, the sign of the delta fits its kind, the welcome grant first and
//! once). Which accounts and keys exist is the caller's to track; this module only judges
//! one line at a time and changes nothing.

use super::record::RecordIn;
use crate::store::rules;

/// An account as the journal says it is after one of its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    /// Tokens after the line.
    pub balance: u64,
    /// Offset of the line (the account's latest).
    pub last: u64,
}

/// Checks that `record` continues the sequence numbers where the previous line left them.
pub fn sequence(record: &RecordIn, next_seq: u64) -> Result<(), String> {
    match record.seq == next_seq {
        true => Ok(()),
        false => Err(format!(
            "sequence gap: expected seq {next_seq}, found {}",
            record.seq
        )),
    }
}

/// Checks the transaction `record`, found at journal offset `offset`, against its account as
/// it was before (`None`: the line must open it). Returns the account after the line.
pub fn transaction(
    record: &RecordIn,
    offset: u64,
    before: Option<Derived>,
) -> Result<Derived, String> {
    let user = record.user.as_ref();
    let expected_prev = before.map(|d| d.last);
    if record.prev != expected_prev {
        return Err(format!(
            "seq {}: user {user:?}'s previous line is at {expected_prev:?} but this line says {:?}",
            record.seq, record.prev
        ));
    }
    let mut balance = before.map(|d| d.balance);
    for (i, entry) in record.entries.iter().enumerate() {
        let seq = record.seq + i as u64;
        let after = rules::check_entry(balance, &entry.entry())
            .map_err(|fault| format!("seq {seq}: user {user:?}: {fault}"))?;
        balance = Some(after);
    }
    Ok(Derived {
        balance: balance.unwrap_or(0),
        last: offset,
    })
}

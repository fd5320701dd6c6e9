//! The rules a journal line must satisfy against the account it applies to, written once for
//! the two readers that judge lines: the audit (every line, from the first byte) and start-up
//! (the lines after the checkpoint, see [`super::recovery`]).
//!
//! Per transaction line: its sequence number continues the previous line's; its `prev` is the
//! offset of the account's latest line (none for an account it opens); every entry's balance
//! equals the balance before it plus its delta and is never below zero; the sign of each
//! delta fits its kind; the welcome grant is the first entry of an account and appears
//! nowhere else. Which accounts and keys exist is the caller's to track; this module only
//! judges one line at a time and changes nothing.

use super::record::RecordIn;
use crate::domain::EntryKind;

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
        let before = match (entry.kind, balance) {
            (EntryKind::Welcome, None) => 0,
            (EntryKind::Welcome, Some(_)) => {
                return Err(format!(
                    "seq {seq}: a second welcome grant for user {user:?}"
                ));
            }
            (_, None) => {
                return Err(format!(
                    "seq {seq}: user {user:?}'s first entry is not the welcome grant"
                ));
            }
            (_, Some(before)) => before,
        };
        let sign_fits = match entry.kind {
            EntryKind::Welcome | EntryKind::Topup => entry.delta >= 0,
            EntryKind::Charge => entry.delta <= 0,
            EntryKind::Deduct => entry.delta < 0,
            EntryKind::Entitle => entry.delta == 0,
        };
        if !sign_fits {
            return Err(format!(
                "seq {seq}: a {} entry with delta {}",
                entry.kind.as_str(),
                entry.delta
            ));
        }
        let after = before.checked_add_signed(entry.delta).ok_or_else(|| {
            format!(
                "seq {seq}: user {user:?}'s balance went below zero ({before} {:+})",
                entry.delta
            )
        })?;
        if after != entry.balance {
            return Err(format!(
                "seq {seq}: user {user:?}'s balance is recorded as {} but {before} {:+} = {after}",
                entry.balance, entry.delta
            ));
        }
        balance = Some(after);
    }
    Ok(Derived {
        balance: balance.unwrap_or(0),
        last: offset,
    })
}

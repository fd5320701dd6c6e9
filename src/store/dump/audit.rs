//! `memes audit --export FILE`: a dump checked offline, without a daemon or a store, by the
//! rules that made it: the chain of line hashes and the stream's shape ([`Reader`]), then,
//! line by line, every entry against its account's running balance
//! ([`rules::check_entry`]: the welcome grant first and once, signs, never below zero, the
//! balance after it) and its account's lots ([`rules::replay_lots`], [`rules::check_lots`]:
//! credits open lots, debits take from them in burn order, expiries at `expires_at`; a hold
//! takes as a debit does and ends once, giving back what its parts say; a refund reverses a
//! charge of its account, never more than is left of it: [`rules::Refundable`]), and every
//! idempotency key once, on an entry it fits ([`rules::key_fits_entry`]).
//!
//! The first problem stops it, named with its line number (1 is the header): an edited,
//! removed, added or moved line is reported at that line, by the chain or by a sum.

use super::{Counts, Reader};
use crate::domain::{Hold, Lot};
use crate::store::rules;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;

/// What a sound dump holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audited {
    /// The stream's version (chained from 3 on: older ones are checked but their sums).
    pub version: u32,
    pub counts: Counts,
}

/// Checks a whole dump; what it holds, or the first problem (`line N: …`).
pub fn audit<R: BufRead>(input: R) -> Result<Audited, String> {
    let mut reader = Reader::open(input)?;
    // Per account: its balance, its lots and its open holds.
    let mut accounts: HashMap<String, (u64, Vec<Lot>, Vec<Hold>)> = HashMap::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut refundable = rules::Refundable::default();
    while let Some((line, transaction)) = reader.read_numbered()? {
        let user = transaction.user.as_ref();
        let at = |fault: String| {
            format!(
                "line {line}: seq {}: user {user:?}: {fault}",
                transaction.seq
            )
        };
        let mut account = accounts.remove(user);
        for (i, entry) in transaction.entries.iter().enumerate() {
            let seq = transaction.seq + i as u64;
            let here = |fault: String| format!("line {line}: seq {seq}: user {user:?}: {fault}");
            let before = account.as_ref().map(|(balance, _, _)| *balance);
            let balance = rules::check_entry(before, &entry.entry()).map_err(here)?;
            let (held, lots, holds) = account.get_or_insert_with(|| (0, Vec::new(), Vec::new()));
            rules::replay_lots(
                lots,
                holds,
                &entry.entry(),
                entry.recorded(),
                seq,
                transaction.time,
            )
            .map_err(here)?;
            refundable
                .note(user, seq, &entry.entry(), entry.recorded())
                .map_err(here)?;
            *held = balance;
        }
        let (balance, lots, holds) = account.expect("a transaction has entries");
        rules::check_lots(&lots, balance).map_err(at)?;
        if let Some(key) = transaction.key.as_deref() {
            if !keys.insert(key.to_string()) {
                return Err(at(format!(
                    "idempotency key {:?} is used a second time",
                    rules::sent_key(key)
                )));
            }
            let own = transaction.entries.last().expect("entries").kind;
            rules::key_fits_entry(key, user, own).map_err(at)?;
        }
        accounts.insert(user.to_string(), (balance, lots, holds));
    }
    Ok(Audited {
        version: reader.version(),
        counts: reader.counts(),
    })
}

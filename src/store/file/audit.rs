//! The audit: replay the whole journal from its first byte and check the ledger's
//! invariants, independently of the checkpoint and of the daemon's memory.
//!
//! Checked per line: it parses; it passes [`super::verify`] against its account as the lines
//! before it left it (sequence numbers without gaps, each user's chain of `prev` offsets,
//! every balance the running sum of its entries and never below zero, the sign of each
//! delta, the welcome grant first and once); every idempotency key occurs once and fits its
//! entry (a user's key on their own charge, the admins' and the webhook's on a top-up); every batch
//! end names a start inside its own batch; every entry's lots follow from the account's by
//! [`rules::replay_lots`] (a credit opens one, a debit takes from them in burn order, an
//! expiry takes a lot's remainder at its `expires_at`, nothing is spent from an expired lot)
//! and add up to its balance, none negative; every refund reverses a charge of its own
//! account, never more than is left of it, giving back what the rules would
//! ([`rules::Refundable`]). Then [`compare_with_memory`] compares what the
//! journal derives with what the daemon holds: every account's balance, lots (which must add
//! up to it), latest line and tier, and every idempotency key with its fingerprint and stored reply (missing, extra or
//! altered). The daemon's state comes from a checkpoint plus the journal after it, so this
//! is where an edited checkpoint is caught in full (start-up checks only its digest, see
//! [`super::snapshot`]).

use super::CHUNK;
use super::journal::Shared;
use super::ledger::Ledger;
use super::record::{JournalLine, RecordIn};
use super::verify::{self, Derived};
use crate::domain::{AuditReport, EntryKind, Hold, Lot, Tier};
use crate::store::rules;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Key rows compared per lock acquisition: each costs a SHA-256.
const KEY_CHUNK: usize = 512;

/// What an idempotency key remembers (its fingerprint and stored reply), digested.
pub type KeyPrint = [u8; 32];

/// The print of a key's fingerprint and reply.
pub fn key_print(fingerprint: &str, reply: &str) -> KeyPrint {
    let mut digest = Sha256::new();
    digest.update((fingerprint.len() as u64).to_le_bytes());
    digest.update(fingerprint);
    digest.update(reply);
    digest.finalize().into()
}

/// The result of replaying the journal.
pub struct JournalScan {
    pub report: AuditReport,
    pub accounts: HashMap<Box<str>, Derived>,
    /// The tier and its end of every account ever entitled (the others are free).
    pub tiers: HashMap<Box<str>, (Tier, Option<i64>)>,
    /// Every idempotency key, with the print of what it remembers.
    pub keys: HashMap<Box<str>, KeyPrint>,
    /// Every account's lots, in burn order.
    pub lots: HashMap<Box<str>, Vec<Lot>>,
    /// Every account's open holds, in the order they were made.
    pub open: HashMap<Box<str>, Vec<Hold>>,
    /// Every hold, as its entries left it.
    pub holds: HashMap<u64, Hold>,
}

/// Replays the journal at `path` up to byte `upto` (a line boundary known to be durable).
/// Stops at the first discrepancy, which the report names.
pub fn scan(path: &Path, upto: u64) -> io::Result<JournalScan> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?.take(upto));
    let mut replay = Replay {
        report: AuditReport {
            store: Some("file".to_string()),
            ..AuditReport::default()
        },
        accounts: HashMap::new(),
        tiers: HashMap::new(),
        keys: HashMap::new(),
        lots: HashMap::new(),
        open: HashMap::new(),
        holds: HashMap::new(),
        refundable: rules::Refundable::default(),
        next_seq: 1,
        batch_floor: 0,
    };
    let mut offset = 0u64;
    let mut line = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        if let Err(problem) = replay.check_line(&line, offset) {
            replay.report.discrepancy =
                Some(format!("{}, line {line_no}: {problem}", path.display()));
            break;
        }
        offset += read as u64;
    }
    let Replay {
        mut report,
        accounts,
        tiers,
        keys,
        mut lots,
        open,
        holds,
        ..
    } = replay;
    for held in lots.values_mut() {
        held.sort_by(rules::burn_order);
    }
    report.accounts = accounts.len() as u64;
    report.ok = report.discrepancy.is_none();
    Ok(JournalScan {
        report,
        accounts,
        tiers,
        keys,
        lots,
        open,
        holds,
    })
}

/// What the lines read so far add up to.
struct Replay {
    report: AuditReport,
    accounts: HashMap<Box<str>, Derived>,
    tiers: HashMap<Box<str>, (Tier, Option<i64>)>,
    keys: HashMap<Box<str>, KeyPrint>,
    lots: HashMap<Box<str>, Vec<Lot>>,
    open: HashMap<Box<str>, Vec<Hold>>,
    holds: HashMap<u64, Hold>,
    /// Every charge, to check the refunds that reverse it.
    refundable: rules::Refundable,
    next_seq: u64,
    /// The end of the last batch end line: where the current batch began at the earliest.
    batch_floor: u64,
}

impl Replay {
    fn check_line(&mut self, line: &[u8], offset: u64) -> Result<(), String> {
        let Some(body) = line.strip_suffix(b"\n") else {
            return Err("the last line is incomplete".into());
        };
        match JournalLine::parse(body).map_err(|e| format!("not a valid ledger line: {e}"))? {
            JournalLine::Transaction(record) => self.check_transaction(&record, offset),
            JournalLine::BatchEnd(end) => {
                end.check_place(self.batch_floor, offset)?;
                self.batch_floor = offset + line.len() as u64;
                Ok(())
            }
        }
    }

    fn check_transaction(&mut self, record: &RecordIn, offset: u64) -> Result<(), String> {
        let Replay {
            report,
            accounts,
            tiers,
            keys,
            lots,
            open,
            holds,
            refundable,
            next_seq,
            ..
        } = self;
        verify::sequence(record, *next_seq)?;
        let user = record.user.as_ref();
        let before = accounts.get(user).copied();
        let derived = verify::transaction(record, offset, before)?;
        let held = lots.entry(user.into()).or_default();
        let open = open.entry(user.into()).or_default();
        for (i, entry) in record.entries.iter().enumerate() {
            let seq = record.seq + i as u64;
            let recorded = entry.recorded();
            // The file store numbers a hold by the entry that made it.
            if entry.kind == EntryKind::Hold && recorded.hold != Some(seq) {
                return Err(format!(
                    "seq {seq}: user {user:?}: a hold entry names hold {:?}, not its own seq",
                    recorded.hold
                ));
            }
            let changed =
                rules::replay_lots(held, open, &entry.entry(), recorded, seq, record.time)
                    .map_err(|fault| format!("seq {seq}: user {user:?}: {fault}"))?;
            if let Some(hold) = changed {
                holds.insert(hold.id, hold);
            }
            refundable
                .note(user, seq, &entry.entry(), recorded)
                .map_err(|fault| format!("seq {seq}: user {user:?}: {fault}"))?;
        }
        report.welcomes += u64::from(before.is_none());
        report.entries += record.entries.len() as u64;
        if let (Some(key), Some(fp), Some(reply)) = (&record.key, &record.fp, record.reply) {
            if let Some(own) = record.entries.last() {
                rules::key_fits_entry(key, user, own.kind)
                    .map_err(|problem| format!("seq {}: {problem}", record.seq))?;
            }
            match keys.entry(key.as_ref().into()) {
                Entry::Occupied(_) => {
                    return Err(format!(
                        "seq {}: idempotency key {key:?} occurs more than once",
                        record.seq
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(key_print(fp, reply.get()));
                }
            }
            report.keys += 1;
        }
        if let Some(tier) = record.tier {
            tiers.insert(user.into(), (tier, record.until));
        }
        match accounts.get_mut(user) {
            Some(slot) => *slot = derived,
            None => {
                accounts.insert(user.into(), derived);
            }
        }
        *next_seq = record.next_seq();
        report.transactions += 1;
        Ok(())
    }
}

/// Compares what the journal derives, up to byte `upto`, with what the daemon holds; the
/// first difference found, if any.
pub(crate) fn compare_with_memory(
    shared: &Shared,
    scan: &JournalScan,
    upto: u64,
) -> Option<String> {
    compare_accounts(shared, scan, upto).or_else(|| compare_keys(shared, scan))
}

fn compare_accounts(shared: &Shared, scan: &JournalScan, upto: u64) -> Option<String> {
    for (state, rows) in shared.chunks(CHUNK, Ledger::accounts_len) {
        for i in rows {
            let (user, account) = state.ledger.account_at(i).expect("index in range");
            if account.last >= upto {
                continue; // changed after the audited prefix
            }
            let Some(derived) = scan.accounts.get(user) else {
                return Some(format!(
                    "user {user:?}: the daemon holds an account that the ledger never opened"
                ));
            };
            if derived.balance != account.balance || derived.last != account.last {
                return Some(format!(
                    "user {user:?}: the daemon holds a balance of {} but the ledger sums to {}",
                    account.balance, derived.balance
                ));
            }
            let held = account.lots();
            if let Err(problem) = rules::check_lots(&held, account.balance) {
                return Some(format!(
                    "user {user:?}: the daemon holds lots that do not fit: {problem}"
                ));
            }
            let derived_lots = scan.lots.get(user).map_or(&[][..], Vec::as_slice);
            if held != derived_lots {
                return Some(format!(
                    "user {user:?}: the daemon holds the lots {held:?} but the ledger derives {derived_lots:?}"
                ));
            }
            let derived_open = scan.open.get(user).map_or(&[][..], Vec::as_slice);
            if !account
                .holds
                .iter()
                .eq(derived_open.iter().map(|hold| &hold.id))
            {
                return Some(format!(
                    "user {user:?}: the daemon holds the open holds {:?} but the ledger derives {:?}",
                    account.holds,
                    derived_open.iter().map(|hold| hold.id).collect::<Vec<_>>()
                ));
            }
            let (tier, until) = scan.tiers.get(user).copied().unwrap_or((Tier::Free, None));
            if (account.tier, account.until) != (tier, until) {
                return Some(format!(
                    "user {user:?}: the daemon holds tier {} until {:?} but the ledger says {} until {until:?}",
                    account.tier.as_str(),
                    account.until,
                    tier.as_str()
                ));
            }
        }
    }
    let state = shared.lock();
    for hold in scan.holds.values() {
        let kept = state.ledger.holds().get(&hold.id);
        let changed_since = kept
            .and_then(|(owner, _)| state.ledger.account(owner))
            .is_some_and(|account| account.last >= upto);
        match kept {
            _ if changed_since => {}
            Some((_, held)) if held == hold => {}
            _ => {
                return Some(format!(
                    "hold {}: the daemon holds {:?} but the ledger derives {hold:?}",
                    hold.id,
                    kept.map(|(_, held)| held)
                ));
            }
        }
    }
    scan.accounts
        .keys()
        .find(|user| state.ledger.account(user).is_none())
        .map(|user| format!("user {user:?}: the ledger opened an account the daemon does not hold"))
}

/// Keys are held in the order they were first used, which is the journal's order, so the
/// first `n` the daemon holds must be exactly the `n` the journal recorded up to the audited
/// point; any after them were used since.
fn compare_keys(shared: &Shared, scan: &JournalScan) -> Option<String> {
    let recorded = scan.keys.len();
    let mut matched = 0;
    let mut extra = None;
    'rows: for (state, rows) in shared.chunks(KEY_CHUNK, Ledger::keys_len) {
        for i in rows {
            if i >= recorded {
                break 'rows;
            }
            let (key, entry) = state.ledger.key_at(i).expect("index in range");
            match scan.keys.get(key) {
                Some(print) if *print == key_print(&entry.fingerprint, entry.reply.as_str()) => {
                    matched += 1;
                }
                Some(_) => {
                    return Some(format!(
                        "idempotency key {key:?}: the daemon holds another request or reply for it than the ledger recorded"
                    ));
                }
                None => {
                    extra.get_or_insert_with(|| key.to_string());
                }
            }
        }
    }
    if matched == recorded {
        return None;
    }
    let recorded_keys: Vec<&str> = scan.keys.keys().map(|key| &**key).collect();
    for chunk in recorded_keys.chunks(CHUNK) {
        let state = shared.lock();
        if let Some(missing) = chunk.iter().find(|key| state.ledger.key(key).is_none()) {
            return Some(format!(
                "idempotency key {missing:?}: the ledger recorded it but the daemon does not hold it (a retry would be applied again)"
            ));
        }
    }
    Some(match extra {
        Some(key) => {
            format!("idempotency key {key:?}: the daemon holds it but the ledger never recorded it")
        }
        None => {
            "the daemon holds the idempotency keys the ledger recorded in another order".to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Outcome;
    use crate::store::file::ledger::Ledger;

    fn journal_with(ops: &[(&str, i64)]) -> Vec<u8> {
        let mut ledger = Ledger::new(crate::store::rules::Welcome {
            tokens: 150,
            expires_in: None,
        });
        let (mut out, mut undo) = (Vec::new(), Vec::new());
        for (user, amount) in ops {
            let outcome = if *amount < 0 {
                ledger.test_charge(user, amount.unsigned_abs(), &mut out, &mut undo)
            } else {
                ledger
                    .test_topup(user, *amount, &mut out, &mut undo)
                    .map(|outcome| outcome.map(|changed| changed.balance))
            };
            assert!(matches!(outcome, Ok(Outcome::Applied(_))));
        }
        out
    }

    fn audit(bytes: &[u8]) -> JournalScan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.ndjson");
        std::fs::write(&path, bytes).unwrap();
        scan(&path, bytes.len() as u64).unwrap()
    }

    #[test]
    fn a_consistent_journal_passes_with_counts() {
        let scan = audit(&journal_with(&[
            ("a", -1),
            ("b", 5),
            ("a", -2),
            ("b", -155),
        ]));
        assert!(scan.report.ok, "{:?}", scan.report.discrepancy);
        assert_eq!(scan.report.transactions, 4);
        assert_eq!(scan.report.entries, 6);
        assert_eq!(scan.report.welcomes, 2);
        assert_eq!(scan.report.accounts, 2);
        assert_eq!(scan.accounts["a"].balance, 147);
        assert_eq!(scan.accounts["b"].balance, 0);
    }

    #[test]
    fn a_hand_edited_balance_is_named() {
        let text = String::from_utf8(journal_with(&[("a", -1), ("a", -1)])).unwrap();
        let edited = text.replacen(r#""balance":148"#, r#""balance":1148"#, 1);
        let scan = audit(edited.as_bytes());
        assert!(!scan.report.ok);
        let problem = scan.report.discrepancy.unwrap();
        assert!(
            problem.contains("line 2") && problem.contains("1148"),
            "{problem}"
        );
    }

    #[test]
    fn gaps_duplicates_and_second_welcomes_are_caught() {
        let text = String::from_utf8(journal_with(&[("a", -1)])).unwrap();
        let doubled = format!("{text}{}", text.replace(r#""seq":1"#, r#""seq":3"#));
        let problem = audit(doubled.as_bytes()).report.discrepancy.unwrap();
        assert!(
            problem.contains("previous line") || problem.contains("welcome"),
            "{problem}"
        );
        let gap = text.replace(r#""seq":1"#, r#""seq":2"#);
        let problem = audit(gap.as_bytes()).report.discrepancy.unwrap();
        assert!(problem.contains("sequence gap"), "{problem}");
        let negative = text.replace(r#""delta":-1,"balance":149"#, r#""delta":-151,"balance":0"#);
        let problem = audit(negative.as_bytes()).report.discrepancy.unwrap();
        assert!(problem.contains("below zero"), "{problem}");
    }

    #[test]
    fn batch_ends_are_checked_and_counted_in_offsets() {
        let first = journal_with(&[("a", -1)]);
        let mut journal = first.clone();
        crate::store::file::record::BatchEnd { batch_start: 0 }.encode(&mut journal);
        // The next line's `prev` counts the batch end's bytes.
        let mut ledger = Ledger::new(crate::store::rules::Welcome {
            tokens: 150,
            expires_in: None,
        });
        let (mut out, mut undo) = (Vec::new(), Vec::new());
        ledger.test_charge("a", 1, &mut out, &mut undo).unwrap();
        ledger.skip((journal.len() - out.len()) as u64);
        out.clear();
        ledger.test_charge("a", 1, &mut out, &mut undo).unwrap();
        journal.extend_from_slice(&out);
        let scan = audit(&journal);
        assert!(scan.report.ok, "{:?}", scan.report.discrepancy);
        assert_eq!(scan.accounts["a"].balance, 148);

        let mut misplaced = first;
        crate::store::file::record::BatchEnd { batch_start: 5000 }.encode(&mut misplaced);
        let problem = audit(&misplaced).report.discrepancy.unwrap();
        assert!(
            problem.contains("line 2") && problem.contains("batch began at 5000"),
            "{problem}"
        );
    }
}

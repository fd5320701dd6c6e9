//! The journal's line format: one JSON object per transaction, one transaction per line.
//!
//! A transaction is everything one request changed for one user, so a line is applied whole
//! or not at all (a first `get` writes the welcome grant and the charge in one line; a torn
//! write can never keep one without the other). Each line carries, besides its entries:
//!
//! - `seq`: the sequence number of its first entry (entries are numbered consecutively, with
//!   no gaps, across the whole journal);
//! - `time`: milliseconds since the Unix epoch;
//! - `prev`: the byte offset of the same user's previous line, so a user's history is a
//!   backward chain through the file and needs no index in memory;
//! - every entry's `balance` after it, so replay sets absolute values (redo is idempotent,
//!   which is what lets checkpoints be taken without stopping the daemon);
//! - on each entry, what it did to the account's lots ([`RecordedEntry`], a shape the dump
//!   shares): a credit's `lot`
//!   (the terms of the lot it opened, whose id is the entry's seq and whose amount is its
//!   delta: `{}` for the defaults), a debit's or an expiry's `from` (`[[lot id, tokens],…]`),
//!   an expiry's `at` (its `expires_at`, before the line's `time`). Lines written before lots
//!   have none of these; replay reads them by the migration rule
//!   ([`crate::store::rules::carried_over`]).
//!
//! After each batch of lines it writes with one flush, the journal writer adds a *batch end*
//! line, `{"batch_start":OFFSET}`, naming the byte offset where that batch began. Recovery
//! needs it to tell an interrupted write from damage (see [`super::recovery`]); it changes no
//! balance, and history (which follows `prev` offsets) never reads it.
//!
//! This module owns the shapes and their encoding; it does not decide what goes in them.

pub use crate::domain::Entry;
use crate::domain::Tier;
pub use crate::store::recorded::RecordedEntry;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A transaction line as written. Borrowed everywhere so encoding allocates nothing.
#[derive(Debug, Serialize)]
pub struct RecordOut<'a> {
    pub seq: u64,
    pub time: i64,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<u64>,
    pub entries: &'a [RecordedEntry],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub memes: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    /// The canonical form of the keyed request, to tell a retry from a conflicting reuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp: Option<&'a str>,
    /// The reply `data` sent for the keyed request, replayed verbatim on a retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// A transaction line as read back (replay, history, audit). Strings borrow from the line
/// unless they contain escapes.
#[derive(Debug, Deserialize)]
pub struct RecordIn<'a> {
    pub seq: u64,
    pub time: i64,
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    #[serde(default)]
    pub prev: Option<u64>,
    pub entries: Vec<RecordedEntry>,
    #[serde(borrow, default)]
    pub memes: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub fp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reply: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub until: Option<i64>,
}

impl RecordOut<'_> {
    /// Appends the line, newline included, to `out`; returns its length in bytes.
    pub fn encode(&self, out: &mut Vec<u8>) -> u64 {
        let start = out.len();
        // Serialising borrowed strings and integers into a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("journal record serialises");
        out.push(b'\n');
        (out.len() - start) as u64
    }
}

/// The line that closes a batch: where the batch began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchEnd {
    pub batch_start: u64,
}

impl BatchEnd {
    /// How every batch end begins, and no transaction line does (those begin with `seq`).
    const PREFIX: &'static [u8] = br#"{"batch_start":"#;

    /// Appends the line, newline included, to `out`; returns its length in bytes.
    pub fn encode(self, out: &mut Vec<u8>) -> u64 {
        let start = out.len();
        serde_json::to_writer(&mut *out, &self).expect("batch end serialises");
        out.push(b'\n');
        (out.len() - start) as u64
    }

    /// Checks that the batch began where it can have: not before the end of the previous
    /// batch end line (`floor`) and not after this line, found at `at`.
    pub fn check_place(self, floor: u64, at: u64) -> Result<(), String> {
        match (floor..=at).contains(&self.batch_start) {
            true => Ok(()),
            false => Err(format!(
                "a batch end says its batch began at {}, outside {floor}..{at}",
                self.batch_start
            )),
        }
    }

    /// Reads a line (without its newline) that is exactly a batch end.
    pub fn parse(line: &[u8]) -> Option<BatchEnd> {
        if !line.starts_with(Self::PREFIX) {
            return None;
        }
        serde_json::from_slice(line).ok()
    }
}

/// Any line of the journal.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived value on the stack, one line at a time; boxing would allocate per line"
)]
pub enum JournalLine<'a> {
    Transaction(RecordIn<'a>),
    BatchEnd(BatchEnd),
}

impl<'a> JournalLine<'a> {
    /// Parses one line (without its newline).
    pub fn parse(line: &'a [u8]) -> Result<JournalLine<'a>, String> {
        if line.starts_with(BatchEnd::PREFIX) {
            return BatchEnd::parse(line)
                .map(JournalLine::BatchEnd)
                .ok_or_else(|| "not a valid batch end".to_string());
        }
        RecordIn::parse(line).map(JournalLine::Transaction)
    }
}

impl<'a> RecordIn<'a> {
    /// Parses one line (without its newline) and checks the shape rules that serde cannot:
    /// at least one entry, and `key`, `fp` and `reply` present together or not at all.
    pub fn parse(line: &'a [u8]) -> Result<RecordIn<'a>, String> {
        let record: RecordIn = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        crate::store::dump::check_shape(
            record.entries.len(),
            [
                record.key.is_some(),
                record.fp.is_some(),
                record.reply.is_some(),
            ],
        )?;
        Ok(record)
    }

    /// The sequence number the next line must start with.
    pub fn next_seq(&self) -> u64 {
        self.seq + self.entries.len() as u64
    }

    /// The balance after the last entry.
    pub fn final_balance(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.balance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EntryKind;

    #[test]
    fn encodes_the_documented_line_and_reads_it_back() {
        let entries = [
            RecordedEntry::plain(Entry {
                kind: EntryKind::Welcome,
                delta: 150,
                balance: 150,
            }),
            RecordedEntry::plain(Entry {
                kind: EntryKind::Charge,
                delta: -1,
                balance: 149,
            }),
        ];
        let mut out = Vec::new();
        let len = RecordOut {
            seq: 1,
            time: 1_764_000_000_123,
            user: "u\"1",
            prev: None,
            entries: &entries,
            memes: &["grumpy-cat"],
            key: None,
            fp: None,
            reply: None,
            reason: None,
            tier: None,
            until: None,
        }
        .encode(&mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"seq":1,"time":1764000000123,"user":"u\"1","entries":[{"kind":"welcome","delta":150,"balance":150},{"kind":"charge","delta":-1,"balance":149}],"memes":["grumpy-cat"]}"#,
                "\n"
            )
        );
        assert_eq!(len as usize, text.len());
        let back = RecordIn::parse(&out[..out.len() - 1]).unwrap();
        assert_eq!(back.user, "u\"1");
        assert_eq!(back.entries, entries);
        assert_eq!(back.next_seq(), 3);
        assert_eq!(back.final_balance(), 149);
        assert_eq!(back.memes, vec![Cow::Borrowed("grumpy-cat")]);
    }

    #[test]
    fn batch_ends_read_back_and_are_told_apart_from_transactions() {
        let mut out = Vec::new();
        let len = BatchEnd { batch_start: 4096 }.encode(&mut out);
        assert_eq!(out, b"{\"batch_start\":4096}\n");
        assert_eq!(len as usize, out.len());
        let line = &out[..out.len() - 1];
        assert_eq!(BatchEnd::parse(line), Some(BatchEnd { batch_start: 4096 }));
        assert!(matches!(
            JournalLine::parse(line),
            Ok(JournalLine::BatchEnd(BatchEnd { batch_start: 4096 }))
        ));
        for not_one in [
            &br#"{"batch_start":-1}"#[..],
            br#"{"batch_start":1,"seq":2}"#,
            br#"{"batch_start":1"#,
            br#"x{"batch_start":1}"#,
        ] {
            assert_eq!(BatchEnd::parse(not_one), None);
        }
        assert!(JournalLine::parse(br#"{"batch_start":"1"}"#).is_err());
        let transaction =
            br#"{"seq":1,"time":0,"user":"u","entries":[{"kind":"topup","delta":1,"balance":1}]}"#;
        assert!(matches!(
            JournalLine::parse(transaction),
            Ok(JournalLine::Transaction(_))
        ));
    }

    #[test]
    fn rejects_half_keyed_and_empty_transactions() {
        assert!(RecordIn::parse(br#"{"seq":1,"time":0,"user":"u","entries":[]}"#).is_err());
        assert!(
            RecordIn::parse(
                br#"{"seq":1,"time":0,"user":"u","entries":[{"kind":"topup","delta":1,"balance":1}],"key":"k"}"#
            )
            .is_err()
        );
        assert!(RecordIn::parse(br#"{"seq":1,"time":0,"user":"u""#).is_err());
    }
}

//! The dump: a whole ledger as a typed, versioned stream that belongs to no store. A store
//! that can export writes one with [`Writer`]; a store that can import reads one with
//! [`Reader`]. Neither needs to know which store the other side is, so moving a ledger
//! between stores (`memesd export`, `memesd import`) never has one store read another's
//! files or tables.
//!
//! The stream is NDJSON, and its shape is a user-visible format (operators keep export files
//! and load them later). Version 1 is what memesd wrote before lots; version 2 is version 1
//! plus, on each entry, what it did to the account's lots (a credit's `lot`, a debit's or an
//! expiry's `from`, an expiry's `at`: [`RecordedEntry`], left out when empty) and the `expire`
//! entry kind. A version 1 reader would drop those fields and misread every lot, so it must
//! refuse version 2 by its header (as it does); later readers read version 1 streams, whose
//! entries name no lots (the migration rule, [`super::rules::carried_over`], gives them
//! meaning), and refuse one that names any. Version 3 is version 2 chained: every line ends
//! with `"prev_sha256"`, the SHA-256 (hex) of the previous line's exact bytes (without its
//! newline), the header's being [`GENESIS`]; so editing, removing, adding or reordering any
//! line breaks the chain at that line, which every reader of version 3 on refuses ([`audit`]
//! also checks every sum, offline). Version 4 is version 3 plus holds: the
//! `hold`, `capture`, `void` and `release` entry kinds, each naming its `hold` (a capture what
//! it `captured`); a version 3 reader would fail on them mid-stream, so it refuses version 4 by
//! its header, and a stream of an earlier version that names a hold is refused. Version 5,
//! written now, is version 4 plus refunds: the `refund` entry kind, naming the charge it
//! `reverses`, what it `refunded` and the lots it `reopened`; a version 4 reader refuses it
//! by its header, and a stream of an earlier version with a refund entry is refused:
//!
//! - a header, `{"format":"memes-ledger","version":5,"source":{"host":…,"dir":…},"prev_sha256":GENESIS}`
//!   (the source names the ledger exported, so that an import can mark it as moved);
//! - one line per [`Transaction`]: everything one request changed for one user, with its
//!   sequence number, time, entries (kind, delta and balance after), and the memes, key,
//!   fingerprint, stored reply, reason, tier and until that came with it;
//! - a trailer `{"end":{…counts…}}`, so a stream cut short is never taken for a whole one.
//!
//! Sequence numbers and times are kept: history, stored replies and the audit read the same
//! before and after a move. A later version must be one the readers before it refuse by its
//! header (as [`Reader::open`] does), never one they misread.
//!
//! This module owns the stream's shape and the checks any reader needs (header, order,
//! counts, the end line); what a store does with each transaction is the store's.

pub mod audit;

use super::recorded::RecordedEntry;
use crate::domain::Tier;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

/// The stream's format name and the version written.
pub const FORMAT: &str = "memes-ledger";
pub const VERSION: u32 = 5;
/// The oldest version read (entries that name no lots).
pub const OLDEST_VERSION: u32 = 1;
/// The first version whose lines are chained (each carries the previous line's hash).
pub const CHAINED_VERSION: u32 = 3;
/// The first version whose entries may name holds.
pub const HOLDS_VERSION: u32 = 4;
/// The first version whose entries may be refunds.
pub const REFUNDS_VERSION: u32 = 5;
/// The `prev_sha256` of a chained stream's first line, its header: nothing came before it.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A line's hash as the next line names it: SHA-256 over its bytes (without the newline),
/// lowercase hex.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// Where the exported ledger lives, so that an import can mark it as moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<Source>,
    /// Read only: the writer adds it to every line (see [`Writer`]).
    #[serde(default, skip_serializing)]
    prev_sha256: Option<String>,
}

/// The ledger a dump was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The machine's host name.
    pub host: String,
    /// The data directory, absolute.
    pub dir: PathBuf,
}

impl Source {
    /// The ledger in `dir`, on this machine.
    pub fn here(dir: &Path) -> Source {
        Source {
            host: host_name(),
            dir: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        }
    }
}

/// This machine's name (empty if it has none).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    end: Counts,
    #[serde(default, skip_serializing)]
    prev_sha256: Option<String>,
}

/// What a stream holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub transactions: u64,
    pub entries: u64,
    pub accounts: u64,
    pub keys: u64,
}

/// Counts as transactions go by (written or read): both ends count the same way, so the
/// trailer means the same to both.
#[derive(Debug, Default)]
struct Tally {
    counts: Counts,
    users: HashSet<String>,
}

impl Tally {
    fn add(&mut self, transaction: &Transaction) {
        self.counts.transactions += 1;
        self.counts.entries += transaction.entries.len() as u64;
        self.counts.keys += u64::from(transaction.key.is_some());
        // Looked up before it is copied: most transactions are of a user already seen.
        if !self.users.contains(transaction.user.as_ref()) {
            self.users.insert(transaction.user.to_string());
            self.counts.accounts = self.users.len() as u64;
        }
    }
}

/// One transaction line: everything one request changed for one user, applied whole or not
/// at all. Strings borrow from the line read unless they contain escapes.
///
/// The field order and the fields left out when empty are the format's since version 1; a
/// store's own bookkeeping (the file store's byte offsets, say) has no place here, it means nothing
/// elsewhere.
#[derive(Debug, Serialize, Deserialize)]
pub struct Transaction<'a> {
    /// The sequence number of the first entry; entries are numbered consecutively.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    #[serde(borrow)]
    pub user: Cow<'a, str>,
    /// Expiries first, then grants, the request's own entry last; each with the balance after
    /// it (tokens) and what it did to the account's lots.
    pub entries: Vec<RecordedEntry>,
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub memes: Vec<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Cow<'a, str>>,
    /// The canonical form of the keyed request, to tell a retry from a conflicting reuse.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<Cow<'a, str>>,
    /// The stored reply of the keyed request (a [`super::StoredReply`], version 1: its bytes
    /// exactly), so that a retry after the move replays what was answered before it.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Milliseconds since the Unix epoch; with `tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// The previous line's hash, as read (version 3 on). A writer leaves it `None`: it adds
    /// the hash of the line it wrote before ([`Writer`]).
    #[serde(borrow, default, skip_serializing)]
    pub prev_sha256: Option<Cow<'a, str>>,
}

impl<'a> Transaction<'a> {
    /// Parses one line (without its newline) and checks the shape rules that serde cannot:
    /// at least one entry, and `key`, `fp` and `reply` present together or not at all.
    pub fn parse(line: &'a [u8]) -> Result<Transaction<'a>, String> {
        let transaction: Transaction = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        check_shape(
            transaction.entries.len(),
            [
                transaction.key.is_some(),
                transaction.fp.is_some(),
                transaction.reply.is_some(),
            ],
        )?;
        Ok(transaction)
    }

    /// The sequence number the next transaction must start at, or after.
    pub fn next_seq(&self) -> u64 {
        self.seq + self.entries.len() as u64
    }

    /// The balance after the last entry (tokens).
    pub fn final_balance(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.balance)
    }
}

/// The shape rules of a transaction that serde cannot check, the same in a dump and in the
/// file store's journal (whose transactions a dump copies): at least one entry, and `key`,
/// `fp` and `reply` (whether each is there) present together or not at all.
pub fn check_shape(entries: usize, [key, fp, reply]: [bool; 3]) -> Result<(), String> {
    if entries == 0 {
        return Err("transaction has no entries".into());
    }
    if !(key == fp && fp == reply) {
        return Err("key, fp and reply must appear together".into());
    }
    Ok(())
}

/// Writes a dump: the header when started, each transaction as it is given, the trailer when
/// finished. A writer dropped unfinished leaves a stream without its end line, which every
/// reader refuses.
pub struct Writer<W: Write> {
    out: W,
    line: Vec<u8>,
    tally: Tally,
    /// The hash of the line written last ([`GENESIS`] before the header).
    prev: String,
}

impl<W: Write> Writer<W> {
    /// Starts a dump of the ledger `source` names, writing its header.
    pub fn start(out: W, source: Option<Source>) -> io::Result<Writer<W>> {
        let mut writer = Writer {
            out,
            line: Vec::with_capacity(4096),
            tally: Tally::default(),
            prev: GENESIS.to_string(),
        };
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            source,
            prev_sha256: None,
        };
        writer.put(&header)?;
        Ok(writer)
    }

    /// Writes one transaction.
    pub fn write(&mut self, transaction: &Transaction) -> io::Result<()> {
        self.put(transaction)?;
        self.tally.add(transaction);
        Ok(())
    }

    /// What has been written so far.
    pub fn counts(&self) -> Counts {
        self.tally.counts
    }

    /// Writes the trailer and flushes; what the stream holds.
    pub fn finish(mut self) -> io::Result<Counts> {
        let counts = self.tally.counts;
        self.put(&Trailer {
            end: counts,
            prev_sha256: None,
        })?;
        self.out.flush()?;
        Ok(counts)
    }

    /// Writes one line: `value`'s object, with the previous line's hash as its last field.
    fn put<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.line.clear();
        // Integers and strings into a Vec: serialising cannot fail.
        serde_json::to_writer(&mut self.line, value).expect("a dump line serialises");
        debug_assert_eq!(self.line.last(), Some(&b'}'), "a line is an object");
        self.line.pop();
        self.line.extend_from_slice(b",\"prev_sha256\":\"");
        self.line.extend_from_slice(self.prev.as_bytes());
        self.line.extend_from_slice(b"\"}");
        self.prev = line_hash(&self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

/// Reads a dump, checking as it goes what any store must be able to rely on: the header's
/// format and version, each line's shape, sequence numbers that only go up, nothing after
/// the end line, and an end line whose counts match what came before it.
pub struct Reader<R: BufRead> {
    input: R,
    line: Vec<u8>,
    line_no: u64,
    source: Option<Source>,
    version: u32,
    next_seq: u64,
    tally: Tally,
    trailer: Option<Counts>,
    /// The hash of the line read last (version 3 on: each line must name it).
    prev: String,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header; refuses a stream that is not a dump of a version this memesd reads.
    pub fn open(input: R) -> Result<Reader<R>, String> {
        let mut reader = Reader {
            input,
            line: Vec::with_capacity(4096),
            line_no: 0,
            source: None,
            version: VERSION,
            next_seq: 1,
            tally: Tally::default(),
            trailer: None,
            prev: GENESIS.to_string(),
        };
        if !reader.read_line()? {
            return Err("the stream is empty".into());
        }
        let readable = OLDEST_VERSION..=VERSION;
        (reader.source, reader.version) = match serde_json::from_slice::<Header>(&reader.line) {
            Ok(h) if h.format == FORMAT && readable.contains(&h.version) => {
                let named = h.prev_sha256.as_deref();
                link(&mut reader.prev, h.version, 1, &reader.line, named)?;
                (h.source, h.version)
            }
            Ok(h) => {
                return Err(format!(
                    "the stream is {} version {}; this memesd reads {FORMAT} versions {OLDEST_VERSION} to {VERSION}",
                    h.format, h.version
                ));
            }
            Err(_) => return Err("line 1: not a memes ledger export (no header)".into()),
        };
        Ok(reader)
    }

    /// The ledger the dump was made from, if it says.
    pub fn source(&self) -> Option<&Source> {
        self.source.as_ref()
    }

    /// The stream's version (its header's).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The next transaction, or `None` once the end line has been read and the input ends
    /// there. A stream that ends without its end line, or whose end line does not count what
    /// it held, is an error here, so no reader can take it for a whole ledger; so is a line
    /// of a chained stream that does not name the previous line's hash. (Not an `Iterator`:
    /// the transaction borrows the line the reader holds.)
    pub fn read(&mut self) -> Result<Option<Transaction<'_>>, String> {
        Ok(self.read_numbered()?.map(|(_, transaction)| transaction))
    }

    /// [`Reader::read`], with the transaction's line number (1 is the header's).
    pub fn read_numbered(&mut self) -> Result<Option<(u64, Transaction<'_>)>, String> {
        loop {
            if !self.read_line()? {
                let line_no = self.line_no;
                return match self.trailer {
                    None => Err(format!(
                        "line {line_no}: the stream is cut short: it has no end line"
                    )),
                    Some(end) if end != self.tally.counts => Err(format!(
                        "the stream's end line counts {end:?} but it holds {:?}",
                        self.tally.counts
                    )),
                    Some(_) => Ok(None),
                };
            }
            let line_no = self.line_no;
            if self.line.is_empty() {
                if self.version >= CHAINED_VERSION {
                    return Err(format!(
                        "line {line_no}: an empty line (the lines are chained: none may be added)"
                    ));
                }
                continue;
            }
            if self.trailer.is_some() {
                return Err(format!("line {line_no}: data after the end of the stream"));
            }
            if self.line.starts_with(br#"{"end":"#) {
                let end: Trailer = serde_json::from_slice(&self.line)
                    .map_err(|e| format!("line {line_no}: not a valid end line: {e}"))?;
                let named = end.prev_sha256.as_deref();
                link(&mut self.prev, self.version, line_no, &self.line, named)?;
                self.trailer = Some(end.end);
                continue;
            }
            break;
        }
        let line_no = self.line_no;
        let transaction =
            Transaction::parse(&self.line).map_err(|e| format!("line {line_no}: {e}"))?;
        let named = transaction.prev_sha256.as_deref();
        link(&mut self.prev, self.version, line_no, &self.line, named)?;
        if self.version < 2 && transaction.entries.iter().any(RecordedEntry::names_lots) {
            return Err(format!(
                "line {line_no}: a version {} stream names no lots, but this entry does",
                self.version
            ));
        }
        if self.version < HOLDS_VERSION && transaction.entries.iter().any(|e| e.hold.is_some()) {
            return Err(format!(
                "line {line_no}: a version {} stream names no holds, but this entry does",
                self.version
            ));
        }
        if self.version < REFUNDS_VERSION
            && transaction.entries.iter().any(|e| e.reverses.is_some())
        {
            return Err(format!(
                "line {line_no}: a version {} stream names no refunds, but this entry does",
                self.version
            ));
        }
        if transaction.seq < self.next_seq {
            return Err(format!(
                "line {line_no}: sequence number {} does not follow {}",
                transaction.seq,
                self.next_seq - 1
            ));
        }
        self.next_seq = transaction.next_seq();
        self.tally.add(&transaction);
        Ok(Some((line_no, transaction)))
    }

    /// What has been read so far (the whole stream's, once [`Reader::read`] gave `None`).
    pub fn counts(&self) -> Counts {
        self.tally.counts
    }

    /// One past the last sequence number read (1 before any).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Reads the next line, without its newline, into `self.line`; false at the end.
    fn read_line(&mut self) -> Result<bool, String> {
        self.line.clear();
        self.line_no += 1;
        let read = self
            .input
            .read_until(b'\n', &mut self.line)
            .map_err(|e| format!("reading the stream: {e}"))?;
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        }
        Ok(read > 0)
    }
}

/// Checks that `line` (number `line_no`), which names `named` as the previous line's hash,
/// names `prev`, the hash of the line before it (a header: [`GENESIS`]), in a stream of
/// `version`; then moves the chain on to it. A stream of a version before the chain names
/// none: one whose lines do was chained and relabelled, which would skip the chain.
fn link(
    prev: &mut String,
    version: u32,
    line_no: u64,
    line: &[u8],
    named: Option<&str>,
) -> Result<(), String> {
    if version < CHAINED_VERSION {
        return match named {
            None => Ok(()),
            Some(_) => Err(format!(
                "line {line_no}: a version {version} stream is not chained, but this line names prev_sha256 (was the header's version edited?)"
            )),
        };
    }
    if named != Some(prev.as_str()) {
        return Err(broken(line_no, named, prev));
    }
    *prev = line_hash(line);
    Ok(())
}

/// What a line that breaks the chain is told: the hash it names, and the one it should.
fn broken(line_no: u64, named: Option<&str>, expected: &str) -> String {
    let what = match (line_no, named) {
        (_, None) => "names no prev_sha256".to_string(),
        (1, Some(named)) => format!(
            "names prev_sha256 {named}, but the first line's is the genesis value {expected}"
        ),
        (_, Some(named)) => format!(
            "names prev_sha256 {named}, but line {} hashes to {expected}",
            line_no - 1
        ),
    };
    format!(
        "line {line_no}: the chain is broken: it {what} (a line was edited, removed, added or moved)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Entry, EntryKind, LotKind, LotTake};
    use crate::store::recorded::TermsRecord;

    fn entry(kind: EntryKind, delta: i64, balance: u64) -> RecordedEntry {
        RecordedEntry::plain(Entry {
            kind,
            delta,
            balance,
        })
    }

    fn dump(transactions: &[Transaction]) -> Vec<u8> {
        let mut out = Vec::new();
        let source = Source {
            host: "h".into(),
            dir: "/d".into(),
        };
        let mut writer = Writer::start(&mut out, Some(source)).unwrap();
        for transaction in transactions {
            writer.write(transaction).unwrap();
        }
        writer.finish().unwrap();
        out
    }

    fn read_all(stream: &[u8]) -> Result<Vec<(u64, String)>, String> {
        let mut reader = Reader::open(stream)?;
        let mut seen = Vec::new();
        while let Some(transaction) = reader.read()? {
            seen.push((transaction.seq, transaction.user.to_string()));
        }
        Ok(seen)
    }

    /// Lines chained as version 3 writes them: each with the hash of the one before.
    fn chain(lines: &[&str]) -> String {
        let mut prev = GENESIS.to_string();
        let mut out = String::new();
        for line in lines {
            let chained = format!("{},\"prev_sha256\":\"{prev}\"}}", &line[..line.len() - 1]);
            prev = line_hash(chained.as_bytes());
            out.push_str(&chained);
            out.push('\n');
        }
        out
    }

    /// Version 4 byte for byte: version 2's lines (version 1's, plus what each entry did to
    /// the lots), each ending with the previous line's hash (version 3), holds' entries
    /// allowed. Export files users keep must stay readable.
    #[test]
    fn writes_the_version_5_stream_and_reads_it_back() {
        let reply = RawValue::from_string(r#"{"user_id":"b","new_balance":7}"#.into()).unwrap();
        let stream = dump(&[
            Transaction {
                seq: 1,
                time: 10,
                user: "a\"1".into(),
                entries: vec![
                    RecordedEntry {
                        lot: Some(TermsRecord {
                            expires_at: None,
                            priority: 50,
                            kind: LotKind::Promo,
                        }),
                        ..entry(EntryKind::Welcome, 150, 150)
                    },
                    RecordedEntry {
                        from: vec![LotTake { lot: 1, tokens: 1 }],
                        ..entry(EntryKind::Charge, -1, 149)
                    },
                ],
                memes: vec!["grumpy-cat".into()],
                key: None,
                fp: None,
                reply: None,
                reason: None,
                tier: None,
                until: None,
                prev_sha256: None,
            },
            Transaction {
                seq: 3,
                time: 11,
                user: "b".into(),
                entries: vec![entry(EntryKind::Topup, 7, 7)],
                memes: Vec::new(),
                key: Some("u:b:k".into()),
                fp: Some("fp".into()),
                reply: Some(&reply),
                reason: Some("stripe".into()),
                tier: Some(Tier::Premium),
                until: Some(99),
                prev_sha256: None,
            },
        ]);
        let text = String::from_utf8(stream.clone()).unwrap();
        assert_eq!(
            text,
            chain(&[
                r#"{"format":"memes-ledger","version":5,"source":{"host":"h","dir":"/d"}}"#,
                r#"{"seq":1,"time":10,"user":"a\"1","entries":[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}},{"kind":"charge","delta":-1,"balance":149,"from":[[1,1]]}],"memes":["grumpy-cat"]}"#,
                r#"{"seq":3,"time":11,"user":"b","entries":[{"kind":"topup","delta":7,"balance":7}],"key":"u:b:k","fp":"fp","reply":{"user_id":"b","new_balance":7},"reason":"stripe","tier":"premium","until":99}"#,
                r#"{"end":{"transactions":2,"entries":3,"accounts":2,"keys":1}}"#,
            ])
        );
        assert!(text.starts_with(
            r#"{"format":"memes-ledger","version":5,"source":{"host":"h","dir":"/d"},"prev_sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        ));
        let mut reader = Reader::open(&stream[..]).unwrap();
        assert_eq!(reader.source().unwrap().host, "h");
        assert_eq!(reader.version(), 5);
        let first = reader.read().unwrap().unwrap();
        assert_eq!((first.user.as_ref(), first.final_balance()), ("a\"1", 149));
        assert_eq!(first.entries[1].from, [LotTake { lot: 1, tokens: 1 }]);
        assert_eq!(first.next_seq(), 3);
        let second = reader.read().unwrap().unwrap();
        assert_eq!(second.reply.unwrap().get(), reply.get());
        assert!(reader.read().unwrap().is_none());
        assert_eq!(
            reader.counts(),
            Counts {
                transactions: 2,
                entries: 3,
                accounts: 2,
                keys: 1
            }
        );
        assert_eq!(reader.next_seq(), 4);
    }

    /// A stream written before lots (version 1) still reads; one that says version 1 but
    /// names lots is refused rather than half-read.
    #[test]
    fn reads_version_1_streams_whose_entries_name_no_lots() {
        let v1 = concat!(
            r#"{"format":"memes-ledger","version":1}"#,
            "\n",
            r#"{"seq":1,"time":10,"user":"a","entries":[{"kind":"welcome","delta":150,"balance":150},{"kind":"charge","delta":-1,"balance":149}]}"#,
            "\n",
            r#"{"end":{"transactions":1,"entries":2,"accounts":1,"keys":0}}"#,
            "\n",
        );
        let mut reader = Reader::open(v1.as_bytes()).unwrap();
        assert_eq!(reader.version(), 1);
        let first = reader.read().unwrap().unwrap();
        assert!(!first.entries.iter().any(RecordedEntry::names_lots));
        assert!(reader.read().unwrap().is_none());
        let named = v1.replace(r#""balance":149}"#, r#""balance":149,"from":[[1,1]]}"#);
        assert!(
            read_all(named.as_bytes())
                .unwrap_err()
                .contains("names no lots")
        );
    }

    /// Version 2 (unchained) streams still read.
    #[test]
    fn reads_version_2_streams_without_a_chain() {
        let v2 = concat!(
            r#"{"format":"memes-ledger","version":2}"#,
            "\n",
            r#"{"seq":1,"time":10,"user":"a","entries":[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}},{"kind":"charge","delta":-1,"balance":149,"from":[[1,1]]}]}"#,
            "\n",
            r#"{"end":{"transactions":1,"entries":2,"accounts":1,"keys":0}}"#,
            "\n",
        );
        assert_eq!(read_all(v2.as_bytes()).unwrap(), [(1, "a".into())]);
        assert_eq!(audit::audit(v2.as_bytes()).unwrap().version, 2);
    }

    /// A version 3 stream (chained, before holds) still reads; one that says version 3 but
    /// names a hold is refused at that line rather than half-read.
    #[test]
    fn reads_version_3_streams_and_refuses_their_holds() {
        let welcome = r#"{"seq":1,"time":10,"user":"a","entries":[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}}]}"#;
        let end = r#"{"end":{"transactions":1,"entries":1,"accounts":1,"keys":0}}"#;
        let v3 = chain(&[r#"{"format":"memes-ledger","version":3}"#, welcome, end]);
        assert_eq!(read_all(v3.as_bytes()).unwrap(), [(1, "a".into())]);
        let held = r#"{"seq":1,"time":10,"user":"a","entries":[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}},{"kind":"hold","delta":-5,"balance":145,"at":20,"from":[[1,5]],"hold":2}]}"#;
        let end = r#"{"end":{"transactions":1,"entries":2,"accounts":1,"keys":0}}"#;
        let v3 = chain(&[r#"{"format":"memes-ledger","version":3}"#, held, end]);
        assert!(
            read_all(v3.as_bytes())
                .unwrap_err()
                .starts_with("line 2: a version 3 stream names no holds")
        );
        let v4 = chain(&[r#"{"format":"memes-ledger","version":4}"#, held, end]);
        assert_eq!(read_all(v4.as_bytes()).unwrap(), [(1, "a".into())]);
        let refunded = r#"{"seq":1,"time":10,"user":"a","entries":[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}},{"kind":"charge","delta":-5,"balance":145,"from":[[1,5]]},{"kind":"refund","delta":5,"balance":150,"from":[[1,5]],"reverses":2,"refunded":5}]}"#;
        let end = r#"{"end":{"transactions":1,"entries":3,"accounts":1,"keys":0}}"#;
        let v4 = chain(&[r#"{"format":"memes-ledger","version":4}"#, refunded, end]);
        assert!(
            read_all(v4.as_bytes())
                .unwrap_err()
                .starts_with("line 2: a version 4 stream names no refunds")
        );
        let v5 = chain(&[r#"{"format":"memes-ledger","version":5}"#, refunded, end]);
        assert_eq!(read_all(v5.as_bytes()).unwrap(), [(1, "a".into())]);
        assert!(audit::audit(v5.as_bytes()).is_ok());
    }

    /// Any line edited, removed, added or moved breaks the chain at that line, which every
    /// reader refuses, naming the line.
    #[test]
    fn a_broken_chain_is_refused_at_the_line_that_breaks_it() {
        let transactions: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    r#"{{"seq":{},"time":{i},"user":"u{i}","entries":[{{"kind":"welcome","delta":150,"balance":150}}]}}"#,
                    i + 1
                )
            })
            .collect();
        let stream = dump(
            &transactions
                .iter()
                .map(|line| Transaction::parse(line.as_bytes()).unwrap())
                .collect::<Vec<_>>(),
        );
        let text = String::from_utf8(stream).unwrap();
        assert_eq!(read_all(text.as_bytes()).unwrap().len(), 3);
        let lines: Vec<&str> = text.lines().collect();
        let joined = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let edited = lines[2].replace("\"time\":1", "\"time\":2");
        let cases = [
            (
                joined(&[lines[0], lines[1], &edited, lines[3], lines[4]]),
                4,
            ),
            (joined(&[lines[0], lines[1], lines[3], lines[4]]), 3),
            (
                joined(&[lines[0], lines[2], lines[1], lines[3], lines[4]]),
                2,
            ),
            (
                joined(&[lines[0], lines[1], lines[2], lines[3], lines[3], lines[4]]),
                5,
            ),
            (
                joined(&[lines[0], lines[1], "", lines[2], lines[3], lines[4]]),
                3,
            ),
            (joined(&[lines[0], lines[1], lines[2], lines[3]]), 5),
        ];
        for (case, line) in cases {
            let refusal = read_all(case.as_bytes()).unwrap_err();
            assert!(
                refusal.starts_with(&format!("line {line}: ")),
                "{refusal}\n{case}"
            );
        }
        let forged_header = text.replacen("\"prev_sha256\":\"0", "\"prev_sha256\":\"1", 1);
        assert!(
            read_all(forged_header.as_bytes())
                .unwrap_err()
                .contains("line 1: the chain is broken")
        );
        // Relabelled as an unchained version, it would skip the chain: refused.
        let relabelled = text.replacen("\"version\":5", "\"version\":2", 1);
        assert!(
            read_all(relabelled.as_bytes())
                .unwrap_err()
                .starts_with("line 1: a version 2 stream is not chained")
        );
    }

    #[test]
    fn refuses_streams_that_are_not_whole_dumps() {
        let one = Transaction::parse(
            br#"{"seq":1,"time":0,"user":"u","entries":[{"kind":"topup","delta":1,"balance":1}]}"#,
        )
        .unwrap();
        let stream = String::from_utf8(dump(&[one])).unwrap();
        let lines: Vec<&str> = stream.lines().collect();
        let refusal = |text: String| read_all(text.as_bytes()).unwrap_err();

        assert_eq!(read_all(stream.as_bytes()).unwrap(), [(1, "u".into())]);
        assert!(refusal(String::new()).contains("empty"));
        assert!(refusal("{}\n".into()).contains("no header"));
        assert!(
            refusal(r#"{"format":"memes-ledger","version":6}"#.into())
                .contains("reads memes-ledger versions 1 to 5")
        );
        assert!(refusal(lines[..2].join("\n")).contains("cut short"));
        assert!(refusal(format!("{stream}{}\n", lines[1])).contains("after the end"));
        let miscounted = lines[2].replace("\"entries\":1", "\"entries\":2");
        assert!(refusal([lines[0], lines[1], &miscounted].join("\n")).contains("end line counts"));
        // What a chain would catch first, in an unchained (version 2) stream.
        let v2 = r#"{"format":"memes-ledger","version":2}"#;
        let plain =
            r#"{"seq":1,"time":0,"user":"u","entries":[{"kind":"topup","delta":1,"balance":1}]}"#;
        let backwards = format!("{v2}\n{plain}\n{plain}\n");
        assert!(refusal(backwards).contains("does not follow"));
        let half_keyed = r#"{"seq":1,"time":0,"user":"u","entries":[{"kind":"topup","delta":1,"balance":1}],"key":"k"}"#;
        assert!(refusal(format!("{v2}\n{half_keyed}\n")).contains("together"));
        let empty = r#"{"seq":1,"time":0,"user":"u","entries":[]}"#;
        assert!(refusal(format!("{v2}\n{empty}\n")).contains("no entries"));
    }
}

//! Checkpoints: the ledger's accounts and idempotency keys as one JSON file, so start-up
//! reads this file plus the journal written after it instead of the whole journal.
//!
//! The file is only a shortcut: the journal stays complete and balances can always be
//! re-derived from it (`memes audit` does). A checkpoint is taken while the daemon runs, in
//! small chunks under the ledger lock, so it never stalls requests for long. Such a
//! "fuzzy" checkpoint may include changes applied after its `journal_offset`; that is safe
//! because replaying a journal line sets absolute values, because start-up checks those
//! lines against each other and against the row that includes them (see
//! [`super::recovery`]), and because a checkpoint is only published once everything it saw
//! is on disk and nothing was taken back meanwhile.
//!
//! Format (one line):
//! `{"format":"memes-snapshot","version":2,"journal_offset":N,"next_seq":S,`
//! `"accounts":[[user,balance,last_line_offset,tier,until_ms|null,lots],...],`
//! `"keys":[[key,fingerprint,reply],...],"holds":[[id,user,amount,captured,created_at_ms,`
//! `expires_at_ms,state,parts],...],"digest":"sha256:HEX"}`
//!
//! # What start-up checks, and what the audit checks
//!
//! The idempotency keys decide whether a payment provider's retry credits a user again, and
//! the account rows are the balances served, so an edited checkpoint must not be believed.
//! The full check compares the checkpoint's contents with the whole journal, which start-up
//! cannot afford (it reads only the journal after the checkpoint; the whole journal takes
//! seconds with millions of entries). So the work is split:
//!
//! - at start-up, cheap checks only: `digest` is the SHA-256 of every byte before
//!   `,"digest"`, so any edit of a row, a key, a reply or the header that does not also
//!   recompute it stops start-up, naming this file. Hashing runs beside the parsing (about
//!   60 ms for a 48 MB checkpoint here, on another core); the file's own consistency (no
//!   duplicate rows, balances in range) is checked as it is read, and the journal lines after
//!   it are checked against its rows (see [`super::recovery`]);
//! - `memes audit` compares the daemon's accounts (balances, tiers) and keys (each key's
//!   fingerprint and stored reply) with what the whole journal derives, so it also catches
//!   an edit whose digest was recomputed: a digest is a seal against accidents and careless
//!   edits, not a signature.
//!
//! `digest` was added without a version bump: a checkpoint written by an older memesd has
//! none, still loads, and is then checked by the audit only.
//!
//! `lots` lists the account's lots in burn order, each
//! `[id,amount,remaining,effective_at_ms,expires_at_ms|null,priority,"paid"|"promo"]`. A version 1
//! checkpoint (written before lots) has no `lots`: each row's balance loads as one lot
//! ([`crate::store::rules::carried_over`]), as its journal lines replay.
//!
//! From version 3, a row ends with the ids of the account's open holds, and `holds` lists
//! every hold (its `parts` are lots as in a row, each holding what the hold took from it;
//! `state` is `open`, `captured`, `voided` or `expired`). The holds are written after the
//! rows, so every open hold a row names is among them; an older checkpoint has none.
//!
//! Publishing is atomic: write a temporary file, fsync it, rename it over the old one,
//! fsync the directory (see [`crate::atomic_file`]).

use super::ledger::{Account, AccountMap, HoldMap, KeyEntry, KeyMap, Lots};
use crate::domain::{Hold, HoldState, Lot, LotKind, MAX_BALANCE, Tier};
use crate::store::rules;
use crate::store::{OpenError, StoredReply};
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

pub const FORMAT: &str = "memes-snapshot";
pub const VERSION: u32 = 3;
/// The version written before lots, still read.
const VERSION_BEFORE_LOTS: u32 = 1;

/// Writes the opening of a checkpoint, up to the start of the account rows.
pub fn begin(out: &mut Vec<u8>, journal_offset: u64, next_seq: u64) {
    out.extend_from_slice(
        format!(
            r#"{{"format":"{FORMAT}","version":{VERSION},"journal_offset":{journal_offset},"next_seq":{next_seq},"accounts":["#
        )
        .as_bytes(),
    );
}

/// Appends one account row; `first` omits the separating comma.
pub fn account_row(out: &mut Vec<u8>, first: bool, user: &str, account: &Account) {
    if !first {
        out.push(b',');
    }
    let lots: Vec<LotRow> = account.lots().iter().map(LotRow::from).collect();
    let row = (
        user,
        account.balance,
        account.last,
        account.tier,
        account.until,
        lots,
        &account.holds,
    );
    serde_json::to_writer(&mut *out, &row).expect("account row serialises");
}

/// Ends the account rows and opens the key rows.
pub fn begin_keys(out: &mut Vec<u8>) {
    out.extend_from_slice(br#"],"keys":["#);
}

/// Appends one idempotency key row; `first` omits the separating comma.
pub fn key_row(out: &mut Vec<u8>, first: bool, key: &str, entry: &KeyEntry) {
    if !first {
        out.push(b',');
    }
    let row = (key, &*entry.fingerprint, entry.reply.as_json());
    serde_json::to_writer(&mut *out, &row).expect("key row serialises");
}

/// Ends the key rows and opens the hold rows.
pub fn end_keys(out: &mut Vec<u8>) {
    out.extend_from_slice(br#"],"holds":["#);
}

/// Appends one hold row; `first` omits the separating comma.
pub fn hold_row(out: &mut Vec<u8>, first: bool, user: &str, hold: &Hold) {
    if !first {
        out.push(b',');
    }
    let parts: Vec<LotRow> = hold.parts.iter().map(LotRow::from).collect();
    let row = (
        hold.id,
        user,
        hold.amount,
        hold.captured,
        hold.created_at,
        hold.expires_at,
        hold.state,
        parts,
    );
    serde_json::to_writer(&mut *out, &row).expect("hold row serialises");
}

/// Ends the hold rows: the last bytes the digest covers.
pub fn end_holds(out: &mut Vec<u8>) {
    out.push(b']');
}

/// Ends the checkpoint with `digest`, the SHA-256 of every byte before.
pub fn seal(out: &mut Vec<u8>, digest: Sha256) {
    let digest = format!("{DIGEST_FIELD}\"{DIGEST_PREFIX}{:x}\"}}", digest.finalize());
    out.extend_from_slice(digest.as_bytes());
    out.push(b'\n');
}

/// How a digest names its algorithm.
const DIGEST_PREFIX: &str = "sha256:";

/// Writes a checkpoint file without monopolising the disk, and digests what it writes. The
/// journal's `fdatasync` is on every change's path, and one big flush of a checkpoint (48 MB
/// with a million accounts) queued ahead of it stalled replies by 10-20 ms. So the file is
/// flushed as it is written, a slice at a time, and after each flush the writer rests as
/// long as the flush took: the journal gets the disk at least half the time, and the final
/// fsync has little left.
pub struct PacedWriter {
    file: File,
    unflushed: usize,
    digest: Sha256,
}

impl PacedWriter {
    /// Flush after this many bytes (about half a millisecond of writing here).
    const SLICE: usize = 1 << 20;

    pub fn new(file: File) -> PacedWriter {
        PacedWriter {
            file,
            unflushed: 0,
            digest: Sha256::new(),
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.digest.update(bytes);
        io::Write::write_all(&mut self.file, bytes)?;
        self.unflushed += bytes.len();
        if self.unflushed >= Self::SLICE {
            let started = std::time::Instant::now();
            self.file.sync_data()?;
            std::thread::sleep(started.elapsed());
            self.unflushed = 0;
        }
        Ok(())
    }

    /// Ends the checkpoint with the digest of everything written (see [`seal`]).
    pub fn seal(self) -> io::Result<()> {
        let mut end = Vec::with_capacity(96);
        seal(&mut end, self.digest);
        let mut file = self.file;
        io::Write::write_all(&mut file, &end)
    }
}

/// A checkpoint as loaded.
pub struct Loaded {
    pub journal_offset: u64,
    pub next_seq: u64,
    pub accounts: AccountMap,
    pub keys: KeyMap,
    pub holds: HoldMap,
}

/// Loads the checkpoint at `path`, `None` if there is none. Any other problem is an error:
/// the caller must not start without the balances it holds.
pub fn load(path: &Path) -> Result<Option<Loaded>, OpenError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(OpenError::Io {
                path: path.into(),
                source,
            });
        }
    };
    let corrupt = |reason: String| OpenError::Corrupt {
        path: path.into(),
        line: 1,
        reason,
    };
    // The digest covers everything before its field: hashed beside the parsing.
    let (parsed, digest) = std::thread::scope(|scope| {
        let tail = bytes.len().saturating_sub(TAIL);
        let body = bytes[tail..]
            .windows(DIGEST_FIELD.len())
            .rposition(|window| window == DIGEST_FIELD.as_bytes())
            .map(|at| &bytes[..tail + at]);
        let hashing = body.map(|body| {
            std::thread::Builder::new()
                .spawn_scoped(scope, move || Sha256::digest(body))
                .map_err(|_| body)
        });
        let parsed = serde_json::from_slice::<SnapshotIn>(&bytes);
        let digest = hashing.map(|hashing| match hashing {
            Ok(thread) => thread.join().expect("hashing does not panic"),
            // No thread to spare: hash here.
            Err(body) => Sha256::digest(body),
        });
        (parsed, digest)
    });
    let sealed_as = |digest: Option<&str>| {
        let field = format!("{DIGEST_FIELD}\"{}\"}}", digest.unwrap_or_default());
        bytes.trim_ascii_end().ends_with(field.as_bytes())
    };
    let matches = |recorded: &str| {
        digest.is_some_and(|digest| {
            recorded.strip_prefix(DIGEST_PREFIX) == Some(&format!("{digest:x}"))
        })
    };
    let edited = "the checkpoint does not match its digest: it was changed after memesd wrote it (moved aside, memesd rebuilds the ledger from the journal alone)";
    let snapshot = match parsed {
        Ok(snapshot) => snapshot,
        // A row that does not read back (lots that do not add up to its balance, say) in a
        // sealed file that was edited: the edit is what to report.
        Err(_) if recorded_digest(&bytes).is_some_and(|d| !(sealed_as(Some(d)) && matches(d))) => {
            return Err(corrupt(edited.into()));
        }
        Err(e) => return Err(corrupt(format!("not a checkpoint: {e}"))),
    };
    if snapshot.format != FORMAT || !(VERSION_BEFORE_LOTS..=VERSION).contains(&snapshot.version) {
        return Err(corrupt(format!(
            "unsupported checkpoint format {:?} version {}",
            snapshot.format, snapshot.version
        )));
    }
    match (&snapshot.digest, digest) {
        (None, _) => tracing::info!(
            "{} has no digest (an older memesd wrote it): only `memes audit` can check it",
            path.display()
        ),
        (Some(recorded), _) => {
            // The field must end the file, as written, for the digest to cover the rest.
            if !sealed_as(Some(recorded)) || !matches(recorded) {
                return Err(corrupt(edited.into()));
            }
        }
    }
    Ok(Some(Loaded {
        journal_offset: snapshot.journal_offset,
        next_seq: snapshot.next_seq,
        accounts: snapshot.accounts.0,
        keys: snapshot.keys.0,
        holds: snapshot.holds.0,
    }))
}

/// The digest a checkpoint's last bytes record, read without parsing the rest.
fn recorded_digest(bytes: &[u8]) -> Option<&str> {
    let tail = &bytes[bytes.len().saturating_sub(TAIL)..];
    let at = tail
        .windows(DIGEST_FIELD.len())
        .rposition(|window| window == DIGEST_FIELD.as_bytes())?;
    let value = tail[at + DIGEST_FIELD.len()..].trim_ascii_end();
    let value = value.strip_prefix(b"\"")?.strip_suffix(b"\"}")?;
    std::str::from_utf8(value).ok()
}

/// Where the digest field begins: the digest covers every byte before.
const DIGEST_FIELD: &str = r#","digest":"#;
/// The end of a checkpoint that holds the digest field (which is 84 bytes long).
const TAIL: usize = 128;

#[derive(Deserialize)]
struct SnapshotIn {
    format: String,
    version: u32,
    journal_offset: u64,
    next_seq: u64,
    accounts: AccountRows,
    keys: KeyRows,
    /// Absent from checkpoints written before holds.
    #[serde(default)]
    holds: HoldRows,
    /// Absent from checkpoints written by an older memesd.
    #[serde(default)]
    digest: Option<String>,
}

/// Account rows read straight into the map, without an intermediate Vec of a million rows.
struct AccountRows(AccountMap);
struct KeyRows(KeyMap);
#[derive(Default)]
struct HoldRows(HoldMap);

/// One hold: `[id, user, amount, captured, created_at, expires_at, state, parts]`.
#[derive(Deserialize)]
struct HoldRow(u64, String, u64, u64, i64, i64, HoldState, Vec<LotRow>);

impl<'de> Deserialize<'de> for HoldRows {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rows = Vec::<HoldRow>::deserialize(deserializer)?;
        let mut map = HoldMap::default();
        for HoldRow(id, user, amount, captured, created_at, expires_at, state, parts) in rows {
            let parts: Vec<Lot> = parts.into_iter().map(Lot::from).collect();
            let held: u64 = parts.iter().map(|part| part.remaining).sum();
            if held != amount || captured > amount {
                return Err(serde::de::Error::custom(format!(
                    "hold {id} holds {amount} tokens, captured {captured}, but its parts hold {held}"
                )));
            }
            let hold = Hold {
                id,
                amount,
                captured,
                parts,
                created_at,
                expires_at,
                state,
            };
            if map.insert(id, (user.into_boxed_str(), hold)).is_some() {
                return Err(serde::de::Error::custom(format!("hold {id} has two rows")));
            }
        }
        Ok(HoldRows(map))
    }
}

impl<'de> Deserialize<'de> for AccountRows {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RowsVisitor;
        impl<'de> Visitor<'de> for RowsVisitor {
            type Value = AccountRows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of [user, balance, last, tier, until, lots] rows")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AccountRows, A::Error> {
                let mut map = IndexMap::with_capacity_and_hasher(
                    seq.size_hint().unwrap_or(0),
                    Default::default(),
                );
                while let Some(AccountRow {
                    user,
                    balance,
                    last,
                    tier,
                    until,
                    lots,
                    holds,
                }) = seq.next_element::<AccountRow>()?
                {
                    if balance > MAX_BALANCE {
                        return Err(serde::de::Error::custom(format!(
                            "user {user:?}'s balance {balance} is above the maximum"
                        )));
                    }
                    let lots: Vec<Lot> = match lots {
                        Some(rows) => rows.into_iter().map(Lot::from).collect(),
                        None => rules::carried_over(balance).into_iter().collect(),
                    };
                    rules::check_lots(&lots, balance)
                        .map_err(|e| serde::de::Error::custom(format!("user {user:?}: {e}")))?;
                    let account = Account {
                        balance,
                        last,
                        tier,
                        until,
                        lots: Lots::from_vec(lots),
                        holds: holds.unwrap_or_default().into_boxed_slice(),
                    };
                    if map.contains_key(user.as_str()) {
                        return Err(serde::de::Error::custom(format!(
                            "user {user:?} has two rows"
                        )));
                    }
                    map.insert(user.into_boxed_str(), account);
                }
                Ok(AccountRows(map))
            }
        }
        deserializer.deserialize_seq(RowsVisitor)
    }
}

/// One lot of a row: `[id, amount, remaining, effective_at, expires_at, priority, kind]`.
#[derive(serde::Serialize, Deserialize)]
struct LotRow(u64, u64, u64, i64, Option<i64>, u8, LotKind);

impl From<&Lot> for LotRow {
    fn from(lot: &Lot) -> LotRow {
        LotRow(
            lot.id,
            lot.amount,
            lot.remaining,
            lot.effective_at,
            lot.expires_at,
            lot.priority,
            lot.kind,
        )
    }
}

impl From<LotRow> for Lot {
    fn from(
        LotRow(id, amount, remaining, effective_at, expires_at, priority, kind): LotRow,
    ) -> Lot {
        Lot {
            id,
            amount,
            remaining,
            effective_at,
            expires_at,
            priority,
            kind,
        }
    }
}

/// An account row: five fields, and its lots from version 2 on.
struct AccountRow {
    user: String,
    balance: u64,
    last: u64,
    tier: Tier,
    until: Option<i64>,
    lots: Option<Vec<LotRow>>,
    holds: Option<Vec<u64>>,
}

impl<'de> Deserialize<'de> for AccountRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = AccountRow;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("[user, balance, last, tier, until] and, from version 2, lots")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AccountRow, A::Error> {
                let missing = |i| serde::de::Error::invalid_length(i, &self);
                let row = AccountRow {
                    user: seq.next_element()?.ok_or_else(|| missing(0))?,
                    balance: seq.next_element()?.ok_or_else(|| missing(1))?,
                    last: seq.next_element()?.ok_or_else(|| missing(2))?,
                    tier: seq.next_element()?.ok_or_else(|| missing(3))?,
                    until: seq.next_element()?.ok_or_else(|| missing(4))?,
                    lots: seq.next_element()?,
                    holds: seq.next_element()?,
                };
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(8, &self));
                }
                Ok(row)
            }
        }
        deserializer.deserialize_seq(RowVisitor)
    }
}

impl<'de> Deserialize<'de> for KeyRows {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RowsVisitor;
        impl<'de> Visitor<'de> for RowsVisitor {
            type Value = KeyRows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of [key, fingerprint, reply] rows")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyRows, A::Error> {
                let mut map = IndexMap::with_capacity_and_hasher(
                    seq.size_hint().unwrap_or(0),
                    Default::default(),
                );
                while let Some((key, fingerprint, reply)) =
                    seq.next_element::<(String, String, StoredReply)>()?
                {
                    let entry = KeyEntry {
                        fingerprint: fingerprint.into_boxed_str(),
                        reply,
                    };
                    if map.contains_key(key.as_str()) {
                        return Err(serde::de::Error::custom(format!(
                            "idempotency key {key:?} has two rows"
                        )));
                    }
                    map.insert(key.into_boxed_str(), entry);
                }
                Ok(KeyRows(map))
            }
        }
        deserializer.deserialize_seq(RowsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_accounts_and_keys() {
        let mut out = Vec::new();
        begin(&mut out, 42, 7);
        let a = Account {
            balance: 5,
            last: 40,
            tier: Tier::Premium,
            until: Some(99),
            lots: Lots::from_vec(vec![
                Lot {
                    id: 3,
                    amount: 4,
                    remaining: 2,
                    effective_at: 1,
                    expires_at: Some(500),
                    priority: 10,
                    kind: LotKind::Promo,
                },
                rules::carried_over(3).unwrap(),
            ]),
            holds: vec![9].into_boxed_slice(),
        };
        let b = Account::empty(0);
        account_row(&mut out, true, "a\"x", &a);
        account_row(&mut out, false, "b", &b);
        begin_keys(&mut out);
        let entry = KeyEntry {
            fingerprint: "fp".into(),
            reply: StoredReply::parse(r#"{"x":1}"#.into()).unwrap(),
        };
        key_row(&mut out, true, "k", &entry);
        end_keys(&mut out);
        let hold = Hold {
            id: 9,
            amount: 3,
            captured: 0,
            parts: vec![Lot {
                remaining: 3,
                ..rules::carried_over(5).unwrap()
            }],
            created_at: 8,
            expires_at: 600,
            state: HoldState::Open,
        };
        hold_row(&mut out, true, "a\"x", &hold);
        end_holds(&mut out);
        let digest = Sha256::new_with_prefix(&out);
        seal(&mut out, digest);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.json");
        std::fs::write(&path, &out).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!((loaded.journal_offset, loaded.next_seq), (42, 7));
        assert_eq!(loaded.accounts.get("a\"x"), Some(&a));
        assert_eq!(loaded.accounts.get_index(1).map(|(k, _)| &**k), Some("b"));
        assert_eq!(loaded.keys["k"].reply.as_str(), r#"{"x":1}"#);
        assert_eq!(loaded.holds[&9], ("a\"x".into(), hold));
        assert!(load(&dir.path().join("none.json")).unwrap().is_none());
        // Written before lots: a row's balance is one carried-over lot.
        let old = br#"{"format":"memes-snapshot","version":1,"journal_offset":0,"next_seq":2,"accounts":[["u",7,0,"free",null]],"keys":[]}"#;
        std::fs::write(&path, old).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        assert_eq!(
            loaded.accounts["u"].lots(),
            [rules::carried_over(7).unwrap()]
        );
        std::fs::write(&path, b"{\"format\":\"memes-snapshot\"").unwrap();
        assert!(matches!(load(&path), Err(OpenError::Corrupt { .. })));
    }
}

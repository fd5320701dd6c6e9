//! An entry as ledgers record it, with what it did to the account's lots: the shape the file
//! store's journal lines and the [dump](super::dump) share, so that exporting a journal is a
//! translation line by line and importing reads what the journal wrote.
//!
//! In JSON: `kind`, `delta`, `balance` as before lots, then, left out when empty, a credit's
//! `lot` (the terms of the lot it opened, whose id is the entry's seq and whose amount is its
//! delta: `{}` for the defaults), a debit's or an expiry's `from` (`[[lot id, tokens],…]`),
//! an expiry's `at` (its lot's `expires_at`); a hold's entries name their `hold` (a hold's
//! `at` is its expiry, a release's the same instant), a capture what it `captured`; a refund
//! names the charge it `reverses`, what it `refunded` of it, what went back `from` lot by lot
//! and, for each lot it re-opened (emptied since the charge), the lot as it was (`reopened`:
//! `[{"id","amount","effective_at", its terms},…]`). Entries written before lots have none of these;
//! readers judge them by the migration rule ([`super::rules::carried_over`]).
//!
//! This module owns the shape; what the entries mean is [`super::rules`]'.

use crate::domain::{DEFAULT_PRIORITY, Entry, EntryKind, Lot, LotKind, LotTake, LotTerms};
use crate::store::rules::{Posting, Recorded};
use serde::{Deserialize, Serialize};

/// One entry as a ledger records it: the entry, and what it did to the account's lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEntry {
    pub kind: EntryKind,
    pub delta: i64,
    pub balance: u64,
    /// An expiry's date (milliseconds since the epoch): its lot's `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// The terms of the lot a credit opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<TermsRecord>,
    /// What a debit, an expiry or a hold took: `[lot id, tokens]` pairs; what a capture, a
    /// void or a release gave back.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "takes")]
    pub from: Vec<LotTake>,
    /// The hold a hold, capture, void or release entry is about (a hold entry's `at` is the
    /// hold's expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<u64>,
    /// What a capture spent (tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<u64>,
    /// The charge a refund reverses (its seq).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<u64>,
    /// Tokens of that charge a refund reversed (its delta, plus what expired at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<u64>,
    /// The lots a refund re-opened, as they were (their `remaining` is not recorded: it is
    /// what `from` gives each).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "reopened")]
    pub reopened: Vec<Lot>,
}

impl RecordedEntry {
    /// An entry that says nothing about lots (as lines before lots were).
    pub fn plain(entry: Entry) -> RecordedEntry {
        RecordedEntry {
            kind: entry.kind,
            delta: entry.delta,
            balance: entry.balance,
            at: None,
            lot: None,
            from: Vec::new(),
            hold: None,
            captured: None,
            reverses: None,
            refunded: None,
            reopened: Vec::new(),
        }
    }

    /// Whether it says anything about lots (an entry written before lots does not; nor does
    /// an `expire`, which always names its lot, exist before lots).
    pub fn names_lots(&self) -> bool {
        self.lot.is_some()
            || !self.from.is_empty()
            || self.at.is_some()
            || self.hold.is_some()
            || self.reverses.is_some()
            || self.kind == EntryKind::Expire
    }

    /// When it took effect, if not when its line was written: an expiry or a release, at
    /// their `at` (a hold's `at` is when it will expire, not its own date).
    pub fn dated(&self) -> Option<i64> {
        match self.kind {
            EntryKind::Expire | EntryKind::Release => self.at,
            _ => None,
        }
    }

    pub fn entry(&self) -> Entry {
        Entry {
            kind: self.kind,
            delta: self.delta,
            balance: self.balance,
        }
    }

    /// What the entry says about lots, for [`crate::store::rules::replay_lots`].
    pub fn recorded(&self) -> Recorded<'_> {
        Recorded {
            opened: self.lot.map(TermsRecord::terms),
            from: &self.from,
            at: self.at,
            hold: self.hold,
            captured: self.captured,
            reverses: self.reverses,
            refunded: self.refunded,
            reopened: &self.reopened,
        }
    }
}

impl From<Posting> for RecordedEntry {
    fn from(posting: Posting) -> RecordedEntry {
        RecordedEntry {
            lot: posting.lot.map(|lot| TermsRecord {
                expires_at: lot.expires_at,
                priority: lot.priority,
                kind: lot.kind,
            }),
            at: posting.at,
            from: posting.from,
            hold: posting.hold,
            captured: posting.captured,
            reverses: posting.reverses,
            refunded: posting.refunded,
            reopened: posting.reopened,
            ..RecordedEntry::plain(posting.entry)
        }
    }
}

/// A lot's terms as a journal line records them, defaults left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(
        default = "default_priority",
        skip_serializing_if = "is_default_priority"
    )]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "is_paid")]
    pub kind: LotKind,
}

impl TermsRecord {
    pub fn terms(self) -> LotTerms {
        LotTerms {
            expires_at: self.expires_at,
            priority: self.priority,
            kind: self.kind,
        }
    }
}

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

fn is_default_priority(priority: &u8) -> bool {
    *priority == DEFAULT_PRIORITY
}

fn is_paid(kind: &LotKind) -> bool {
    *kind == LotKind::Paid
}

/// `reopened` as `[{"id","amount","effective_at", terms as [`TermsRecord`]},…]`.
mod reopened {
    use super::TermsRecord;
    use crate::domain::Lot;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Reopened {
        id: u64,
        amount: u64,
        effective_at: i64,
        #[serde(flatten)]
        terms: TermsRecord,
    }

    pub fn serialize<S: Serializer>(lots: &[Lot], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(lots.iter().map(|lot| Reopened {
            id: lot.id,
            amount: lot.amount,
            effective_at: lot.effective_at,
            terms: TermsRecord {
                expires_at: lot.expires_at,
                priority: lot.priority,
                kind: lot.kind,
            },
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Lot>, D::Error> {
        let lots = Vec::<Reopened>::deserialize(deserializer)?;
        Ok(lots
            .into_iter()
            .map(|lot| Lot {
                id: lot.id,
                amount: lot.amount,
                remaining: 0,
                effective_at: lot.effective_at,
                expires_at: lot.terms.expires_at,
                priority: lot.terms.priority,
                kind: lot.terms.kind,
            })
            .collect())
    }
}

/// `from` as `[[lot, tokens],…]`: short, as most lines have one.
mod takes {
    use crate::domain::LotTake;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(takes: &[LotTake], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(takes.iter().map(|take| (take.lot, take.tokens)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<LotTake>, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(deserializer)?;
        Ok(pairs
            .into_iter()
            .map(|(lot, tokens)| LotTake { lot, tokens })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_say_what_they_did_to_lots() {
        let entries = [
            RecordedEntry {
                lot: Some(TermsRecord {
                    expires_at: None,
                    priority: DEFAULT_PRIORITY,
                    kind: LotKind::Promo,
                }),
                ..RecordedEntry::plain(Entry {
                    kind: EntryKind::Welcome,
                    delta: 150,
                    balance: 150,
                })
            },
            RecordedEntry {
                at: Some(99),
                from: vec![LotTake { lot: 3, tokens: 4 }],
                ..RecordedEntry::plain(Entry {
                    kind: EntryKind::Expire,
                    delta: -4,
                    balance: 146,
                })
            },
            RecordedEntry {
                lot: Some(TermsRecord {
                    expires_at: Some(5),
                    priority: 7,
                    kind: LotKind::Paid,
                }),
                ..RecordedEntry::plain(Entry {
                    kind: EntryKind::Topup,
                    delta: 1,
                    balance: 147,
                })
            },
        ];
        let text = serde_json::to_string(&entries).unwrap();
        assert_eq!(
            text,
            r#"[{"kind":"welcome","delta":150,"balance":150,"lot":{"kind":"promo"}},{"kind":"expire","delta":-4,"balance":146,"at":99,"from":[[3,4]]},{"kind":"topup","delta":1,"balance":147,"lot":{"expires_at":5,"priority":7}}]"#
        );
        let back: Vec<RecordedEntry> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, entries);
        let plain: RecordedEntry =
            serde_json::from_str(r#"{"kind":"topup","delta":1,"balance":1,"lot":{}}"#).unwrap();
        assert_eq!(plain.lot.map(TermsRecord::terms), Some(LotTerms::default()));
    }
}

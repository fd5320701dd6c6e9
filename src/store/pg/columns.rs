//! Rows of `entries` and `idempotency_keys` gathered column by column, so that any number of
//! them is written by one statement (`INSERT … SELECT FROM unnest(…)`): the batch writer's
//! and the importer's shape, written once. Entries carry what they did to lots: a credit's
//! lot terms and an expiry's date in their own columns, a debit's takes as `lot_takes` rows
//! (each naming its entry by its row number among the columns, 1-based, since the writer
//! learns the entry's `seq` only in the statement).

use crate::domain::{Lot, LotKind, LotTake, Tier};
use crate::store::recorded::RecordedEntry;
use tokio_postgres::types::ToSql;

/// `entries` rows but their `seq` (drawn from the sequence, or given by the importer).
#[derive(Default)]
pub struct EntryColumns {
    time: Vec<i64>,
    user: Vec<String>,
    kind: Vec<&'static str>,
    delta: Vec<i64>,
    balance: Vec<i64>,
    key: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    memes: Vec<Option<String>>,
    tier: Vec<Option<&'static str>>,
    until: Vec<Option<i64>>,
    lot_expires: Vec<Option<i64>>,
    lot_priority: Vec<Option<i16>>,
    lot_kind: Vec<Option<&'static str>>,
    at: Vec<Option<i64>>,
    hold: Vec<Option<i64>>,
    captured: Vec<Option<i64>>,
    reverses: Vec<Option<i64>>,
    refunded: Vec<Option<i64>>,
    /// `lot_takes` rows: the entry's row number, the take's place in its `from`, lot, tokens.
    take_row: Vec<i64>,
    take_ord: Vec<i32>,
    take_lot: Vec<i64>,
    take_tokens: Vec<i64>,
    /// `reopened_lots` rows: the refund entry's row number, and the lot as it was.
    reopened_row: Vec<i64>,
    reopened: LotColumns,
}

/// What a request's own entry carries beyond its amounts. A request that opens an account
/// has two entries, the welcome grant then its own; the grant carries none of this.
pub struct Extras<'a> {
    pub key: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// The memes delivered, as an array literal ([`super::array_literal`]).
    pub memes: Option<String>,
    pub tier: Option<Tier>,
    pub until: Option<i64>,
}

impl EntryColumns {
    /// Appends one request's entries, its own (with `extras`) last.
    pub fn push_request(
        &mut self,
        time: i64,
        user: &str,
        entries: &[RecordedEntry],
        extras: Extras,
    ) {
        let Some((own, grants)) = entries.split_last() else {
            return;
        };
        for entry in grants {
            self.push(time, user, entry);
            self.key.push(None);
            self.reason.push(None);
            self.memes.push(None);
            self.tier.push(None);
            self.until.push(None);
        }
        self.push(time, user, own);
        self.key.push(extras.key.map(str::to_string));
        self.reason.push(extras.reason.map(str::to_string));
        self.memes.push(extras.memes);
        self.tier.push(extras.tier.map(Tier::as_str));
        self.until.push(extras.until);
    }

    fn push(&mut self, time: i64, user: &str, entry: &RecordedEntry) {
        self.time.push(time);
        self.user.push(user.to_string());
        self.kind.push(entry.kind.as_str());
        self.delta.push(entry.delta);
        self.balance.push(entry.balance as i64);
        let terms = entry.lot.map(|lot| lot.terms());
        self.lot_expires.push(terms.and_then(|t| t.expires_at));
        self.lot_priority.push(terms.map(|t| i16::from(t.priority)));
        self.lot_kind.push(terms.map(|t| t.kind.as_str()));
        self.at.push(entry.at);
        self.hold.push(entry.hold.map(|id| id as i64));
        self.captured
            .push(entry.captured.map(|tokens| tokens as i64));
        self.reverses.push(entry.reverses.map(|seq| seq as i64));
        self.refunded
            .push(entry.refunded.map(|tokens| tokens as i64));
        let row = self.user.len() as i64;
        for (ord, take) in entry.from.iter().enumerate() {
            self.take_row.push(row);
            self.take_ord.push(ord as i32 + 1);
            self.take_lot.push(take.lot as i64);
            self.take_tokens.push(take.tokens as i64);
        }
        for lot in &entry.reopened {
            self.reopened_row.push(row);
            // The lots columns' user stands unused: a re-opened lot is its refund's user's.
            self.reopened.push(user, lot);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// Rows gathered so far.
    pub fn len(&self) -> usize {
        self.user.len()
    }

    /// The lot, hold and refund columns as statement parameters: lot_expires_ms,
    /// lot_priority, lot_kind, at_ms, hold_id, captured, reverses, refunded.
    pub fn lot_params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.lot_expires,
            &self.lot_priority,
            &self.lot_kind,
            &self.at,
            &self.hold,
            &self.captured,
            &self.reverses,
            &self.refunded,
        ]
    }

    /// The `reopened_lots` rows as statement parameters: the refund's row number (1-based),
    /// then lot id, amount, effective_ms, expires_ms, priority, kind.
    pub fn reopened_params(&self) -> [&(dyn ToSql + Sync); 7] {
        let [_, id, amount, _, effective, expires, priority, kind] = self.reopened.params();
        [
            &self.reopened_row,
            id,
            amount,
            effective,
            expires,
            priority,
            kind,
        ]
    }

    /// Whether any refund re-opened a lot.
    pub fn reopens(&self) -> bool {
        !self.reopened_row.is_empty()
    }

    /// The `lot_takes` rows as statement parameters: entry row number (1-based), ord, lot,
    /// tokens.
    pub fn take_params(&self) -> [&(dyn ToSql + Sync); 4] {
        [
            &self.take_row,
            &self.take_ord,
            &self.take_lot,
            &self.take_tokens,
        ]
    }

    /// The entry row number (1-based) of each take, for a writer that knows every row's seq.
    pub fn take_rows(&self) -> &[i64] {
        &self.take_row
    }

    /// The columns as statement parameters, in the order of `entries` (time_ms, user_id,
    /// kind, delta, balance, key, reason, memes, tier, until_ms).
    pub fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.time,
            &self.user,
            &self.kind,
            &self.delta,
            &self.balance,
            &self.key,
            &self.reason,
            &self.memes,
            &self.tier,
            &self.until,
        ]
    }
}

/// `idempotency_keys` rows.
#[derive(Default)]
pub struct KeyColumns {
    key: Vec<String>,
    fingerprint: Vec<String>,
    reply: Vec<String>,
}

impl KeyColumns {
    pub fn push(&mut self, key: &str, fingerprint: &str, reply: &str) {
        self.key.push(key.to_string());
        self.fingerprint.push(fingerprint.to_string());
        self.reply.push(reply.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.key.is_empty()
    }

    /// The columns as statement parameters: key, fingerprint, reply.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.key, &self.fingerprint, &self.reply]
    }
}

/// `lots` rows: the lots a batch opened (or an import found), whole.
#[derive(Default)]
pub struct LotColumns {
    user: Vec<String>,
    id: Vec<i64>,
    amount: Vec<i64>,
    remaining: Vec<i64>,
    effective: Vec<i64>,
    expires: Vec<Option<i64>>,
    priority: Vec<i16>,
    kind: Vec<&'static str>,
}

impl LotColumns {
    pub fn push(&mut self, user: &str, lot: &Lot) {
        self.user.push(user.to_string());
        self.id.push(lot.id as i64);
        self.amount.push(lot.amount as i64);
        self.remaining.push(lot.remaining as i64);
        self.effective.push(lot.effective_at);
        self.expires.push(lot.expires_at);
        self.priority.push(i16::from(lot.priority));
        self.kind.push(lot.kind.as_str());
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// The columns as statement parameters, in the order of `lots` (user_id, id, amount,
    /// remaining, effective_ms, expires_ms, priority, kind).
    pub fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.user,
            &self.id,
            &self.amount,
            &self.remaining,
            &self.effective,
            &self.expires,
            &self.priority,
            &self.kind,
        ]
    }
}

/// A lot as a `lots` row holds it: columns id, amount, remaining, effective_ms, expires_ms,
/// priority, kind, from `first` on.
pub fn lot_from(row: &tokio_postgres::Row, first: usize) -> Lot {
    Lot {
        id: row.get::<_, i64>(first) as u64,
        amount: row.get::<_, i64>(first + 1) as u64,
        remaining: row.get::<_, i64>(first + 2) as u64,
        effective_at: row.get(first + 3),
        expires_at: row.get(first + 4),
        priority: row.get::<_, i16>(first + 5).clamp(0, 100) as u8,
        kind: lot_kind_from(row.get(first + 6)),
    }
}

/// A lot's kind as a `kind` column holds it (the schema allows only `paid` and `promo`).
pub fn lot_kind_from(kind: &str) -> LotKind {
    match kind {
        "promo" => LotKind::Promo,
        _ => LotKind::Paid,
    }
}

/// What an entry took from each lot, as two parallel arrays of a query hold it (lot ids and
/// tokens; `NULL` for an entry that took from none).
pub fn takes_from(lots: Option<Vec<i64>>, tokens: Option<Vec<i64>>) -> Vec<LotTake> {
    lots.unwrap_or_default()
        .into_iter()
        .zip(tokens.unwrap_or_default())
        .map(|(lot, tokens)| LotTake {
            lot: lot as u64,
            tokens: tokens as u64,
        })
        .collect()
}

/// A lot whose id is known, the rest of it from columns amount, effective_ms, expires_ms,
/// priority, kind from `first` on (a part's or a re-opened lot's), holding nothing yet.
pub fn lot_from_at(row: &tokio_postgres::Row, id: u64, first: usize) -> Lot {
    Lot {
        id,
        amount: row.get::<_, i64>(first) as u64,
        remaining: 0,
        effective_at: row.get(first + 1),
        expires_at: row.get(first + 2),
        priority: row.get::<_, i16>(first + 3).clamp(0, 100) as u8,
        kind: lot_kind_from(row.get(first + 4)),
    }
}

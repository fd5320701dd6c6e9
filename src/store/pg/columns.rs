//! Rows of `entries` and `idempotency_keys` gathered column by column, so that any number of
//! them is written by one statement (`INSERT … SELECT FROM unnest(…)`): the batch writer's
//! and the importer's shape, written once.

use crate::domain::{Entry, Tier};
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
    pub fn push_request(&mut self, time: i64, user: &str, entries: &[Entry], extras: Extras) {
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

    fn push(&mut self, time: i64, user: &str, entry: &Entry) {
        self.time.push(time);
        self.user.push(user.to_string());
        self.kind.push(entry.kind.as_str());
        self.delta.push(entry.delta);
        self.balance.push(entry.balance as i64);
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
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

//! The vocabulary every part of memes shares: tiers, ledger entry kinds, the closed set of
//! outcome codes, the limits of the money, the views of accounts, histories and audits, and
//! time as the ledger keeps it (its clock, instants as text, durations as people write them).
//!
//! It depends on nothing else in the crate. The wire protocol, the service and every store
//! speak these words; none of them owns them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The largest balance an account may hold, in tokens: 2^53 - 1, so that every balance is
/// exact in any JSON consumer (JavaScript numbers included).
pub const MAX_BALANCE: u64 = (1 << 53) - 1;

/// The closed set of error codes scripts branch on. `message` is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field.
    BadRequest,
    /// Well-formed but outside the allowed values (lat 91, empty user id, amount 0, ...).
    InvalidArgument,
    /// `op` names no operation.
    UnknownOp,
    /// The request exceeded the front's size limit; a socket connection is closed after this reply.
    LineTooLong,
    /// The change would take a balance below zero; nothing changed.
    InsufficientTokens,
    /// Unknown user (for reads), or no meme matches the query.
    NotFound,
    /// The caller may not do this (admin-only operation, premium-only feature, bad token).
    NotAllowed,
    /// An idempotency key was reused with different parameters; nothing changed.
    IdempotencyConflict,
    /// The per-user rate limit was exceeded; try again later. Nothing was charged.
    RateLimited,
    /// The daemon is at its connection limit; try again later.
    Busy,
    /// The ledger cannot be written (disk full, I/O error); nothing changed. Reads still work.
    Unavailable,
    /// A bug or an unexpected failure inside the daemon.
    Internal,
    /// No credential, or one that is not valid (HTTP only: the socket knows its peers).
    Unauthorized,
    /// The request is larger than the front accepts (HTTP only; the socket says
    /// `line_too_long`).
    PayloadTooLarge,
    /// The hold expired (at its `expires_at`, its tokens went back): it can no longer be
    /// captured or voided; nothing changed.
    HoldExpired,
    /// The hold was already captured or voided; nothing changed.
    HoldClosed,
}

impl ErrorCode {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::InsufficientTokens => "insufficient_tokens",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Busy => "busy",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HoldExpired => "hold_expired",
            ErrorCode::HoldClosed => "hold_closed",
        }
    }
}

impl ErrorCode {
    /// The HTTP status the code is answered with: the one table of them. The HTTP front
    /// answers with it, and a client reads a bare status back with
    /// [`from_http_status`](Self::from_http_status).
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidArgument | ErrorCode::UnknownOp => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::InsufficientTokens => 402,
            ErrorCode::NotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::IdempotencyConflict | ErrorCode::HoldExpired | ErrorCode::HoldClosed => 409,
            ErrorCode::LineTooLong | ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Busy | ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The code a status stands for in a response that carries no code of ours (made by a
    /// framework or a proxy): the code answered with that status, the most general one
    /// where several share it. `None` for a status no code is answered with.
    pub fn from_http_status(status: u16) -> Option<ErrorCode> {
        // Derived from `http_status`, so that the two directions cannot disagree.
        const GENERAL: [ErrorCode; 10] = [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::InsufficientTokens,
            ErrorCode::NotAllowed,
            ErrorCode::NotFound,
            ErrorCode::IdempotencyConflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        GENERAL
            .into_iter()
            .find(|code| code.http_status() == status)
    }

    /// The outcome code of a response that carries none of ours (made by the HTTP server
    /// before any handler ran, or by a proxy): the code the status is answered with
    /// ([`from_http_status`](Self::from_http_status)), else the client's (`bad_request`) for
    /// another 4xx, `unavailable` for a gateway's 502 or 504 (memesd is not there), and ours
    /// (`internal`) for another 5xx. `None` for a status that is no error. The HTTP front
    /// counts its responses by it and the CLI's HTTP client reads refusals back by it.
    pub fn of_bare_status(status: u16) -> Option<ErrorCode> {
        match status {
            ..400 => None,
            status => Some(Self::from_http_status(status).unwrap_or(match status {
                400..=499 => ErrorCode::BadRequest,
                502 | 504 => ErrorCode::Unavailable,
                _ => ErrorCode::Internal,
            })),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account's tier. An expired premium entitlement counts as `free`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Free,
    Premium,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Premium => "premium",
        }
    }
}

/// An account as the service sees it, in every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountView {
    /// Tokens.
    pub balance: u64,
    /// The stored tier; see [`AccountView::tier_at`] for the effective one.
    pub tier: Tier,
    /// End of a premium entitlement, milliseconds since the epoch; `None` means no end.
    pub until: Option<i64>,
}

impl AccountView {
    /// The tier in force at `now_ms`: an expired entitlement counts as free.
    pub fn tier_at(&self, now_ms: i64) -> Tier {
        match (self.tier, self.until) {
            (Tier::Premium, Some(until)) if until <= now_ms => Tier::Free,
            (tier, _) => tier,
        }
    }
}

/// One balance change as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    /// Tokens added (positive) or removed (negative).
    pub delta: i64,
    /// The account's balance after this entry.
    pub balance: u64,
}

/// Where a history page continues. Opaque: each store makes and reads its own; callers only
/// pass back what a page's `next` gave them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryCursor(String);

impl HistoryCursor {
    /// A cursor a store made.
    pub fn new(text: String) -> HistoryCursor {
        HistoryCursor(text)
    }

    /// A cursor as a client sent it back (not yet checked: the store does that).
    pub fn from_client(text: &str) -> HistoryCursor {
        HistoryCursor(text.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A page of a user's history: entries oldest first, and where older ones continue.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub entries: Vec<HistoryEntry>,
    pub next: Option<HistoryCursor>,
    /// Set when the page was read from a standby, no primary being reachable.
    pub stale: Option<Stale>,
}

/// A read that the primary could not serve (none could be reached: a failover under way)
/// and a standby did: who answered and how fresh the answer is. Changes committed after
/// `as_of` may be missing from it; nothing in it is older than the ledger was at `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stale {
    /// The server that answered, as it names itself (`10.0.0.2:5432`, `/run/postgresql:5432`):
    /// a standby, or a server refusing writes.
    pub from: String,
    /// Every change committed up to this instant is in the reply (RFC 3339): on a standby the
    /// commit time of the last transaction it replayed, on a server that is not replaying
    /// anything the time of the read. Absent when a standby has replayed no transaction since
    /// it started, so how fresh it is cannot be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Seconds from `as_of` to the read, by the server's clock: the most the reply can be
    /// behind. Not a replication lag: a primary that committed nothing for a while leaves a
    /// large age on a standby that is fully up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<f64>,
}

/// Milliseconds since the Unix epoch, the ledger's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC, millisecond precision when needed).
pub fn format_instant(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The kind of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The one-time grant when an account opens.
    Welcome,
    /// Tokens spent on a delivered meme.
    Charge,
    /// Tokens added by an admin or a payment.
    Topup,
    /// Tokens removed by an admin (a negative top-up).
    Deduct,
    /// A tier change; moves no tokens.
    Entitle,
    /// What was left of a lot when it expired, leaving the balance (dated its `expires_at`).
    Expire,
    /// Tokens set aside by a hold: out of the lots (in burn order) and the balance until the
    /// hold is captured, voided or expires.
    Hold,
    /// A hold captured: what it held is spent, but for the rest, which goes back to the lots
    /// it came from (the entry's delta).
    Capture,
    /// A hold voided: all it held goes back to the lots it came from.
    Void,
    /// A hold expired: all it held went back, dated its `expires_at`.
    Release,
    /// (Part of) a charge given back by an admin: to the lots the charge took it from (a
    /// part whose lot has expired expires at once); the entry names the charge it
    /// `reverses`.
    Refund,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Welcome => "welcome",
            EntryKind::Charge => "charge",
            EntryKind::Topup => "topup",
            EntryKind::Deduct => "deduct",
            EntryKind::Entitle => "entitle",
            EntryKind::Expire => "expire",
            EntryKind::Hold => "hold",
            EntryKind::Capture => "capture",
            EntryKind::Void => "void",
            EntryKind::Release => "release",
            EntryKind::Refund => "refund",
        }
    }
}

/// The priority a lot gets unless told otherwise; lower is spent first.
pub const DEFAULT_PRIORITY: u8 = 50;
/// The highest priority a lot may have (the lowest is 0).
pub const MAX_PRIORITY: u8 = 100;

/// Where a lot's tokens came from: paid for, or given (the welcome grant, a `--promo`
/// top-up). Of two lots otherwise alike, promo tokens are spent first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LotKind {
    #[default]
    Paid,
    Promo,
}

impl LotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LotKind::Paid => "paid",
            LotKind::Promo => "promo",
        }
    }
}

/// What a credit asks of the lot it opens: when it expires, how early it is spent, its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotTerms {
    /// Milliseconds since the epoch; `None`: never.
    pub expires_at: Option<i64>,
    /// 0-100, lower spent first.
    pub priority: u8,
    pub kind: LotKind,
}

impl Default for LotTerms {
    fn default() -> Self {
        LotTerms {
            expires_at: None,
            priority: DEFAULT_PRIORITY,
            kind: LotKind::Paid,
        }
    }
}

/// Tokens credited together (the welcome grant, one top-up): what is left of them, and until
/// when they may be spent (from the credit on, until `expires_at`; see
/// `store::rules::spendable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot {
    /// The sequence number of the entry that credited it (0: the balance an account had
    /// when its ledger was written before lots).
    pub id: u64,
    /// Tokens credited.
    pub amount: u64,
    /// Tokens not yet spent.
    pub remaining: u64,
    /// Milliseconds since the epoch.
    pub effective_at: i64,
    /// Milliseconds since the epoch; `None`: never.
    pub expires_at: Option<i64>,
    /// 0-100, lower spent first.
    pub priority: u8,
    pub kind: LotKind,
}

/// The longest a hold may last (7 days, in milliseconds): tokens set aside for work in
/// progress, not a second balance.
pub const MAX_HOLD_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Where a hold is in its life: open until exactly one of the three ends.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    #[default]
    Open,
    Captured,
    Voided,
    Expired,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Open => "open",
            HoldState::Captured => "captured",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        }
    }
}

/// Tokens set aside from an account's lots for work in progress (see
/// `store::rules::decide_lots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Its id, unique in its ledger: the sequence number of its `hold` entry on the file
    /// store; drawn from a sequence of its own on PostgreSQL.
    pub id: u64,
    /// Tokens held.
    pub amount: u64,
    /// Tokens spent by its capture (0 unless captured).
    pub captured: u64,
    /// The lots it took from, as they were, each with `remaining` the tokens taken from it, in
    /// burn order: where what is not captured goes back.
    pub parts: Vec<Lot>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch: at this instant an open hold has expired.
    pub expires_at: i64,
    /// As recorded; an open hold past `expires_at` is expired whether or not it was recorded
    /// (`store::rules::hold_state_at`).
    pub state: HoldState,
}

/// Tokens a debit or an expiry took from one lot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LotTake {
    /// The lot's id.
    pub lot: u64,
    /// Tokens taken from it.
    pub tokens: u64,
}

/// One ledger entry as `history` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: EntryKind,
    /// Tokens added (positive) or removed (negative).
    pub delta: i64,
    /// Balance after this entry.
    pub balance: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Memes delivered by a charge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memes: Vec<String>,
    /// The tier set by an `entitle` entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// The lot a credit opened (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<u64>,
    /// The lots a charge, a deduction, an expiry or a hold took its tokens from, in burn
    /// order; for a capture, a void or a release, what went back to each lot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<LotTake>,
    /// The hold a `hold`, `capture`, `void` or `release` entry is about (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<u64>,
    /// The entry a `refund` reverses (its seq).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<u64>,
    /// Tokens of that entry a `refund` reversed: its delta, plus what expired at once
    /// because the lot it went back to had expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// `audit` reply data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditReport {
    /// True when every check held.
    pub ok: bool,
    /// Journal lines (transactions) replayed.
    pub transactions: u64,
    /// Ledger entries replayed.
    pub entries: u64,
    /// Accounts whose balance was checked against the sum of their entries.
    pub accounts: u64,
    /// Idempotency keys checked for uniqueness.
    pub keys: u64,
    /// Welcome grants checked (at most one per account).
    pub welcomes: u64,
    /// The first discrepancy found, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrepancy: Option<String>,
    /// The store audited, `file` or `postgres`: what `transactions` counts differs (journal
    /// lines; changes other than welcome grants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// The longest timeout accepted: beyond a year a timeout is a typo, and times this far
/// ahead stay clear of `Instant` overflow.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A timeout: plain seconds (`300`, `0.5`) or a duration with units (`5m`, `30s`,
/// `1h 30m`, `250ms`), more than zero and at most a year. Also `memes bench --duration`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let plain_seconds = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let parsed = match plain_seconds {
        true => humantime::parse_duration(&format!("{text}s")),
        false => humantime::parse_duration(text),
    };
    match parsed {
        Ok(duration) if duration.is_zero() => Err("must be more than zero".to_string()),
        Ok(duration) if duration > MAX_DURATION => Err("must be at most a year".to_string()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{error}; give seconds (300) or a duration with a unit (5m, 30s, 250ms)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_status_reads_back_as_a_code_answered_with_it() {
        for status in 100..600 {
            if let Some(code) = ErrorCode::from_http_status(status) {
                assert_eq!(code.http_status(), status, "{code}");
            }
        }
        for (status, code) in [
            (400, ErrorCode::BadRequest),
            (413, ErrorCode::PayloadTooLarge),
            (503, ErrorCode::Unavailable),
            (500, ErrorCode::Internal),
        ] {
            assert_eq!(ErrorCode::from_http_status(status), Some(code), "{status}");
        }
        assert_eq!(ErrorCode::from_http_status(200), None);
        assert_eq!(ErrorCode::from_http_status(418), None);
    }

    #[test]
    fn a_response_without_a_code_is_counted_by_its_status() {
        for status in [200, 204, 304] {
            assert_eq!(ErrorCode::of_bare_status(status), None, "{status}");
        }
        for (status, code) in [
            (402, ErrorCode::InsufficientTokens),
            (503, ErrorCode::Unavailable),
            (405, ErrorCode::BadRequest),
            (408, ErrorCode::BadRequest),
            (414, ErrorCode::BadRequest),
            (431, ErrorCode::BadRequest),
            (502, ErrorCode::Unavailable),
            (504, ErrorCode::Unavailable),
            (501, ErrorCode::Internal),
        ] {
            assert_eq!(ErrorCode::of_bare_status(status), Some(code), "{status}");
        }
    }

    #[test]
    fn durations_are_plain_seconds_or_humantime() {
        for (text, expected) in [
            ("300", Duration::from_secs(300)),
            ("0.5", Duration::from_millis(500)),
            ("5m", Duration::from_secs(300)),
            ("30s", Duration::from_secs(30)),
            ("1h 30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for text in [
            "nan",
            "NaN",
            "inf",
            "-5",
            "0",
            "0s",
            "",
            "5 parsecs",
            "400d",
            "1e3",
        ] {
            assert!(parse_duration(text).is_err(), "{text} accepted");
        }
    }
}

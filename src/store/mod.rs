//! The token store: per-user balances and tiers, kept as an auditable ledger.
//!
//! The service talks to a store through [`TokenStore`], an async trait: a call may await
//! its database. A change is decided by the pure rules in [`rules`] and applied atomically;
//! the call hands back a [`Commit`] that resolves once the change is durable. Replies that
//! report a change wait for their commit, while the caller goes on with the next request:
//! that is what lets the file store share one disk flush among many changes (group commit)
//! and pipeline a connection's requests. A store that commits before it returns (PostgreSQL)
//! hands back a commit that is already done.
//!
//! Nothing a store keeps for itself crosses the trait: accounts are [`AccountView`]s, history
//! cursors are opaque [`HistoryCursor`]s.
//!
//! - [`rules`]: the rules of the money, written once, used by every store.
//! - [`spec`]: from a `--store` spec to an open store.
//! - [`stored`]: the reply a keyed change stores for its retries, and its replay.
//! - [`dump`]: a whole ledger as a versioned stream that belongs to no store: what
//!   `memesd export` writes and `memesd import` reads, so that no store reads another's files.
//! - [`file`]: the embedded default store: journal, checkpoints, recovery, history, audit.
//! - [`pg`]: PostgreSQL, which several memesd hosts can share: group commit, constraints as a
//!   second line, migrations, import.
//! - `contract` (tests): the suite every store must pass.

#[cfg(test)]
mod contract;
pub mod dump;
pub mod file;
pub mod pg;
pub mod recorded;
pub mod rules;
pub mod spec;
pub mod stored;

pub use file::{FileStore, StoreConfig};
pub use stored::{Replayed, StoredReply};

use crate::domain::{
    AccountView, AuditReport, ErrorCode, HistoryCursor, HistoryPage, Hold, HoldState, Lot,
    LotTerms, MAX_BALANCE, Stale, Tier,
};
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Why a store operation was refused or failed. Each maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("user {user:?} has {balance} tokens, {needed} needed")]
    InsufficientTokens {
        user: String,
        balance: u64,
        needed: u64,
    },
    #[error("no account for user {0:?}")]
    UnknownUser(String),
    /// No hold with this id (or none of the user the request named).
    #[error("no hold {0}{1}")]
    UnknownHold(u64, String),
    /// No ledger entry with this seq (or none of the user the request named).
    #[error("no entry {0}{1}")]
    UnknownEntry(u64, String),
    /// The hold expired: its tokens went back at its expiry.
    #[error("hold {hold} expired at {at}: its tokens went back; nothing changed")]
    HoldExpired { hold: u64, at: String },
    /// The hold was captured or voided already.
    #[error("hold {hold} was already {state}; nothing changed")]
    HoldClosed { hold: u64, state: &'static str },
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict { key: String },
    #[error("the balance would exceed the maximum of {MAX_BALANCE} tokens")]
    BalanceOverflow,
    /// A change the rules refuse as asked (a lot expiring in the past, a priority out of
    /// range); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// A history cursor that this store did not make for this user.
    #[error("{0}")]
    BadCursor(String),
    #[error("the ledger cannot be written ({0}); nothing was changed, try again later")]
    Unavailable(String),
    /// Too much is waiting already; nothing was done.
    #[error("memesd is busy ({0}); try again later")]
    Busy(String),
    /// The ledger's database cannot be reached for a read.
    #[error("the ledger cannot be read ({0}); try again later")]
    Unreachable(String),
    /// The connection failed while a change was being committed: it may or may not have
    /// been applied. A retry with the same idempotency key is safe either way.
    #[error(
        "the ledger did not confirm the change ({0}); it may or may not have been applied: retry with the same idempotency key"
    )]
    Unconfirmed(String),
    #[error("ledger: {0}")]
    Internal(String),
}

impl StoreError {
    /// A cursor this store cannot read (not a reply's `next`).
    pub fn unreadable_cursor(cursor: &HistoryCursor) -> StoreError {
        StoreError::BadCursor(format!(
            "{:?} is not a history cursor from a reply's `next`",
            cursor.as_str()
        ))
    }

    /// A cursor from another user's history.
    pub fn foreign_cursor(user: &str) -> StoreError {
        StoreError::BadCursor(format!(
            "the history cursor is not one of user {user:?}'s; pass a `next` from their history"
        ))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::InsufficientTokens { .. } => ErrorCode::InsufficientTokens,
            StoreError::UnknownUser(_)
            | StoreError::UnknownHold(..)
            | StoreError::UnknownEntry(..) => ErrorCode::NotFound,
            StoreError::HoldExpired { .. } => ErrorCode::HoldExpired,
            StoreError::HoldClosed { .. } => ErrorCode::HoldClosed,
            StoreError::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            StoreError::BalanceOverflow | StoreError::BadCursor(_) | StoreError::Invalid(_) => {
                ErrorCode::InvalidArgument
            }
            StoreError::Unavailable(_)
            | StoreError::Unreachable(_)
            | StoreError::Unconfirmed(_) => ErrorCode::Unavailable,
            StoreError::Busy(_) => ErrorCode::Busy,
            StoreError::Internal(_) => ErrorCode::Internal,
        }
    }
}
/// Who holds a locked data directory, as its lock file records: ` (pid 4242, serving
/// /run/memes/memesd.sock)`, or nothing when it records no one.
fn holder(dir: &std::path::Path) -> String {
    crate::lockfile::read_owner(dir).map_or_else(String::new, |owner| {
        format!(" (pid {}, serving {})", owner.pid, owner.socket.display())
    })
}

/// Why a store could not be opened. The daemon refuses to start on any of these: starting
/// empty because a file was unreadable would silently destroy balances.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("another memesd is already using the data directory {}{}", .0.display(), holder(.0))]
    Locked(PathBuf),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// The time a store dates changes with and judges reads at (milliseconds since the Unix
/// epoch): the system clock in the daemon, a clock the test moves in the contract suite (lots
/// expire at an instant, and the suite must be able to reach it).
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock ([`crate::domain::now_ms`]).
    pub fn system() -> Clock {
        Clock(std::sync::Arc::new(crate::domain::now_ms))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(std::sync::Arc::new(now))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Resolves when a change (or, for reads, everything applied before them) is on disk.
#[must_use = "a change is only durable once its commit resolves"]
#[derive(Debug)]
pub struct Commit(Option<oneshot::Receiver<Result<(), String>>>);

impl Commit {
    /// A commit with nothing to wait for.
    pub fn done() -> Commit {
        Commit(None)
    }

    pub(crate) fn pending(rx: oneshot::Receiver<Result<(), String>>) -> Commit {
        Commit(Some(rx))
    }

    /// True if there is nothing to wait for.
    pub fn is_done(&self) -> bool {
        self.0.is_none()
    }

    /// Waits until durable; `Unavailable` if the write failed and the change was taken back.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => flatten(rx.await),
        }
    }

    /// [`Commit::wait`] for threads outside the async runtime.
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => flatten(rx.blocking_recv()),
        }
    }
}

fn flatten(
    received: Result<Result<(), String>, oneshot::error::RecvError>,
) -> Result<(), StoreError> {
    match received {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(StoreError::Unavailable(reason)),
        Err(_) => Err(StoreError::Unavailable("the journal writer stopped".into())),
    }
}

/// A request's idempotency key and canonical form: what must match for a retry to be a
/// retry.
#[derive(Debug, Clone, Copy)]
pub struct Idempotency<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

/// What an applied change did to its account, as its reply tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// Tokens after the change.
    pub balance: u64,
    /// The welcome grant (tokens) when this change opened the account: it was recorded just
    /// before the change and is part of `balance`. None for an account that already existed.
    pub welcome: Option<u64>,
    /// The hold a hold, capture or void made or ended, as it is after the change.
    pub hold: Option<HoldSummary>,
}

/// A hold, as a hold op's reply tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSummary {
    pub id: u64,
    /// Tokens held.
    pub amount: u64,
    /// Tokens a capture spent.
    pub captured: u64,
    /// Tokens that went back to the lots (a part whose lot had expired did not).
    pub returned: u64,
    pub state: HoldState,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

impl HoldSummary {
    /// `hold` as a change left it; `returned`: what that change gave back.
    pub fn of(hold: &Hold, returned: u64) -> HoldSummary {
        HoldSummary {
            id: hold.id,
            amount: hold.amount,
            captured: hold.captured,
            returned,
            state: hold.state,
            expires_at: hold.expires_at,
        }
    }
}

/// Builds the reply `data` that a keyed change stores for its retries, given what the change
/// did. Called inside the change's transaction: once, or again if a store retries that
/// transaction (a deadlock, a serialization failure), with what the retry decided.
pub type ReplyBuilder<T = Changed> = Box<dyn Fn(T) -> StoredReply + Send + Sync>;

/// A keyed change: its key and the reply to store with it.
pub type Keyed<'a> = KeyedAs<'a, Changed>;

/// A keyed change whose reply is made from a `T`.
pub struct KeyedAs<'a, T> {
    pub idem: Idempotency<'a>,
    pub reply: ReplyBuilder<T>,
}

/// The result of a change that may carry an idempotency key.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The change was applied; `T` describes it.
    Applied(T),
    /// The key was seen before with the same request: here is the reply it got then.
    Replayed(StoredReply),
}

impl<T> Outcome<T> {
    /// The same outcome with what describes an applied change mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Applied(applied) => Outcome::Applied(f(applied)),
            Outcome::Replayed(reply) => Outcome::Replayed(reply),
        }
    }
}

/// A charge for delivered memes.
pub struct ChargeRequest<'a> {
    pub user: &'a str,
    /// Tokens.
    pub cost: u64,
    /// Ids of what was delivered, kept with the ledger entry.
    pub memes: &'a [&'a str],
    pub keyed: Option<Keyed<'a>>,
}

/// A top-up (positive `amount`) or deduction (negative).
pub struct TopupChange<'a> {
    pub user: &'a str,
    /// Tokens.
    pub amount: i64,
    /// The lot a top-up opens: its expiry, priority and kind (defaults for a deduction).
    pub terms: LotTerms,
    pub reason: Option<&'a str>,
    pub keyed: Option<Keyed<'a>>,
}

/// A hold asked for: `amount` tokens of `user`'s, set aside for `ttl_ms` milliseconds.
pub struct HoldChange<'a> {
    pub user: &'a str,
    /// Tokens.
    pub amount: u64,
    /// Milliseconds (1 to [`crate::domain::MAX_HOLD_TTL_MS`]).
    pub ttl_ms: i64,
    pub keyed: Option<Keyed<'a>>,
}

/// How a hold is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// Spend `amount` of its tokens (all if `None`); the rest goes back.
    Capture { amount: Option<u64> },
    /// Give all its tokens back.
    Void,
}

/// A capture or a void of hold `hold`, which must be `user`'s when a user is named.
pub struct EndHold<'a> {
    pub hold: u64,
    pub user: Option<&'a str>,
    pub end: HoldEnd,
    /// Ids of what a capture paid for (a generated meme), kept with its ledger entry.
    pub memes: &'a [&'a str],
    pub keyed: Option<Keyed<'a>>,
}

/// A refund of entry `entry` (a charge), which must be `user`'s when a user is named:
/// `amount` tokens of it, all that is left of it if `None`.
pub struct RefundChange<'a> {
    pub entry: u64,
    pub user: Option<&'a str>,
    /// Tokens.
    pub amount: Option<u64>,
    pub keyed: Option<KeyedAs<'a, Refunded>>,
}

/// What an applied refund did, as its reply tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refunded {
    /// Tokens after the refund.
    pub balance: u64,
    /// The refund entry's seq.
    pub refund: u64,
    /// The entry it reversed (its seq).
    pub reverses: u64,
    /// Tokens of that entry it reversed.
    pub refunded: u64,
    /// Tokens that went back to the lots (a part whose lot had expired expired instead).
    pub returned: u64,
    /// Tokens of that entry left to refund after it.
    pub left: u64,
}

/// What readiness probes and metric scrapes read, often: cheap whatever the ledger's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHealth {
    pub accounts: u64,
    /// False while writes fail (disk full, I/O error, database unreachable or read-only) and
    /// changes are refused.
    pub writable: bool,
}

/// Counters for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub accounts: u64,
    pub entries: u64,
    /// False while writes fail (disk full, I/O error, database unreachable) and changes are
    /// refused.
    pub writable: bool,
    /// Set while the store's database cannot be reached: `accounts` and `entries` are then
    /// the last ones counted, not current.
    pub unreachable: Option<Unreachable>,
}

/// Where a store's database is that cannot be reached, why, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// Where the database is, as people may be told: hosts, ports, database, never a password.
    pub place: String,
    /// Since when (milliseconds since the Unix epoch) no host gave a usable connection.
    pub since_ms: i64,
    /// What each host answered.
    pub reason: String,
    /// When the last known counts were read (milliseconds since the Unix epoch); None if
    /// they never were since memesd started (they are 0 then).
    pub counted_ms: Option<i64>,
}

/// What the service needs from a token store. Every implementation decides changes with
/// [`rules`], applies each atomically, and passes the contract suite.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Charges for delivered memes; the balance after, or the reply stored under the key.
    async fn charge(
        &self,
        request: ChargeRequest<'_>,
    ) -> Result<(Outcome<u64>, Commit), StoreError>;
    /// Adds or deducts tokens; the balance after (and the welcome grant if the top-up opened
    /// the account), or the reply stored under the key.
    async fn topup(
        &self,
        change: TopupChange<'_>,
    ) -> Result<(Outcome<Changed>, Commit), StoreError>;
    /// The reply stored under a key, if it names the same request (a conflict otherwise).
    async fn replay(
        &self,
        idem: Idempotency<'_>,
    ) -> Result<Option<(StoredReply, Commit)>, StoreError>;
    /// Sets tokens aside in a hold (opening the account, with its welcome grant, if it is
    /// new): the balance after and the hold, or the reply stored under the key.
    async fn hold(&self, change: HoldChange<'_>) -> Result<(Outcome<Changed>, Commit), StoreError>;
    /// Captures or voids a hold: the balance after and the hold as it ended, or the reply
    /// stored under the key.
    async fn end_hold(&self, change: EndHold<'_>)
    -> Result<(Outcome<Changed>, Commit), StoreError>;
    /// Refunds (part of) a charge or a capture ([`rules::decide_refund`]): what the refund
    /// did, or the reply stored under the key.
    async fn refund(
        &self,
        change: RefundChange<'_>,
    ) -> Result<(Outcome<Refunded>, Commit), StoreError>;
    /// An account's current state; `UnknownUser` if it has none. What a change is decided
    /// on (a delivery's tier, say) reads this: never a standby's copy.
    async fn account(&self, user: &str) -> Result<(AccountView, Commit), StoreError>;
    /// An account for a read that needs no primary (`balance`): [`TokenStore::account`], or,
    /// on a replicated database while no primary can be reached, a standby's copy and how
    /// fresh it is. Only a store with standbys has anything to add.
    async fn read_account(
        &self,
        user: &str,
    ) -> Result<(AccountView, Option<Stale>, Commit), StoreError> {
        let (account, commit) = self.account(user).await?;
        Ok((account, None, commit))
    }
    /// The lots an account can spend now, in burn order, and its holds open now, oldest
    /// first; `UnknownUser` if it has none.
    async fn lots(&self, user: &str) -> Result<(Vec<Lot>, Vec<Hold>, Commit), StoreError>;
    /// An account as it was at `at` (milliseconds since the epoch), its balance, tier and
    /// spendable lots then: its entries recorded by then replayed by the rules
    /// ([`rules::account_at`]); after its last entry, what expiry alone leaves of it at `at`.
    /// `UnknownUser` if it had no entry by then. Reads only, and only what is durable. Like
    /// [`TokenStore::read_account`], it may come from a standby and then says so.
    async fn account_at(
        &self,
        user: &str,
        at: i64,
    ) -> Result<(rules::Past, Option<Stale>), StoreError>;
    /// Sets an account's tier (opening it if needed).
    async fn entitle(
        &self,
        user: &str,
        tier: Tier,
        until_ms: Option<i64>,
    ) -> Result<(AccountView, Commit), StoreError>;
    /// A page of a user's durable ledger entries: the newest `limit` older than the cursor
    /// (or than now), oldest first. Like [`TokenStore::read_account`], it may come from a
    /// standby while no primary can be reached, and then says so.
    async fn history(
        &self,
        user: &str,
        limit: usize,
        before: Option<&HistoryCursor>,
    ) -> Result<HistoryPage, StoreError>;
    /// Up to `limit` accounts in which something has ended by now that the ledger has not
    /// written yet: a lot past its `expires_at`, an open hold past its. What memesd's
    /// expirer settles; cheap however many accounts there are (an index by expiry).
    async fn due(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Writes the `expire` and `release` entries due by now in `user`'s account, exactly as
    /// its next change would write them first ([`rules::Change::Settle`]), and nothing else:
    /// how many it wrote. Nothing due (written already, by this host or another): 0, nothing
    /// written, not an error. `UnknownUser` if the account does not exist.
    async fn settle(&self, user: &str) -> Result<(u64, Commit), StoreError>;
    /// Checks the whole ledger's invariants against its stored balances.
    async fn audit(&self) -> Result<AuditReport, StoreError>;
    /// Every count, for `status`. On PostgreSQL, counting the entries reads the whole table,
    /// so what is asked often asks [`TokenStore::health`] instead.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Whether changes are accepted now, and how many accounts there are, without reading
    /// the entries. An unreachable store is reported as not writable.
    async fn health(&self) -> StoreHealth;
    /// Finishes every change already asked for (durably) and releases what the store holds
    /// (threads, connections); changes asked for afterwards are refused. Called once, when
    /// the fronts have stopped, inside the runtime: a database's connections need it, and a
    /// store that blocks to close does so on a blocking thread.
    async fn close(&self) -> std::io::Result<()>;
    /// Which kind of store this is (`file`, `postgres`), as logs and metrics name it.
    fn kind(&self) -> &'static str;
}

//! The token store: per-user balances and tiers, kept as an auditable ledger.
//!
//! The daemon talks to a store through [`TokenStore`], a small synchronous trait: each
//! change is decided and applied in memory at once and hands back a [`Commit`] that resolves
//! when the change is durable. Replies that report a change wait for their commit; the
//! caller can meanwhile go on with the next request, which is what lets many changes share
//! one disk flush. [`FileStore`] implements it with JSON files on local disk; another backend
//! (PostgreSQL, say) implements the same trait.
//!
//! [`file`] is the file store: journal, checkpoints, recovery, history and audit.

pub mod file;

pub use file::history::HistoryPage;
pub use file::ledger::{Account, Idempotency, Outcome, ReplyBuilder};
pub use file::{FileStore, StoreConfig};

use crate::domain::{AuditReport, ErrorCode, MAX_BALANCE, Tier};
use crate::protocol::{ErrorBody, HistoryCursor};
use serde_json::value::RawValue;
use std::path::PathBuf;
use tokio::sync::oneshot;

/// Why a store operation was refused or failed. Each maps to one protocol [`ErrorCode`].
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
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict { key: String },
    #[error("the balance would exceed the maximum of {MAX_BALANCE} tokens")]
    BalanceOverflow,
    #[error("the history cursor is not one of user {0:?}'s; pass a `next` from their history")]
    BadCursor(String),
    #[error("the ledger cannot be written ({0}); nothing was changed, try again later")]
    Unavailable(String),
    #[error("ledger: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::InsufficientTokens { .. } => ErrorCode::InsufficientTokens,
            StoreError::UnknownUser(_) => ErrorCode::NotFound,
            StoreError::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            StoreError::BalanceOverflow | StoreError::BadCursor(_) => ErrorCode::InvalidArgument,
            StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ErrorBody {
    fn from(error: StoreError) -> ErrorBody {
        ErrorBody::new(error.code(), error.to_string())
    }
}

/// Why a store could not be opened. The daemon refuses to start on any of these: starting
/// empty because a file was unreadable would silently destroy balances.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("another memesd is already using the data directory {0}")]
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

/// A charge for delivered memes.
pub struct ChargeRequest<'a> {
    pub user: &'a str,
    /// Tokens.
    pub cost: u64,
    /// Ids of the memes delivered, kept with the ledger entry.
    pub memes: &'a [&'a str],
    pub keyed: Option<(Idempotency<'a>, ReplyBuilder<'a>)>,
}

/// A top-up (positive `amount`) or deduction (negative).
pub struct TopupChange<'a> {
    pub user: &'a str,
    /// Tokens.
    pub amount: i64,
    pub reason: Option<&'a str>,
    pub keyed: Option<(Idempotency<'a>, ReplyBuilder<'a>)>,
}

/// Counters for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub accounts: u64,
    pub entries: u64,
    /// False while writes fail (disk full, I/O error) and changes are refused.
    pub writable: bool,
}

/// What the daemon needs from a token store. Implementations apply each change atomically
/// and in memory before returning, and hand back a [`Commit`] for its durability; they
/// enforce the rules of the money (see [`file::ledger`]).
pub trait TokenStore: Send + Sync + 'static {
    /// Charges for delivered memes; the balance after, or the reply stored under the key.
    fn charge(&self, request: &ChargeRequest) -> Result<(Outcome<u64>, Commit), StoreError>;
    /// Adds or deducts tokens; the balance after, or the reply stored under the key.
    fn topup(&self, change: &TopupChange) -> Result<(Outcome<u64>, Commit), StoreError>;
    /// The reply stored under a key, if it names the same request (a conflict otherwise).
    fn replay(&self, idem: &Idempotency) -> Result<Option<(Box<RawValue>, Commit)>, StoreError>;
    /// An account's current state; `UnknownUser` if it has none.
    fn account(&self, user: &str) -> Result<(Account, Commit), StoreError>;
    /// Sets an account's tier (opening it if needed).
    fn entitle(
        &self,
        user: &str,
        tier: Tier,
        until_ms: Option<i64>,
    ) -> Result<(Account, Commit), StoreError>;
    /// A page of a user's durable ledger entries: the newest `limit` older than the cursor
    /// (or than now), oldest first. Blocking: reads the journal.
    fn history(
        &self,
        user: &str,
        limit: usize,
        before: Option<HistoryCursor>,
    ) -> Result<HistoryPage, StoreError>;
    /// Replays the whole ledger and checks its invariants. Blocking: reads the journal.
    fn audit(&self) -> Result<AuditReport, StoreError>;
    fn stats(&self) -> StoreStats;
}

/// Milliseconds since the Unix epoch, the ledger's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

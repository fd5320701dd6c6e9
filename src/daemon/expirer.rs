//! The expirer: writes each `expire` and `release` entry shortly after the instant it is
//! dated, as a change of its own, instead of leaving it to the account's next change (which
//! may never come). What happens at an expiry can then be acted on when it happens.
//!
//! It owns only the pacing: every `--expire-every` it asks the store which accounts have
//! something due ([`TokenStore::due`]) and settles each ([`TokenStore::settle`]). The rule is
//! the one every change applies first ([`crate::store::rules::Change::Settle`]); the store
//! writes through its normal path (the file store's journal, group-committed; PostgreSQL's
//! batches, under each account's row lock). It never decides anything itself, and what it
//! writes is what the next change would have written, dated the same: reads judged the lots
//! at their own time already, so no balance a client sees changes when it runs.
//!
//! Several hosts sharing one database may all run it: a settle that finds nothing due (another
//! host wrote it first) writes nothing.

use crate::store::{StoreError, TokenStore};
use crate::telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Accounts settled per round (their settles go to the store together, so they share its
/// commits); while a round finds this many, the next one follows at once.
pub const ROUND: usize = 256;

/// Settles what is due every `every` until `stop` is cancelled; a round under way when it is
/// finishes first (its changes are durable or refused before the store is closed).
pub async fn run(store: Arc<dyn TokenStore>, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    // A slow round (a database failing over) is not followed by a burst of catch-up rounds.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        loop {
            match round(&*store).await {
                Ok(Round { due, written }) => {
                    if failing {
                        tracing::info!("the expirer writes expiries again");
                        failing = false;
                    }
                    // A full round that wrote something: more may be waiting. (One that
                    // wrote nothing keeps failing on the same accounts: wait for the tick.)
                    if due < ROUND || written == 0 || stop.is_cancelled() {
                        break;
                    }
                }
                Err(error) => {
                    // Said once per outage, not every second; the store's own health says
                    // the rest (writable, unreachable).
                    match failing {
                        false => tracing::warn!("the expirer cannot write expiries: {error}"),
                        true => tracing::debug!("the expirer cannot write expiries: {error}"),
                    }
                    failing = true;
                    break;
                }
            }
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Round {
    /// Accounts found due.
    due: usize,
    /// Entries written (and durable).
    written: u64,
}

/// Finds up to [`ROUND`] accounts with something due and settles them all at once. An error
/// when nothing could be asked or written; a settle refused for one account is logged and
/// the others go on.
async fn round(store: &dyn TokenStore) -> Result<Round, StoreError> {
    let due = store.due(ROUND).await?;
    let settles = due.iter().map(|user| async move {
        let (written, commit) = store.settle(user).await?;
        commit.wait().await?;
        Ok::<u64, StoreError>(written)
    });
    let settled = futures_util::future::join_all(settles).await;
    let mut written = 0;
    let mut refused = None;
    for (user, result) in due.iter().zip(settled) {
        match result {
            Ok(entries) => written += entries,
            Err(error @ (StoreError::Unavailable(_) | StoreError::Unreachable(_))) => {
                refused = Some(error);
            }
            Err(error) => tracing::error!("the expirer could not settle user {user:?}: {error}"),
        }
    }
    telemetry::expiries_written(written);
    match (refused, written) {
        (Some(error), 0) => Err(error),
        _ => Ok(Round {
            due: due.len(),
            written,
        }),
    }
}

//! Reads without a primary: while no PostgreSQL host gives a writable connection (a failover
//! under way: the old primary gone, the new one not promoted yet), `balance` and `history`
//! are read from any host of the connection string that accepts a session (a standby, most
//! likely), and say who answered and how fresh the answer is ([`Stale`]).
//!
//! Only then: while a primary is known, reads stay on it (a client reads its own writes, at
//! the primary's speed), and [`Standbys`] holds no connection until the first read it serves.
//! Changes never come here (they are refused while no primary is known), and nothing here
//! writes or decides anything about the money.

use super::primary::{self, first_to_connect};
use super::{PgConfig, PgOpenError, ReadError, lock};
use crate::domain::{Stale, format_instant};
use crate::store::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::{Client, Config};

/// How fresh what a server holds is, by its own clock, in milliseconds since the epoch:
/// everything committed up to the first column is there (a standby's last replayed commit;
/// a server replaying nothing holds everything it committed, so: the time of the read), and
/// the second is the time of the read, taken once so that a server replaying nothing is
/// exactly 0 s behind. Asked before the read itself, so that the read is at least as fresh.
const FRESHNESS: &str = "SELECT (extract(epoch FROM CASE WHEN pg_is_in_recovery()
                                     THEN pg_last_xact_replay_timestamp()
                                     ELSE now.at END) * 1000)::bigint,
                                (extract(epoch FROM now.at) * 1000)::bigint
                         FROM (SELECT clock_timestamp() AS at) AS now";

/// The standby connection and what is known of it.
pub struct Standbys {
    /// One connection: reads during an outage only, and with one the host it reached is
    /// exactly the one [`Seen::host`] names.
    pool: Pool,
    seen: Arc<Mutex<Seen>>,
    deadline: Duration,
}

#[derive(Debug)]
struct Seen {
    /// The host of the pooled connection, or what every host did when none gave one.
    host: Result<String, String>,
    /// When a read on the pooled connection ran out of time: a frozen server still
    /// acknowledges at the TCP level, so the connection is not handed out again.
    stuck_at: Option<Instant>,
}

/// Connects to the first host, in the connection string's order, that accepts a session,
/// each within its own timeout (as [`primary::Connector`] does, but asking for no primary,
/// and telling [`primary::Primary`] nothing: a standby found is not a primary).
#[derive(Clone)]
struct AnyHost {
    per_host: Duration,
    seen: Arc<Mutex<Seen>>,
}

impl deadpool_postgres::Connect for AnyHost {
    fn connect(
        &self,
        config: &Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = config.clone();
        Box::pin(async move {
            let mut tried = Vec::new();
            let hosts = primary::endpoints(&config);
            match first_to_connect(&config, hosts, self.per_host, &mut tried).await {
                Ok((client, task, host)) => {
                    lock(&self.seen).host = Ok(host);
                    Ok((client, task))
                }
                Err(last_error) => {
                    lock(&self.seen).host = Err(primary::summary(&tried));
                    Err(last_error.unwrap_or_else(tokio_postgres::Error::__private_api_timeout))
                }
            }
        })
    }
}

impl Standbys {
    /// Reads from the hosts of `config`, whichever accepts: no connection is made yet.
    pub fn new(config: &PgConfig) -> Result<Standbys, PgOpenError> {
        let mut pg = config.pg_config().map_err(PgOpenError::Config)?;
        pg.target_session_attrs(TargetSessionAttrs::Any);
        let per_host = pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(config.connect_timeout);
        let hosts = pg.get_hosts().len().max(pg.get_hostaddrs().len()).max(1) as u32;
        let seen = Arc::new(Mutex::new(Seen {
            host: Err("not tried yet".into()),
            stuck_at: None,
        }));
        let connector = AnyHost {
            per_host,
            seen: seen.clone(),
        };
        let manager = Manager::from_connect(
            pg,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let usable = seen.clone();
        let pool = Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.read_deadline))
            .create_timeout(Some(per_host * hosts))
            .recycle_timeout(Some(config.connect_timeout))
            .pre_recycle(deadpool_postgres::Hook::sync_fn(
                move |_, metrics| match lock(&usable).stuck_at {
                    Some(stuck) if metrics.created <= stuck => Err(
                        deadpool_postgres::HookError::message("a read on it ran out of time"),
                    ),
                    _ => Ok(()),
                },
            ))
            .build()
            .map_err(|e| PgOpenError::Config(e.to_string()))?;
        Ok(Standbys {
            pool,
            seen,
            deadline: config.read_deadline,
        })
    }

    /// Runs `read` on a standby within the read deadline: its value, with who answered and
    /// how fresh it is; or why no standby could serve it. `counted_as` is the read's label
    /// in the metrics (`account`, `history`).
    ///
    /// The connection kept may be to a standby that has since died, frozen or been cut off
    /// (the next fault of a failover drill), and a read there would fail or hold until the
    /// deadline: so the first try gets a third of it, and when that runs out or the
    /// connection breaks, the connection is dropped and the read tried once more, on a new
    /// connection to the first host that answers.
    pub async fn read<T, F, Fut>(
        &self,
        counted_as: &'static str,
        read: F,
    ) -> Result<(T, Stale), StoreError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, ReadError>>,
    {
        let started = Instant::now();
        let first = tokio::time::timeout(self.deadline / 3, self.attempt(counted_as, &read)).await;
        let answer = match first {
            Ok(Ok(value)) => Ok(Ok(value)),
            Ok(Err(ReadError::Store(error))) => Ok(Err(ReadError::Store(error))),
            // Out of time, or the connection broke (its standby killed): once more, anew.
            Ok(Err(ReadError::Db(_))) | Err(_) => {
                lock(&self.seen).stuck_at = Some(Instant::now());
                let left = self.deadline.saturating_sub(started.elapsed());
                tokio::time::timeout(left, self.attempt(counted_as, &read)).await
            }
        };
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(ReadError::Store(error))) => Err(error),
            Ok(Err(ReadError::Db(reason))) => Err(StoreError::Unreachable(reason)),
            Err(_) => {
                lock(&self.seen).stuck_at = Some(Instant::now());
                Err(StoreError::Unreachable(format!(
                    "the standby did not answer within {:?}",
                    self.deadline
                )))
            }
        }
    }

    /// One try of [`Standbys::read`], without a deadline of its own.
    async fn attempt<T, F, Fut>(
        &self,
        counted_as: &'static str,
        read: &F,
    ) -> Result<(T, Stale), ReadError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, ReadError>>,
    {
        let client = self.pool.get().await.map_err(|e| {
            let why = match lock(&self.seen).host.clone() {
                Err(each_host) => each_host,
                Ok(_) => super::pool_failure(&e),
            };
            ReadError::Db(format!("no standby answers: {why}"))
        })?;
        // Named while the connection is held: no other can be made meanwhile.
        let from = lock(&self.seen).host.clone().unwrap_or_default();
        let statement = client.prepare_cached(FRESHNESS).await?;
        let row = client.query_one(&statement, &[]).await?;
        let (as_of, read_at): (Option<i64>, i64) = (row.get(0), row.get(1));
        let value = read(client).await?;
        crate::telemetry::store_standby_read(counted_as);
        Ok((
            value,
            Stale {
                from,
                as_of: as_of.map(format_instant),
                age_secs: as_of.map(|as_of| (read_at - as_of).max(0) as f64 / 1000.0),
            },
        ))
    }

    /// Releases the connection.
    pub fn close(&self) {
        self.pool.close();
    }
}

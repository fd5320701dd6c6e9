//! [`PgStore`]: the token store in PostgreSQL, which any number of memesd hosts can share.
//!
//! Tables (see `migrations/`): `accounts` (balance, tier and version per user), `lots` (what
//! each balance is made of: one row per lot with tokens left, read with its account under
//! the account's lock, written in the same transaction as the entries), `entries` (the
//! ledger, append-only, numbered by a global sequence, with each credit's lot terms and each
//! expiry's date, and each refund's charge and tokens), `lot_takes` (what each debit, expiry
//! or hold took from which lot, and what each refund or end of a hold gave back),
//! `holds`/`hold_parts` (holds, with what they took), `reopened_lots` (lots refunds
//! re-opened, as they were), `idempotency_keys` (fingerprint and stored reply per key),
//! `commits` (each batch's commit id, to resolve a lost COMMIT reply). Every change is decided by [`crate::store::rules`] on
//! rows locked in the database; CHECK and UNIQUE constraints refuse a wrong state a second
//! time. Reads judge lots at the store's clock ([`PgConfig::clock`]): a lot that expired
//! since its account's last change is not counted, and its `expire` entry comes with that
//! account's next change or memesd's expirer ([`TokenStore::settle`]), whichever is first.
//!
//! Changes go through [`batch`]: one task per host gathers concurrent requests into one
//! transaction (group commit at the application) and answers each only after COMMIT, so
//! every [`Commit`] this store hands back is already done. Reads (`account`, `replay`,
//! `history`, `audit`, `stats`) go straight to the connection pool; those that need no
//! primary (`read_account`, `history`) go to a standby when no primary can be reached.
//!
//! - [`migrate`]: the versioned schema, applied under an advisory lock.
//! - [`primary`]: connecting to whichever host is the primary, each host within its own
//!   timeout; what this host knows about the primary (changes fail fast while none is).
//! - [`standby`]: `balance` and `history` from a standby while no primary can be reached,
//!   saying how fresh they are.
//! - [`batch`]: group commit: lock in user order, decide, write with few round trips.
//! - `holds`, `refunds`: the rows holds and refunds keep, read and written for the batch,
//!   the audit and the export.
//! - [`audit`]: the ledger's invariants, checked by SQL over the whole database.
//! - [`export`]: the database's ledger written as a [dump](crate::store::dump) (`memesd
//!   export --store`).
//! - [`import`]: a [dump](crate::store::dump) of a ledger loaded into the database
//!   (`memesd import`).
//! - [`testing`]: a throwaway cluster for tests (not used by memesd).

pub mod audit;
pub mod batch;
mod columns;
pub mod export;
mod holds;
pub mod import;
pub mod migrate;
pub mod primary;
mod refunds;
pub mod standby;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

use crate::domain::{
    AccountView, AuditReport, EntryKind, HistoryCursor, HistoryEntry, HistoryPage, Hold, HoldState,
    Lot, Stale, Tier, format_instant,
};
use crate::store::rules::{self, Change, KeyUse};
use crate::store::{
    Changed, ChargeRequest, Commit, EndHold, HoldChange, HoldEnd, Idempotency, Outcome,
    RefundChange, Refunded, StoreError, StoreHealth, StoreStats, StoredReply, TokenStore,
    TopupChange, Unreachable,
};
use batch::{Applied, Asked, OwnedKey, Pending, Reply};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Settings of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// A connection string: `postgres://user[:password]@host[:port]/db?…`, including a Unix
    /// socket directory as `host` (`postgres:///memes?host=/run/postgresql`), or libpq's
    /// `key=value` form.
    pub url: String,
    /// The password, when it is not in the URL (`--store-password-file`, else `PGPASSWORD`).
    pub password: Option<String>,
    /// Tokens granted when an account opens.
    pub welcome_tokens: u64,
    /// How long the welcome grant's lot lasts; `None`: it never expires.
    pub welcome_expires: Option<Duration>,
    /// The ledger's clock: what every change is dated with and every read is judged at.
    pub clock: crate::store::Clock,
    /// Connections in the pool (each batch writer holds one of them).
    pub pool_size: usize,
    /// Batch writers: transactions in flight at once from this host.
    pub writers: usize,
    /// Giving up on connecting to one host of the connection string (its socket, the login
    /// and the read-write check together; then the next host is tried). A `connect_timeout`
    /// in the connection string takes precedence.
    pub connect_timeout: Duration,
    /// The server cancels a statement running longer (set per session); audits and
    /// imports lift it for their own transaction.
    pub statement_timeout: Duration,
    /// A change not committed this long after it was asked for gets `unavailable`. Within
    /// it, a batch that failed before COMMIT (connection lost, deadlock) is retried.
    pub change_deadline: Duration,
    /// Reads give up after this long.
    pub read_deadline: Duration,
    /// Most requests in one transaction.
    pub max_batch: usize,
    /// Most attempts at one batch (deadlocks, serialization failures, lost connections).
    pub attempts: u32,
    /// How its sessions are named in `pg_stat_activity` (unless the URL names them): a
    /// serving host is [`SERVING_APPLICATION`], which `memesd import --replace` looks for.
    pub application_name: &'static str,
}

/// The application name of a serving memesd's sessions.
pub const SERVING_APPLICATION: &str = "memesd";

impl PgConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            password: None,
            welcome_tokens: 150,
            welcome_expires: None,
            clock: crate::store::Clock::system(),
            pool_size: 16,
            writers: 2,
            // Per host: a login on a LAN takes milliseconds; 2 s leaves room for a busy
            // server, and a hung host in front of the URL costs it once (it is tried last
            // afterwards), well within a change's deadline.
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            change_deadline: Duration::from_secs(5),
            read_deadline: Duration::from_secs(5),
            max_batch: 1024,
            attempts: 8,
            application_name: SERVING_APPLICATION,
        }
    }

    /// The welcome grant as the rules take it.
    pub fn welcome(&self) -> rules::Welcome {
        rules::Welcome {
            tokens: self.welcome_tokens,
            expires_in: self
                .welcome_expires
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// The driver's configuration: the URL, plus the password, a user if none is named (the
    /// OS user, as libpq does), timeouts and the session settings memesd relies on.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, String> {
        // The string itself is never shown: it may hold a password.
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| format!("--store is not a PostgreSQL connection string: {e}"))?;
        if config.get_password().is_none()
            && let Some(password) = &self.password
        {
            config.password(password.as_bytes());
        }
        if config.get_user().is_none() {
            let me = nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .ok_or("the connection string names no user, and the OS user has no name")?;
            config.user(&me);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name(self.application_name);
        }
        // A server that vanished (host down, cable cut) under an idle pooled connection is
        // noticed within 10 + 3 × 2 s; one that stops acknowledging data we sent, within
        // the change deadline. Neither notices a frozen server (its kernel still answers):
        // the deadlines do.
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        config.tcp_user_timeout(self.change_deadline);
        // Generic plans: memesd's statements take arrays, and for a custom plan PostgreSQL
        // estimates each array's length anew, so it planned every batch again (up to 160 µs
        // for the write on copies, more than the write itself for small batches). A generic
        // plan is made once per connection, and again when the tables' statistics change.
        // `memes.schema`: the schema this memesd knows, which a ledger's triggers read to
        // refuse the changes of a memesd that knows too little (0004_holds).
        let session = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={} \
             -c plan_cache_mode=force_generic_plan -c memes.schema={}",
            self.statement_timeout.as_millis().max(1),
            (self.change_deadline * 4).as_millis().max(1),
            migrate::known_version()
        );
        let options = match config.get_options() {
            Some(given) => format!("{given} {session}"),
            None => session,
        };
        config.options(&options);
        Ok(config)
    }
}

/// Where a connection string points, for messages and logs: user, hosts, ports and
/// database, built from the parsed configuration so that no password (`user:pass@`,
/// `password=…`, `?password=…`) can reach a log, whatever form the string has.
pub fn describe(url: &str) -> String {
    use tokio_postgres::config::Host;
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "a connection string that does not parse".to_string();
    };
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or_default();
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts = config.get_hosts();
    let tcp: Vec<String> = hosts
        .iter()
        .enumerate()
        .filter_map(|(i, host)| match host {
            Host::Tcp(name) => Some(format!("{name}:{}", port(i))),
            Host::Unix(_) => None,
        })
        .collect();
    if tcp.len() == hosts.len() && !tcp.is_empty() {
        return format!("postgres://{user}{}/{db}", tcp.join(","));
    }
    let places: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            Host::Tcp(name) => format!("{name}:{}", port(i)),
            Host::Unix(dir) => format!("{}:{}", dir.display(), port(i)),
        })
        .collect();
    match places.is_empty() {
        true => format!("postgres://{user}/{db} (the default socket)"),
        false => format!("postgres://{user}/{db} (host {})", places.join(",")),
    }
}

/// The connection string as given with any password in it masked, for `--print-config`
/// (which must stay a configuration memesd reads back): `user:***@` in a URL, `password=***`
/// in a URL's query or in libpq's `key=value` form.
pub fn redact(url: &str) -> String {
    const MASK: &str = "***";
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => match credentials.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}@{hosts}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let params: Vec<String> = query
                    .split('&')
                    .map(|param| match param.split_once('=') {
                        Some((key, _)) if key == "password" => format!("{key}={MASK}"),
                        _ => param.to_string(),
                    })
                    .collect();
                format!("{path}?{}", params.join("&"))
            }
            None => tail.to_string(),
        };
        return format!("{scheme}://{authority}{tail}");
    }
    // key=value pairs; a value may be quoted ('…', with \' and \\ escapes).
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at);
        let starts_key = before.is_empty() || before.ends_with(char::is_whitespace);
        let after_key = &from["password".len()..];
        let value = after_key.trim_start();
        if !starts_key || !value.starts_with('=') {
            out.push_str(before);
            out.push_str("password");
            rest = after_key;
            continue;
        }
        let value = value[1..].trim_start();
        let end = match value.strip_prefix('\'') {
            Some(quoted) => {
                let mut escaped = false;
                let close = quoted.char_indices().find(|(_, c)| {
                    let closes = *c == '\'' && !escaped;
                    escaped = *c == '\\' && !escaped;
                    closes
                });
                close.map_or(value.len(), |(i, _)| i + 2)
            }
            None => value.find(char::is_whitespace).unwrap_or(value.len()),
        };
        out.push_str(before);
        out.push_str("password=");
        out.push_str(MASK);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Why a [`PgStore`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("{0}")]
    Config(String),
    #[error("connecting to PostgreSQL at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
}

/// The PostgreSQL token store.
pub struct PgStore {
    pool: Pool,
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    writers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// False while the database is unreachable (or read-only) and changes fail.
    writable: Arc<AtomicBool>,
    /// The last counts read, reported while the database is unreachable.
    last_counts: Mutex<LastCounts>,
    /// How the writers' batches went.
    tally: Arc<batch::Tally>,
    /// Where the primary is, or since when none is known.
    primary: Arc<primary::Primary>,
    /// Looks for a primary while none is known.
    prober: tokio::task::JoinHandle<()>,
    /// Serves the reads that need no primary while none can be reached.
    standbys: standby::Standbys,
    config: PgConfig,
}

impl PgStore {
    /// Connects, brings the schema up to date, and starts the batch writer. Must be called
    /// inside a tokio runtime, which then runs the writer.
    pub async fn open(config: PgConfig) -> Result<PgStore, PgOpenError> {
        let primary = Arc::new(primary::Primary::new(describe(&config.url)));
        let (pool, connector) = pool(&config, &primary)?;
        let url = describe(&config.url);
        let client = pool.get().await.map_err(|e| PgOpenError::Connect {
            url: url.clone(),
            // The message names the URL already: each host's answer is what it lacks.
            reason: primary
                .unknown()
                .map_or_else(|| pool_failure(&e), |(_, why)| why),
        })?;
        let applied = migrate::migrate(&client).await?;
        if applied.is_empty() {
            tracing::debug!("ledger schema at version {}", migrate::known_version());
        }
        drop(client);
        let writable = Arc::new(AtomicBool::new(true));
        let (tx, rx) = mpsc::unbounded_channel();
        let queue: batch::Queue = Arc::new(tokio::sync::Mutex::new(rx));
        let tally = Arc::new(batch::Tally::default());
        // One set of copies per host, shared by its writers.
        let copies = Arc::new(Mutex::new(batch::Copies::default()));
        let writers = (0..config.writers.max(1))
            .map(|_| {
                tokio::spawn(batch::run(
                    pool.clone(),
                    queue.clone(),
                    batch::WriterConfig::from(&config),
                    batch::Shared {
                        writable: writable.clone(),
                        copies: copies.clone(),
                        tally: tally.clone(),
                        primary: primary.clone(),
                    },
                ))
            })
            .collect();
        let prober = tokio::spawn(primary::probe(
            connector,
            config.pg_config().map_err(PgOpenError::Config)?,
        ));
        let standbys = standby::Standbys::new(&config)?;
        Ok(PgStore {
            pool,
            queue: Mutex::new(Some(tx)),
            writers: Mutex::new(writers),
            writable,
            last_counts: Mutex::default(),
            tally,
            primary,
            prober,
            standbys,
            config,
        })
    }

    /// Lets the writer finish every change already asked for, then stops it. Changes asked
    /// for afterwards are refused.
    pub async fn close(&self) {
        drop(lock(&self.queue).take());
        let writers = std::mem::take(&mut *lock(&self.writers));
        for writer in writers {
            let _ = writer.await;
        }
        self.prober.abort();
        self.pool.close();
        self.standbys.close();
    }

    /// How the writers' batches went.
    pub fn tally(&self) -> &batch::Tally {
        &self.tally
    }

    /// The pool, for export and import.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Why no primary is known and for how long, or None while one is.
    pub fn without_primary(&self) -> Option<(Duration, String)> {
        self.primary.unknown()
    }

    /// Why and since when the database cannot be reached, if it cannot: no primary is
    /// known, or `failed` says why a read just failed (a pooled connection cut under it, say,
    /// before any new connection was tried: since now, then).
    fn unreachable(&self, failed: Option<String>) -> Option<Unreachable> {
        let (without, reason) = self
            .primary
            .unknown()
            .or_else(|| failed.map(|why| (Duration::ZERO, why)))?;
        let since_ms = crate::domain::now_ms() - without.as_millis() as i64;
        Some(Unreachable {
            place: self.primary.place().to_string(),
            since_ms,
            reason,
            counted_ms: lock(&self.last_counts).full.map(|(_, _, at)| at),
        })
    }

    /// Counts the accounts (and the entries, if asked: that reads the whole table) and asks
    /// whether the server accepts writes. While it cannot be reached, the last counts, not
    /// writable, and why the count failed if it was tried.
    async fn count(&self, with_entries: bool) -> (StoreHealth, u64, Option<String>) {
        let query = match with_entries {
            true => {
                "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM entries),
                            pg_is_in_recovery()"
            }
            false => "SELECT (SELECT count(*) FROM accounts), 0::bigint, pg_is_in_recovery()",
        };
        if let Some((without, _)) = self.primary.unknown() {
            // Not writable, and asking would wait for hosts known not to answer. (Also what
            // the metrics read when they are rendered.)
            crate::telemetry::store_without_primary(without);
            self.writable.store(false, Ordering::Relaxed);
            let last = lock(&self.last_counts);
            return (
                StoreHealth {
                    accounts: last.accounts,
                    writable: false,
                },
                last.entries(),
                None,
            );
        }
        let counted = self
            .read("counting", |client| async move {
                let statement = client.prepare_cached(query).await?;
                let row = client.query_one(&statement, &[]).await?;
                Ok((
                    row.get::<_, i64>(0) as u64,
                    row.get::<_, i64>(1) as u64,
                    row.get::<_, bool>(2),
                ))
            })
            .await;
        let mut last = lock(&self.last_counts);
        let (accounts, entries, writable, failed) = match counted {
            Ok((accounts, counted_entries, standby)) => {
                last.accounts = accounts;
                if with_entries {
                    last.full = Some((accounts, counted_entries, crate::domain::now_ms()));
                }
                // A standby is read-only: changes would fail there.
                (accounts, last.entries(), !standby, None)
            }
            Err(error) => {
                let why = match error {
                    StoreError::Unreachable(why) => why,
                    other => other.to_string(),
                };
                (last.accounts, last.entries(), false, Some(why))
            }
        };
        self.writable.store(writable, Ordering::Relaxed);
        (StoreHealth { accounts, writable }, entries, failed)
    }

    /// Hands a change to the batch writer and waits until it is committed (or refused).
    async fn change(
        &self,
        user: &str,
        change: Change,
        memes: &[&str],
        reason: Option<&str>,
        keyed: Option<crate::store::Keyed<'_>>,
    ) -> Result<Applied, StoreError> {
        let keyed = keyed.map(|k| OwnedKey {
            key: k.idem.key.to_string(),
            fingerprint: k.idem.fingerprint.to_string(),
            reply: Reply::Changed(k.reply),
        });
        self.submit(user, Asked::Change(change), memes, reason, keyed)
            .await
    }

    /// Hands what a change asks to the batch writer and waits until it is committed (or
    /// refused).
    async fn submit(
        &self,
        user: &str,
        change: Asked,
        memes: &[&str],
        reason: Option<&str>,
        keyed: Option<OwnedKey>,
    ) -> Result<Applied, StoreError> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            user: user.to_string(),
            change,
            memes: memes.iter().map(|m| m.to_string()).collect(),
            reason: reason.map(str::to_string),
            keyed,
            time_ms: self.config.clock.now(),
            asked: Instant::now(),
            done,
        };
        let sent = match &*lock(&self.queue) {
            Some(queue) => queue.send(pending).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        crate::telemetry::store_changes_waiting(1.0);
        let answered = answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the batch writer stopped".into())));
        crate::telemetry::store_changes_waiting(-1.0);
        answered
    }

    /// Runs a read that needs no primary: on the primary, as every read; but when no primary
    /// can be reached (none is known, or the read could not reach it: connecting failed, the
    /// connection broke, or it did not answer within the deadline, as a primary cut off or
    /// frozen mid-read), on a standby, and then with who answered and how fresh it is. A
    /// stale answer that says so serves a client better than an error. `counted_as` labels
    /// the standby's reads in the metrics.
    async fn read_anywhere<T, F, Fut>(
        &self,
        what: &str,
        counted_as: &'static str,
        read: F,
    ) -> Result<(T, Option<Stale>), StoreError>
    where
        F: Fn(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, ReadError>>,
    {
        if self.primary.unknown().is_none() {
            match self.read(what, &read).await {
                Ok(value) => return Ok((value, None)),
                Err(StoreError::Unreachable(_)) => {}
                Err(error) => return Err(error),
            }
        }
        match self.standbys.read(counted_as, read).await {
            Ok((value, stale)) => Ok((value, Some(stale))),
            // Why the primary cannot be reached comes first: it is what an operator must fix.
            Err(StoreError::Unreachable(standby)) => {
                let primary = self
                    .primary
                    .unavailable()
                    .unwrap_or_else(|| "no PostgreSQL primary answers".to_string());
                Err(StoreError::Unreachable(format!(
                    "{what}: {primary}; nor could a standby serve the read: {standby}"
                )))
            }
            Err(error) => Err(error),
        }
    }

    /// Runs a read on a pooled connection, within the read deadline.
    async fn read<T, F, Fut>(&self, what: &str, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, ReadError>>,
    {
        let work = async {
            let client = self.pool.get().await.map_err(|e| {
                ReadError::Store(StoreError::Unreachable(format!(
                    "{what}: {}",
                    pool_error(&e, &self.primary)
                )))
            })?;
            read(client).await
        };
        match tokio::time::timeout(self.config.read_deadline, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(ReadError::Store(error))) => Err(error),
            Ok(Err(ReadError::Db(reason))) => Err(StoreError::Unreachable(format!(
                "{what}: PostgreSQL: {reason}"
            ))),
            Err(_) => Err(StoreError::Unreachable(format!(
                "{what}: PostgreSQL did not answer within {:?}",
                self.config.read_deadline
            ))),
        }
    }
}

/// The counts last read, for while the database cannot be reached.
#[derive(Debug, Default)]
struct LastCounts {
    /// Accounts, from any count (readiness probes and metric scrapes count them often).
    accounts: u64,
    /// The last count of both accounts and entries (a `status`) and when it was made, in
    /// milliseconds since the Unix epoch: what `status` reports, with its time, while the
    /// database cannot be reached. None before the first.
    full: Option<(u64, u64, i64)>,
}

impl LastCounts {
    fn entries(&self) -> u64 {
        self.full.map_or(0, |(_, entries, _)| entries)
    }
}

/// A read's failure: the database's, or a refusal by the rules.
pub enum ReadError {
    Db(String),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for ReadError {
    fn from(error: tokio_postgres::Error) -> ReadError {
        ReadError::Db(db_error(&error))
    }
}

impl From<StoreError> for ReadError {
    fn from(error: StoreError) -> ReadError {
        ReadError::Store(error)
    }
}

/// An error's message, with the server's own words when it has them.
pub fn db_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // "error connecting to server" says little without its cause.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Why no connection could be had: while no primary is known, that the database is
/// unreachable, where, and every host's answer; otherwise the pool's failure in our words.
pub fn pool_error(error: &deadpool_postgres::PoolError, primary: &primary::Primary) -> String {
    match primary.unavailable() {
        Some(unreachable) => unreachable,
        None => pool_failure(error),
    }
}

/// The pool's failure in our words: deadpool's own ("Error occurred while creating a new
/// object") name its internals, not what happened to the ledger's database.
pub fn pool_failure(error: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::{PoolError, TimeoutType};
    match error {
        PoolError::Backend(e) => format!("cannot connect to PostgreSQL: {}", db_error(e)),
        PoolError::Timeout(TimeoutType::Wait) => {
            "every pooled PostgreSQL connection stayed busy until the deadline".to_string()
        }
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => {
            "no PostgreSQL connection could be made within the deadline".to_string()
        }
        PoolError::Closed => "the store is closed".to_string(),
        other => format!("no PostgreSQL connection: {other}"),
    }
}

fn pool(
    config: &PgConfig,
    primary: &Arc<primary::Primary>,
) -> Result<(Pool, primary::Connector), PgOpenError> {
    let pg = config.pg_config().map_err(PgOpenError::Config)?;
    let per_host = pg
        .get_connect_timeout()
        .copied()
        .unwrap_or(config.connect_timeout);
    let hosts = pg.get_hosts().len().max(pg.get_hostaddrs().len()).max(1) as u32;
    let connector = primary::Connector {
        primary: primary.clone(),
        per_host,
    };
    let manager = Manager::from_connect(
        pg,
        connector.clone(),
        ManagerConfig {
            // A connection that died (server restarted) is noticed when it is handed out.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let usable = primary.clone();
    let pool = Pool::builder(manager)
        // Each writer holds a connection for good: leave some for reads.
        .max_size(config.pool_size.max(config.writers.max(1) + 2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.read_deadline))
        // Every host may take its whole timeout before the last one answers.
        .create_timeout(Some(per_host * hosts))
        .recycle_timeout(Some(config.connect_timeout))
        // A connection made before one in use broke may lead to the same dead or frozen
        // server, which a closed-check does not see: make a new one instead.
        .pre_recycle(deadpool_postgres::Hook::sync_fn(
            move |_, metrics| match usable.usable(metrics.created) {
                true => Ok(()),
                false => Err(deadpool_postgres::HookError::message(
                    "made before a connection broke",
                )),
            },
        ))
        .build()
        .map_err(|e| PgOpenError::Config(e.to_string()))?;
    Ok((pool, connector))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads a tier as stored.
pub fn tier_from(text: &str) -> Tier {
    match text {
        "premium" => Tier::Premium,
        _ => Tier::Free,
    }
}

/// Reads an entry kind as stored.
pub fn kind_from(text: &str) -> Result<EntryKind, String> {
    Ok(match text {
        "welcome" => EntryKind::Welcome,
        "expire" => EntryKind::Expire,
        "charge" => EntryKind::Charge,
        "topup" => EntryKind::Topup,
        "deduct" => EntryKind::Deduct,
        "entitle" => EntryKind::Entitle,
        "hold" => EntryKind::Hold,
        "capture" => EntryKind::Capture,
        "void" => EntryKind::Void,
        "release" => EntryKind::Release,
        "refund" => EntryKind::Refund,
        other => return Err(format!("unknown entry kind {other:?}")),
    })
}

/// A `text[]` literal, every element quoted (`{"a","b\\"c"}`), so that rows with several
/// memes can travel in one array parameter per column (`unnest` would flatten an array of
/// arrays) and be read back with a plain cast.
pub fn array_literal<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.as_ref().chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Reads an account's row with its lots (one row per lot, the account's columns on each; one
/// row with no lot for an account without), then its open holds' parts (one row per part,
/// the account's columns NULL, the hold's from column 10 on as [`holds::HOLDS`] has them), on
/// whichever server `client` is connected to. One statement, so one snapshot: a hold ended
/// between two reads would be counted twice or not at all.
async fn account_row(
    client: deadpool_postgres::Object,
    user: &str,
) -> Result<Vec<tokio_postgres::Row>, ReadError> {
    let statement = client
        .prepare_cached(
            "SELECT a.balance, a.tier, a.until_ms,
                    l.id, l.amount, l.remaining, l.effective_ms, l.expires_ms, l.priority, l.kind,
                    NULL AS owner, NULL::bigint AS hold, NULL::bigint, NULL::bigint, NULL::bigint,
                    NULL::bigint, NULL, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
                    NULL::bigint, NULL::smallint, NULL, NULL::int AS ord
             FROM accounts AS a LEFT JOIN lots AS l USING (user_id)
             WHERE a.user_id = $1
             UNION ALL
             SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                    h.user_id, h.id, h.amount, h.captured, h.created_ms, h.expires_ms, h.state,
                    p.lot, p.amount, p.tokens, p.effective_ms, p.expires_ms, p.priority, p.kind,
                    p.ord
             FROM holds AS h JOIN hold_parts AS p ON p.hold_id = h.id
             WHERE h.user_id = $1 AND h.state = 'open'
             ORDER BY hold NULLS FIRST, ord",
        )
        .await?;
    Ok(client.query(&statement, &[&user]).await?)
}

/// The query of [`past_rows`].
static PAST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, CASE WHEN e.kind = 'entitle' THEN e.tier END, e.until_ms
         FROM entries AS e
         WHERE e.user_id = $1
           AND e.seq < coalesce((SELECT min(seq) FROM entries
                                 WHERE user_id = $1 AND time_ms > $2), 9223372036854775807)
         ORDER BY e.seq",
        audit::replay_columns()
    )
});

/// A user's entries in the ledger's order up to the first made after `at` (what
/// [`rules::account_at`] replays), in the columns of the audit's replay
/// ([`audit::ReplayRow`]), then the tier and its end an `entitle` entry set.
async fn past_rows(
    client: deadpool_postgres::Object,
    user: &str,
    at: i64,
) -> Result<Vec<tokio_postgres::Row>, ReadError> {
    let statement = client.prepare_cached(&PAST).await?;
    Ok(client.query(&statement, &[&user, &at]).await?)
}

/// An account as [`account_row`] read it, with its lots and its open holds; `UnknownUser` if
/// there was none.
fn account_from(
    user: &str,
    rows: Vec<tokio_postgres::Row>,
) -> Result<(AccountView, Vec<Lot>, Vec<Hold>), StoreError> {
    let row = rows
        .first()
        .ok_or_else(|| StoreError::UnknownUser(user.to_string()))?;
    let account = AccountView {
        balance: balance_from(row.get(0)),
        tier: tier_from(row.get(1)),
        until: row.get(2),
    };
    let (accounts, parts): (Vec<_>, Vec<_>) = rows
        .iter()
        .partition(|row| row.get::<_, Option<i64>>(11).is_none());
    let lots = accounts
        .iter()
        .filter(|row| row.get::<_, Option<i64>>(3).is_some())
        .map(|row| columns::lot_from(row, 3))
        .collect();
    let holds = holds::holds_from(parts, 10)
        .into_iter()
        .map(|(_, hold)| hold)
        .collect();
    Ok((account, lots, holds))
}

/// The accounts with a lot or an open hold whose expiry ($1) has passed, at most $2 of them,
/// the longest due first: index ranges (schema version 7, `0007_expiries_due.sql`).
const DUE: &str = "SELECT user_id FROM (
        (SELECT user_id, expires_ms FROM lots WHERE expires_ms <= $1
         ORDER BY expires_ms LIMIT $2)
        UNION ALL
        (SELECT user_id, expires_ms FROM holds WHERE state = 'open' AND expires_ms <= $1
         ORDER BY expires_ms LIMIT $2)
    ) AS due
    GROUP BY user_id ORDER BY min(expires_ms) LIMIT $2";

fn balance_from(value: i64) -> u64 {
    // The CHECK constraints keep it within 0..=MAX_BALANCE.
    value.max(0) as u64
}

/// The cursor format: the sequence number of the oldest entry a page holds; the next page
/// holds that user's entries before it.
fn parse_cursor(cursor: &HistoryCursor) -> Option<i64> {
    let text = cursor.as_str();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|seq| *seq > 0)
}

#[async_trait::async_trait]
impl TokenStore for PgStore {
    async fn charge(
        &self,
        request: ChargeRequest<'_>,
    ) -> Result<(Outcome<u64>, Commit), StoreError> {
        let change = Change::Charge { cost: request.cost };
        let applied = self
            .change(request.user, change, request.memes, None, request.keyed)
            .await?;
        let outcome = applied.into_outcome()?.map(|changed| changed.balance);
        Ok((outcome, Commit::done()))
    }

    async fn topup(
        &self,
        change: TopupChange<'_>,
    ) -> Result<(Outcome<Changed>, Commit), StoreError> {
        let applied = self
            .change(
                change.user,
                Change::Topup {
                    amount: change.amount,
                    terms: change.terms,
                },
                &[],
                change.reason,
                change.keyed,
            )
            .await?;
        Ok((applied.into_outcome()?, Commit::done()))
    }

    async fn replay(
        &self,
        idem: Idempotency<'_>,
    ) -> Result<Option<(StoredReply, Commit)>, StoreError> {
        let stored = self
            .read("reading an idempotency key", |client| async move {
                let statement = client
                    .prepare_cached(
                        "SELECT key, fingerprint, reply FROM idempotency_keys WHERE key = ANY($1)",
                    )
                    .await?;
                let lookups: Vec<&str> = rules::key_lookups(idem.key).collect();
                let rows = client.query(&statement, &[&lookups]).await?;
                Ok(rows
                    .iter()
                    .map(|row| (row.get(0), (row.get(1), row.get(2))))
                    .collect::<Vec<(String, (String, String))>>())
            })
            .await?;
        let stored = rules::find_key(
            idem.key,
            |key| stored.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            |(fp, _)| fp,
        );
        let fingerprint = stored.map(|(fp, _)| fp.as_str());
        match rules::check_key(idem.key, fingerprint, idem.fingerprint)? {
            KeyUse::New => Ok(None),
            KeyUse::Replay => {
                let (_, reply) = stored.expect("a replay has a stored reply");
                let reply = StoredReply::parse(reply.clone())?;
                Ok(Some((reply, Commit::done())))
            }
        }
    }

    /// Judged at the store's clock: lots that expired since the account's last change are
    /// not counted (their `expire` entries may not be written yet).
    async fn hold(&self, change: HoldChange<'_>) -> Result<(Outcome<Changed>, Commit), StoreError> {
        let hold = Change::Hold {
            amount: change.amount,
            ttl_ms: change.ttl_ms,
            // Drawn by the batch writer.
            id: None,
        };
        let applied = self
            .change(change.user, hold, &[], None, change.keyed)
            .await?;
        Ok((applied.into_outcome()?, Commit::done()))
    }

    async fn end_hold(
        &self,
        change: EndHold<'_>,
    ) -> Result<(Outcome<Changed>, Commit), StoreError> {
        if let Some(keyed) = &change.keyed
            && let Some((reply, commit)) = self.replay(keyed.idem).await?
        {
            return Ok((Outcome::Replayed(reply), commit));
        }
        // The account to lock is the hold's owner: the one named (the batch refuses a hold
        // that is not theirs), or else whoever it is.
        let owner = match change.user {
            Some(user) => user.to_string(),
            None => self
                .read("finding a hold's owner", |client| async move {
                    let statement = client
                        .prepare_cached("SELECT user_id FROM holds WHERE id = $1")
                        .await?;
                    let id = i64::try_from(change.hold).unwrap_or(-1);
                    let row = client.query_opt(&statement, &[&id]).await?;
                    Ok(row.map(|row| row.get::<_, String>(0)))
                })
                .await?
                .ok_or_else(|| StoreError::UnknownHold(change.hold, String::new()))?,
        };
        let end = match change.end {
            HoldEnd::Capture { amount } => Change::Capture {
                hold: change.hold,
                amount,
            },
            HoldEnd::Void => Change::Void { hold: change.hold },
        };
        let applied = self
            .change(&owner, end, change.memes, None, change.keyed)
            .await?;
        Ok((applied.into_outcome()?, Commit::done()))
    }

    /// Decided by the batch writer under the account's row lock, on the entry, its lots and
    /// the refunds of it read after that lock was granted: refunds of one charge through
    /// any number of hosts never give back more than it spent.
    async fn refund(
        &self,
        change: RefundChange<'_>,
    ) -> Result<(Outcome<Refunded>, Commit), StoreError> {
        if let Some(keyed) = &change.keyed
            && let Some((reply, commit)) = self.replay(keyed.idem).await?
        {
            return Ok((Outcome::Replayed(reply), commit));
        }
        let entry = change.entry;
        // The account to lock is the entry's owner: the one named (the batch refuses an entry
        // that is not theirs), or else whoever it is.
        let owner = match change.user {
            Some(user) => user.to_string(),
            None => self
                .read("finding an entry's owner", |client| async move {
                    let statement = client
                        .prepare_cached("SELECT user_id FROM entries WHERE seq = $1")
                        .await?;
                    let seq = i64::try_from(entry).unwrap_or(-1);
                    let row = client.query_opt(&statement, &[&seq]).await?;
                    Ok(row.map(|row| row.get::<_, String>(0)))
                })
                .await?
                .ok_or_else(|| StoreError::UnknownEntry(entry, String::new()))?,
        };
        let asked = Asked::Refund {
            entry,
            named: change.user.is_some(),
            amount: change.amount,
        };
        let keyed = change.keyed.map(|k| OwnedKey {
            key: k.idem.key.to_string(),
            fingerprint: k.idem.fingerprint.to_string(),
            reply: Reply::Refunded(k.reply),
        });
        let applied = self.submit(&owner, asked, &[], None, keyed).await?;
        Ok((applied.into_refunded()?, Commit::done()))
    }

    async fn account(&self, user: &str) -> Result<(AccountView, Commit), StoreError> {
        let rows = self
            .read("reading an account", |client| account_row(client, user))
            .await?;
        let (account, lots, holds) = account_from(user, rows)?;
        let now = self.config.clock.now();
        Ok((rules::view_at(&account, &lots, &holds, now), Commit::done()))
    }

    async fn lots(&self, user: &str) -> Result<(Vec<Lot>, Vec<Hold>, Commit), StoreError> {
        let rows = self
            .read("reading an account's lots", |client| {
                account_row(client, user)
            })
            .await?;
        let (_, lots, mut holds) = account_from(user, rows)?;
        let now = self.config.clock.now();
        let lots = rules::settled_lots(&lots, &holds, now);
        holds.retain(|hold| rules::hold_state_at(hold, now) == HoldState::Open);
        Ok((rules::spendable_lots(&lots, now), holds, Commit::done()))
    }

    async fn read_account(
        &self,
        user: &str,
    ) -> Result<(AccountView, Option<Stale>, Commit), StoreError> {
        let (rows, stale) = self
            .read_anywhere("reading an account", "account", |client| {
                account_row(client, user)
            })
            .await?;
        let (account, lots, holds) = account_from(user, rows)?;
        let now = self.config.clock.now();
        Ok((
            rules::view_at(&account, &lots, &holds, now),
            stale,
            Commit::done(),
        ))
    }

    async fn account_at(
        &self,
        user: &str,
        at: i64,
    ) -> Result<(rules::Past, Option<Stale>), StoreError> {
        let (rows, stale) = self
            .read_anywhere("reading an account's past", "history", |client| {
                past_rows(client, user, at)
            })
            .await?;
        let read = rows
            .iter()
            .map(|row| {
                let at = audit::REPLAY_COLUMNS;
                let entitled = row
                    .get::<_, Option<&str>>(at)
                    .map(|tier| (tier_from(tier), row.get::<_, Option<i64>>(at + 1)));
                audit::ReplayRow::read(row).map(|read| (read, entitled))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(StoreError::Internal)?;
        let steps = read.iter().map(|(read, entitled)| rules::Step {
            seq: read.seq,
            time: read.time,
            entry: read.entry,
            recorded: read.recorded(),
            entitled: *entitled,
        });
        match rules::account_at(steps, at) {
            Ok(Some(past)) => Ok((past, stale)),
            Ok(None) => Err(StoreError::UnknownUser(user.to_string())),
            Err(fault) => Err(StoreError::Internal(format!("user {user:?}: {fault}"))),
        }
    }

    async fn entitle(
        &self,
        user: &str,
        tier: Tier,
        until_ms: Option<i64>,
    ) -> Result<(AccountView, Commit), StoreError> {
        let change = Change::Entitle {
            tier,
            until: until_ms,
        };
        match self.change(user, change, &[], None, None).await? {
            Applied::Account(account, ..) => Ok((account, Commit::done())),
            Applied::Replayed(_) | Applied::Refunded(_) | Applied::Settled(_) => Err(
                StoreError::Internal("an entitlement was answered as another change".into()),
            ),
        }
    }

    async fn history(
        &self,
        user: &str,
        limit: usize,
        before: Option<&HistoryCursor>,
    ) -> Result<HistoryPage, StoreError> {
        let before = match before {
            Some(cursor) => {
                Some(parse_cursor(cursor).ok_or_else(|| StoreError::unreadable_cursor(cursor))?)
            }
            None => None,
        };
        let fetch = (limit as i64).saturating_add(1);
        let ((known, cursor_ok, rows), stale) = self
            .read_anywhere("reading a history", "history", |client| async move {
                let check = client
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM accounts WHERE user_id = $1),
                                EXISTS (SELECT 1 FROM entries WHERE user_id = $1 AND seq = $2)",
                    )
                    .await?;
                let page = client
                    .prepare_cached(
                        "SELECT seq, CASE WHEN kind = 'hold' THEN time_ms ELSE coalesce(at_ms, time_ms) END,
                                kind, delta, balance, key, reason, memes,
                                tier, until_ms, lot_kind IS NOT NULL,
                                (SELECT array_agg(lot ORDER BY ord) FROM lot_takes AS t WHERE t.seq = e.seq),
                                (SELECT array_agg(tokens ORDER BY ord) FROM lot_takes AS t WHERE t.seq = e.seq),
                                hold_id, reverses, refunded
                         FROM entries AS e WHERE user_id = $1 AND seq < $2
                         ORDER BY seq DESC LIMIT $3",
                    )
                    .await?;
                let upto = before.unwrap_or(i64::MAX);
                // One round trip: both queries are in flight together.
                let check_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&user, &upto];
                let page_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&user, &upto, &fetch];
                let (checked, rows) = tokio::try_join!(
                    client.query_one(&check, &check_params),
                    client.query(&page, &page_params),
                )?;
                Ok((checked.get::<_, bool>(0), checked.get::<_, bool>(1), rows))
            })
            .await?;
        if !known {
            return Err(StoreError::UnknownUser(user.to_string()));
        }
        if before.is_some() && !cursor_ok {
            return Err(StoreError::foreign_cursor(user));
        }
        let mut newest_first = Vec::with_capacity(rows.len().min(limit));
        let mut next = None;
        for row in rows {
            if newest_first.len() == limit {
                let oldest: &HistoryEntry = newest_first.last().expect("limit is at least 1");
                next = Some(HistoryCursor::new(oldest.seq.to_string()));
                break;
            }
            let kind: &str = row.get(2);
            let seq = row.get::<_, i64>(0) as u64;
            let from = columns::takes_from(row.get(11), row.get(12));
            newest_first.push(HistoryEntry {
                seq,
                time: format_instant(row.get(1)),
                kind: kind_from(kind).map_err(StoreError::Internal)?,
                delta: row.get(3),
                balance: balance_from(row.get(4)),
                key: row
                    .get::<_, Option<&str>>(5)
                    .map(|key| rules::sent_key(key).to_string()),
                reason: row.get(6),
                memes: row.get(7),
                tier: row.get::<_, Option<&str>>(8).map(tier_from),
                until: row.get::<_, Option<i64>>(9).map(format_instant),
                lot: row.get::<_, bool>(10).then_some(seq),
                from,
                hold: row.get::<_, Option<i64>>(13).map(|id| id as u64),
                reverses: row.get::<_, Option<i64>>(14).map(|seq| seq as u64),
                refunded: row.get::<_, Option<i64>>(15).map(|tokens| tokens as u64),
            });
        }
        newest_first.reverse();
        Ok(HistoryPage {
            entries: newest_first,
            next,
            stale,
        })
    }

    async fn due(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let now = self.config.clock.now();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("finding the expiries due", |client| async move {
            let statement = client.prepare_cached(DUE).await?;
            let rows = client.query(&statement, &[&now, &limit]).await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }

    /// Decided by the batch writer under the account's row lock (or on this host's copy,
    /// written only if the row is still that copy), like any change: of hosts that settle
    /// the same account at once, the first writes what was due and the others find nothing.
    async fn settle(&self, user: &str) -> Result<(u64, Commit), StoreError> {
        let applied = self.change(user, Change::Settle, &[], None, None).await?;
        Ok((applied.into_settled()?, Commit::done()))
    }

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        let pool = self.pool.clone();
        let mut client = pool.get().await.map_err(|e| {
            StoreError::Unreachable(format!("auditing: {}", pool_error(&e, &self.primary)))
        })?;
        audit::audit(&mut client)
            .await
            .map_err(|e| StoreError::Unreachable(format!("auditing: {}", db_error(&e))))
    }

    async fn close(&self) -> std::io::Result<()> {
        PgStore::close(self).await;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (health, entries, failed) = self.count(true).await;
        // Asked after counting: a count that just failed has marked the primary lost, or
        // says itself why it failed.
        let unreachable = self.unreachable(failed);
        let (accounts, entries) = match &unreachable {
            // The last counts made together, as of the time reported with them.
            Some(_) => lock(&self.last_counts)
                .full
                .map_or((0, 0), |(accounts, entries, _)| (accounts, entries)),
            None => (health.accounts, entries),
        };
        Ok(StoreStats {
            accounts,
            entries,
            writable: health.writable,
            unreachable,
        })
    }

    async fn health(&self) -> StoreHealth {
        self.count(false).await.0
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.prober.abort();
    }
}

#[cfg(test)]
mod outcome_tests;
#[cfg(test)]
mod primary_tests;
#[cfg(test)]
mod standby_tests;
#[cfg(test)]
mod tests;

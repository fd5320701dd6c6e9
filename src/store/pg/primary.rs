//! Finding the primary: how memesd connects to a connection string that names several hosts
//! (`postgres://…@h1:p1,h2:p2,h3:p3/memes?target_session_attrs=read-write`), and what it
//! knows about where writes can go.
//!
//! tokio-postgres tries the hosts in turn, but its `connect_timeout` covers only each socket's
//! connect: a host that accepts and then never answers the login (a frozen server, a full
//! backlog, a SYN answered by a proxy in front of a dead server) holds the attempt forever,
//! and the pool's budget for creating a connection ran out on host 1 before hosts 2 and 3
//! were tried. So [`Connector`] tries each host itself, with the timeout around the whole of
//! that host's attempt (socket, login, the read-write check), as libpq does, and names what
//! each host did: refused, silent, refused the login, read-only (a standby).
//!
//! [`Primary`] is what the host knows: the primary the last connection found, or since when
//! none is known and why. While none is known, changes are refused at once (rather than each
//! waiting its full deadline), `/readyz` says not ready, and a prober task looks for a
//! primary a few times a second; the log says when writes stopped, on which host with which
//! error, and when they resumed. Hosts that failed lately are tried after the others, so a
//! hung host in front of the URL costs its timeout once, not at every new connection.
//!
//! It decides nothing about the money, and never writes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// How long a host that failed is tried after the others.
const SUSPECT_FOR: Duration = Duration::from_secs(30);
/// How often the prober looks for a primary while none is known.
pub const PROBE_EVERY: Duration = Duration::from_millis(200);

/// One host of the connection string.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    host: Host,
    hostaddr: Option<IpAddr>,
    port: u16,
}

impl Endpoint {
    /// The host as people name it: `db1:5432`, `/run/postgresql:5432`.
    fn label(&self) -> String {
        let host = match (&self.host, self.hostaddr) {
            (_, Some(addr)) => addr.to_string(),
            (Host::Tcp(name), None) => name.clone(),
            (Host::Unix(dir), None) => dir.display().to_string(),
        };
        format!("{host}:{}", self.port)
    }
}

/// The hosts of `config`, in the order it names them (libpq's rules for ports: one per host,
/// or one for all, or 5432).
pub(super) fn endpoints(config: &Config) -> Vec<Endpoint> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let count = hosts.len().max(addrs.len());
    (0..count)
        .map(|i| {
            let hostaddr = addrs.get(i).copied();
            let host = match hosts.get(i) {
                Some(host) => host.clone(),
                None => Host::Tcp(hostaddr.map(|a| a.to_string()).unwrap_or_default()),
            };
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            Endpoint {
                host,
                hostaddr,
                port,
            }
        })
        .collect()
}

/// `config` narrowed to one host, every other setting kept.
fn one_host(config: &Config, endpoint: &Endpoint) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    one.keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .ssl_mode(config.get_ssl_mode());
    match &endpoint.host {
        Host::Tcp(name) => one.host(name),
        Host::Unix(dir) => one.host_path(dir),
    };
    if let Some(addr) = endpoint.hostaddr {
        one.hostaddr(addr);
    }
    one.port(endpoint.port);
    one
}

/// What one host did when asked for a connection, in words for the log and for errors.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return match code {
            // invalid_authorization_specification, invalid_password
            "28000" | "28P01" => format!("refused the login: {} ({code})", db.message()),
            // cannot_connect_now: starting up, shutting down, or a standby not yet consistent
            "57P03" => format!("not accepting connections: {} ({code})", db.message()),
            _ => format!("{} ({code})", db.message()),
        };
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                // tokio-postgres's answer when `SHOW transaction_read_only` says on.
                std::io::ErrorKind::PermissionDenied => {
                    "read-only (a standby, or default_transaction_read_only is on)".into()
                }
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::NotFound => "no server (its socket does not exist)".into(),
                std::io::ErrorKind::TimedOut => "no answer (connect timed out)".into(),
                _ => format!("{io}"),
            };
        }
        source = cause.source();
    }
    super::db_error(error)
}

/// What this host knows about the primary.
#[derive(Debug, Default)]
pub struct Primary {
    /// Where the database is, as people may be told (`pg::describe`: never a password).
    place: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The host the last successful connection reached.
    known: Option<String>,
    /// Since when no primary is known (None while one is), and why.
    lost: Option<(Instant, String)>,
    /// When a connection in use was found broken: pooled connections made before are not
    /// handed out again (they may lead to the same dead or frozen server).
    broken_at: Option<Instant>,
    /// When each host last failed to give a writable connection.
    failed: HashMap<String, Instant>,
}

impl Primary {
    /// What a store at `place` (described without its password) knows of its primary.
    pub fn new(place: String) -> Primary {
        Primary {
            place,
            state: Mutex::default(),
        }
    }

    /// Where the database is (never with a password).
    pub fn place(&self) -> &str {
        &self.place
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        super::lock(&self.state)
    }

    /// Why no primary is known and since when, or None while one is.
    pub fn unknown(&self) -> Option<(Duration, String)> {
        self.state()
            .lost
            .as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }

    /// The error a change gets while no primary is known: in our words, with where the
    /// database is and each host's answer (never a pool library's phrase).
    pub fn unavailable(&self) -> Option<String> {
        self.unknown().map(|(for_, why)| {
            format!(
                "the ledger's database is unreachable at {}: no PostgreSQL primary answers (for {:.1} s): {why}",
                self.place,
                for_.as_secs_f64()
            )
        })
    }

    /// A connection in use broke (lost, or no answer within the deadline): the pooled
    /// connections made before it are dropped rather than handed out.
    pub fn connection_broke(&self) {
        self.state().broken_at = Some(Instant::now());
    }

    /// Whether a pooled connection made at `created` may still be handed out.
    pub fn usable(&self, created: Instant) -> bool {
        self.state().broken_at.is_none_or(|broken| created > broken)
    }

    /// The hosts in the order to try them: those that failed lately last.
    fn order(&self, endpoints: Vec<Endpoint>) -> Vec<Endpoint> {
        let state = self.state();
        let (mut fine, mut suspect): (Vec<_>, Vec<_>) = endpoints.into_iter().partition(|e| {
            state
                .failed
                .get(&e.label())
                .is_none_or(|at| at.elapsed() > SUSPECT_FOR)
        });
        fine.append(&mut suspect);
        fine
    }

    fn found(&self, host: String, tried: &[(String, String)]) {
        let mut state = self.state();
        for (label, _) in tried {
            state.failed.insert(label.clone(), Instant::now());
        }
        state.failed.remove(&host);
        if let Some((since, _)) = state.lost.take() {
            let without = since.elapsed();
            tracing::info!(
                "writes resumed: PostgreSQL primary at {host}, after {:.1} s without one",
                without.as_secs_f64()
            );
        } else if state.known.as_ref().is_some_and(|known| *known != host) {
            tracing::info!(
                "PostgreSQL primary now at {host} (was {})",
                state.known.as_deref().unwrap_or("")
            );
        }
        state.known = Some(host);
        crate::telemetry::store_without_primary(Duration::ZERO);
    }

    fn none_found(&self, tried: &[(String, String)]) -> String {
        let why = summary(tried);
        let mut state = self.state();
        for (label, _) in tried {
            state.failed.insert(label.clone(), Instant::now());
        }
        match &mut state.lost {
            Some((_, last)) => *last = why.clone(),
            None => {
                tracing::warn!(
                    "writes stopped: no PostgreSQL host gives a writable connection (last primary: {}): {why}",
                    state.known.as_deref().unwrap_or("none yet")
                );
                state.lost = Some((Instant::now(), why.clone()));
            }
        }
        why
    }
}

/// What each host did, in one line: `db1:5432: connection refused; db2:5432: read-only (…)`.
pub(super) fn summary(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(host, what)| format!("{host}: {what}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Connects to the first host that gives a usable connection, each host within its own
/// timeout; tells [`Primary`] what it found.
#[derive(Clone)]
pub struct Connector {
    pub primary: Arc<Primary>,
    /// Each host's budget: socket, login and the read-write check together.
    pub per_host: Duration,
}

impl Connector {
    /// A connection to the first host that accepts; or, when none does, the last host's
    /// error (every host's is in [`Primary::unknown`] and the log).
    pub async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
        let mut tried = Vec::new();
        let hosts = self.primary.order(endpoints(config));
        match first_to_connect(config, hosts, self.per_host, &mut tried).await {
            Ok((client, task, host)) => {
                // With `target_session_attrs=read-write` this is the primary; without,
                // the server the operator named (a standby's refusals then say so).
                self.primary.found(host, &tried);
                Ok((client, task))
            }
            Err(last_error) => {
                let why = self.primary.none_found(&tried);
                tracing::debug!("connecting to PostgreSQL: {why}");
                // The driver's errors cannot be made from outside; a host that never
                // answered has none, and then the driver's own timeout error stands for it.
                Err(last_error.unwrap_or_else(tokio_postgres::Error::__private_api_timeout))
            }
        }
    }
}

/// Tries `hosts` in turn, each within `per_host` (socket, login and the check that
/// `config`'s `target_session_attrs` asks for, together): the first connection made, with the
/// label of its host. Each host that failed is added to `tried` with what it did; when all
/// did, the last driver error, if any host gave one (a host that never answered gives none).
pub(super) async fn first_to_connect(
    config: &Config,
    hosts: Vec<Endpoint>,
    per_host: Duration,
    tried: &mut Vec<(String, String)>,
) -> Result<(Client, tokio::task::JoinHandle<()>, String), Option<tokio_postgres::Error>> {
    let mut last_error = None;
    for endpoint in hosts {
        let label = endpoint.label();
        match connect_one(config, &endpoint, per_host).await {
            Ok((client, task)) => return Ok((client, task, label)),
            Err((what, error)) => {
                tried.push((label, what));
                last_error = error.or(last_error);
            }
        }
    }
    Err(last_error)
}

/// One host's attempt within `per_host`: the connection, or what the host did (and the
/// driver's error, unless it never answered).
async fn connect_one(
    config: &Config,
    endpoint: &Endpoint,
    per_host: Duration,
) -> Result<(Client, tokio::task::JoinHandle<()>), (String, Option<tokio_postgres::Error>)> {
    let one = one_host(config, endpoint);
    match tokio::time::timeout(per_host, one.connect(NoTls)).await {
        Ok(Ok((client, connection))) => {
            let task = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!("PostgreSQL connection ended: {error}");
                }
            });
            Ok((client, task))
        }
        Ok(Err(error)) => Err((describe(&error), Some(error))),
        Err(_) => Err((
            format!("no answer within {per_host:?} (down, frozen or cut off)"),
            None,
        )),
    }
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        config: &Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let config = config.clone();
        Box::pin(async move { Connector::connect(self, &config).await })
    }
}

/// Looks for a primary while none is known (the writers refuse changes meanwhile and do not
/// try themselves), until the store closes.
///
/// Every host is asked at once, each again as soon as it answered (at most every
/// [`PROBE_EVERY`]), rather than in turn as [`Connector`] does: a frozen or cut-off old
/// primary takes its whole timeout to fail, and asked in turn it would hold back, at every
/// round, the standby that has just been promoted (a failover test saw writes resume 5 s
/// after the promotion).
pub async fn probe(connector: Connector, config: Config) {
    let hosts = endpoints(&config);
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asking = futures_util::stream::FuturesUnordered::new();
    // Which hosts have an attempt under way, and each host's last failure this outage.
    let mut under_way = vec![false; hosts.len()];
    let mut failures: Vec<Option<(String, String)>> = vec![None; hosts.len()];
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let Some((without, _)) = connector.primary.unknown() else {
                    // A writer's own connection found one: forget this outage's attempts.
                    asking.clear();
                    under_way.fill(false);
                    failures.fill(None);
                    continue;
                };
                crate::telemetry::store_without_primary(without);
                for (i, endpoint) in hosts.iter().enumerate() {
                    if !std::mem::replace(&mut under_way[i], true) {
                        let (config, endpoint) = (&config, endpoint.clone());
                        let per_host = connector.per_host;
                        asking.push(async move {
                            (i, connect_one(config, &endpoint, per_host).await)
                        });
                    }
                }
            }
            Some((i, outcome)) = futures_util::StreamExt::next(&mut asking) => {
                under_way[i] = false;
                match outcome {
                    // The connection is only a test: dropping it closes it.
                    Ok(_) => {
                        let tried: Vec<_> = failures.iter().flatten().cloned().collect();
                        connector.primary.found(hosts[i].label(), &tried);
                        asking.clear();
                        under_way.fill(false);
                        failures.fill(None);
                    }
                    Err((what, _)) => {
                        failures[i] = Some((hosts[i].label(), what));
                        if failures.iter().all(Option::is_some) {
                            let tried: Vec<_> = failures.iter().flatten().cloned().collect();
                            connector.primary.none_found(&tried);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::TargetSessionAttrs;

    #[test]
    fn every_host_of_a_connection_string_is_tried_with_its_own_port() {
        let config: Config = "postgres://u@a:1,b,c:3/db".parse().unwrap();
        let labels: Vec<String> = endpoints(&config).iter().map(Endpoint::label).collect();
        assert_eq!(labels, ["a:1", "b:5432", "c:3"]);
        let config: Config = "host=a,/run/pg port=7 user=u".parse().unwrap();
        let labels: Vec<String> = endpoints(&config).iter().map(Endpoint::label).collect();
        assert_eq!(labels, ["a:7", "/run/pg:7"]);
    }

    #[test]
    fn a_host_narrowed_out_keeps_every_setting_that_matters() {
        let mut config: Config =
            "postgres://u:pw@a:1,b:2/db?target_session_attrs=read-write&application_name=x"
                .parse()
                .unwrap();
        config.options("-c statement_timeout=5");
        config.tcp_user_timeout(Duration::from_secs(4));
        let one = one_host(&config, &endpoints(&config)[1]);
        assert_eq!(one.get_hosts(), [Host::Tcp("b".into())]);
        assert_eq!(one.get_ports(), [2]);
        assert_eq!(one.get_user(), Some("u"));
        assert_eq!(one.get_password(), Some(&b"pw"[..]));
        assert_eq!(one.get_dbname(), Some("db"));
        assert_eq!(one.get_options(), Some("-c statement_timeout=5"));
        assert_eq!(one.get_application_name(), Some("x"));
        assert_eq!(one.get_tcp_user_timeout(), Some(&Duration::from_secs(4)));
        assert_eq!(
            one.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
    }

    #[test]
    fn hosts_that_failed_lately_are_tried_last() {
        let config: Config = "postgres://u@a:1,b:2,c:3/db".parse().unwrap();
        let primary = Primary::default();
        primary.none_found(&[("a:1".into(), "no answer".into())]);
        assert!(primary.unknown().is_some());
        let order: Vec<String> = primary
            .order(endpoints(&config))
            .iter()
            .map(Endpoint::label)
            .collect();
        assert_eq!(order, ["b:2", "c:3", "a:1"]);
        primary.found("b:2".into(), &[]);
        assert!(primary.unknown().is_none());
    }
}

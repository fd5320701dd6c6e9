//! What memesd measures about itself, for Prometheus: requests by front, operation and
//! outcome code, their latency, the store's commits, connections, tokens moved, accounts,
//! the catalogue, and the build. Recorded through the `metrics` facade and rendered by
//! `metrics-exporter-prometheus` (`GET /metrics` on the HTTP front, or `--metrics ADDR`).
//!
//! Cheap on the request path: the handles of the per-request series are looked up once and
//! kept in fixed tables (a few array indexings per request instead of a registry lookup),
//! and a histogram sample is one lock-free push. Without an exporter installed every call
//! is a no-op.
//!
//! The names are a contract with `deploy/prometheus` and `deploy/grafana`.

use crate::domain::ErrorCode;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Latency buckets, seconds: fine enough to tell 0.25 ms from 1 ms, and the SLA's 10 ms
/// average and 50 ms maximum apart from what lies beyond.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Changes per store commit.
pub const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The exporter: renders what was recorded.
#[derive(Clone)]
pub struct Exporter(PrometheusHandle);

impl Exporter {
    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        self.0.render()
    }

    /// Drains histogram samples into their buckets; call every few seconds.
    pub fn upkeep(&self) {
        self.0.run_upkeep();
    }
}

/// Set once an exporter is installed: before that, nothing is measured at all.
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// True when metrics are recorded (a front may then time its requests).
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the exporter as the process's recorder (once; later calls get the same one).
pub fn install() -> Result<Exporter, String> {
    static INSTALLED: OnceLock<Exporter> = OnceLock::new();
    if let Some(exporter) = INSTALLED.get() {
        return Ok(exporter.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            &LATENCY_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("memes_store_commit_batch_size".into()),
                &BATCH_BUCKETS,
            )
        })
        .map_err(|e| format!("configuring metrics: {e}"))?
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    describe();
    metrics::gauge!(
        "memes_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "protocol" => crate::protocol::PROTOCOL_VERSION.to_string()
    )
    .set(1.0);
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(INSTALLED.get_or_init(|| Exporter(handle)).clone())
}

/// The `# HELP` line of every family (Prometheus' own check, `promtool check metrics`, wants
/// one for each; a test runs it on a live scrape). A family added below without a line here
/// fails that test.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "memes_build_info",
        "Always 1: the version of memesd and of its protocol, as labels"
    );
    describe_counter!(
        "memes_requests_total",
        "Requests answered, by front, operation and outcome code (ok, or the error code)"
    );
    describe_histogram!(
        "memes_request_duration_seconds",
        Unit::Seconds,
        "Time from reading a request to its reply being ready, by front and operation"
    );
    describe_gauge!("memes_connections_open", "Connections open now, by front");
    describe_counter!(
        "memes_connections_refused_total",
        "Connections refused at the connection cap (--max-connections), by front"
    );
    describe_histogram!(
        "memes_store_commit_duration_seconds",
        Unit::Seconds,
        "Time of one durable commit of the store (a journal flush, a database transaction)"
    );
    describe_histogram!(
        "memes_store_commit_batch_size",
        Unit::Count,
        "Changes made durable by one commit of the store"
    );
    describe_counter!(
        "memes_store_decided_again_total",
        "Changes decided on a stale copy of their account (another host changed it) and decided again on the locked row"
    );
    describe_gauge!(
        "memes_store_writable",
        "1 when the store accepts changes, 0 when it cannot (disk full or failing, database unreachable)"
    );
    describe_gauge!(
        "memes_store_without_primary_seconds",
        Unit::Seconds,
        "How long the PostgreSQL store has been without a primary to write to (0 while it has one)"
    );
    describe_counter!(
        "memes_store_standby_reads_total",
        "Reads (balance, history) served by a standby because no PostgreSQL primary could be reached"
    );
    describe_gauge!(
        "memes_store_changes_waiting",
        "Changes handed to the PostgreSQL store's writers and not answered yet"
    );
    describe_counter!(
        "memes_expiries_written_total",
        "Expire and release entries the expirer wrote (shortly after their instant, not with an account's next change)"
    );
    describe_gauge!("memes_accounts", "Accounts in the ledger");
    describe_gauge!("memes_catalogue_memes", "Memes in the catalogue in service");
    describe_gauge!(
        "memes_catalogue_reload_timestamp_seconds",
        Unit::Seconds,
        "When the catalogue in service was loaded, in seconds since the Unix epoch"
    );
    describe_counter!(
        "memes_claims_cache_total",
        "Bearer tokens looked up in the claims cache, by result (hit: no signature check)"
    );
    describe_counter!(
        "memes_tokens_total",
        "Tokens moved by durable changes, by kind (charged, topped_up, deducted)"
    );
}

/// The fronts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    Unix,
    Http,
}

impl Front {
    const ALL: [Front; 2] = [Front::Unix, Front::Http];

    fn label(self) -> &'static str {
        match self {
            Front::Unix => "unix",
            Front::Http => "http",
        }
    }
}

/// Makes [`Op`] from the protocol's one list of ops ([`crate::protocol::for_each_op`]), so
/// that a new op has its own metric series without a line here.
macro_rules! metric_ops {
    ($($name:literal => $variant:ident($body:ident) at $method:ident $path:literal for $callers:ident,)+) => {
        /// What a request asked for, as the metrics label it: every protocol op, and what
        /// only the HTTP front serves (webhooks, images, anything else).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Op {
            $($variant,)+
            Webhook,
            Image,
            Other,
        }

        impl Op {
            const ALL: [Op; crate::protocol::Op::ALL.len() + 3] =
                [$(Op::$variant,)+ Op::Webhook, Op::Image, Op::Other];

            /// The operation as metrics and logs name it.
            pub fn label(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)+
                    Op::Webhook => "webhook",
                    Op::Image => "image",
                    Op::Other => "other",
                }
            }

            /// The operation of a protocol request.
            pub fn of(request: &crate::protocol::Request) -> Op {
                Op::from(request.op())
            }
        }

        impl From<crate::protocol::Op> for Op {
            fn from(op: crate::protocol::Op) -> Op {
                match op {
                    $(crate::protocol::Op::$variant => Op::$variant,)+
                }
            }
        }
    };
}
crate::protocol::for_each_op!(metric_ops);

/// Outcomes: success, and every error code.
const CODES: usize = 17;

/// The table slot of an outcome. The match is exhaustive, so a new error code cannot be
/// forgotten here.
fn code_index(code: Option<ErrorCode>) -> usize {
    let Some(code) = code else { return 0 };
    1 + match code {
        ErrorCode::BadRequest => 0,
        ErrorCode::InvalidArgument => 1,
        ErrorCode::UnknownOp => 2,
        ErrorCode::LineTooLong => 3,
        ErrorCode::InsufficientTokens => 4,
        ErrorCode::NotFound => 5,
        ErrorCode::NotAllowed => 6,
        ErrorCode::IdempotencyConflict => 7,
        ErrorCode::RateLimited => 8,
        ErrorCode::Busy => 9,
        ErrorCode::Unavailable => 10,
        ErrorCode::Internal => 11,
        ErrorCode::Unauthorized => 12,
        ErrorCode::PayloadTooLarge => 13,
        ErrorCode::HoldExpired => 14,
        ErrorCode::HoldClosed => 15,
    }
}

const FRONTS: usize = Front::ALL.len();
const OPS: usize = Op::ALL.len();

static REQUESTS: [OnceLock<Counter>; FRONTS * OPS * CODES] =
    [const { OnceLock::new() }; FRONTS * OPS * CODES];
static LATENCIES: [OnceLock<Histogram>; FRONTS * OPS] = [const { OnceLock::new() }; FRONTS * OPS];

/// One request answered: its front, operation, outcome (`None`: success) and latency.
pub fn request(front: Front, op: Op, code: Option<ErrorCode>, elapsed: Duration) {
    let series = front as usize * OPS + op as usize;
    REQUESTS[series * CODES + code_index(code)]
        .get_or_init(|| {
            metrics::counter!(
                "memes_requests_total",
                "front" => front.label(),
                "op" => op.label(),
                "code" => code.map_or("ok", ErrorCode::as_str)
            )
        })
        .increment(1);
    LATENCIES[series]
        .get_or_init(|| {
            metrics::histogram!(
                "memes_request_duration_seconds",
                "front" => front.label(),
                "op" => op.label()
            )
        })
        .record(elapsed.as_secs_f64());
}

static OPEN: [OnceLock<Gauge>; FRONTS] = [const { OnceLock::new() }; FRONTS];
static REFUSED: [OnceLock<Counter>; FRONTS] = [const { OnceLock::new() }; FRONTS];

fn open_connections(front: Front) -> &'static Gauge {
    OPEN[front as usize]
        .get_or_init(|| metrics::gauge!("memes_connections_open", "front" => front.label()))
}

/// A connection accepted; the guard counts it closed when dropped.
pub fn connection_opened(front: Front) -> OpenConnection {
    open_connections(front).increment(1.0);
    OpenConnection(front)
}

/// Counts a connection as open while it lives.
pub struct OpenConnection(Front);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        open_connections(self.0).decrement(1.0);
    }
}

/// A connection refused at the connection cap.
pub fn connection_refused(front: Front) {
    REFUSED[front as usize]
        .get_or_init(|| {
            metrics::counter!(
                "memes_connections_refused_total",
                "front" => front.label(),
                "reason" => "busy"
            )
        })
        .increment(1);
}

/// The stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    File,
    Postgres,
}

impl Store {
    fn label(self) -> &'static str {
        match self {
            Store::File => "file",
            Store::Postgres => "postgres",
        }
    }
}

static COMMITS: [OnceLock<(Histogram, Histogram)>; 2] = [const { OnceLock::new() }; 2];

/// One durable commit (a journal flush, a database transaction) of `changes` changes.
pub fn store_commit(store: Store, elapsed: Duration, changes: usize) {
    let (latency, batch) = COMMITS[store as usize].get_or_init(|| {
        (
            metrics::histogram!("memes_store_commit_duration_seconds", "store" => store.label()),
            metrics::histogram!("memes_store_commit_batch_size", "store" => store.label()),
        )
    });
    latency.record(elapsed.as_secs_f64());
    batch.record(changes as f64);
}

/// A change decided on this host's copy of its account, which another host (or writer) had
/// changed meanwhile: it is decided again on the locked row (PostgreSQL store).
pub fn store_decided_again() {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER
        .get_or_init(|| metrics::counter!("memes_store_decided_again_total", "store" => "postgres"))
        .increment(1);
}

/// A read (`account`, `history`) served by a standby because no primary could be reached
/// (PostgreSQL store).
pub fn store_standby_read(read: &'static str) {
    metrics::counter!("memes_store_standby_reads_total", "store" => "postgres", "read" => read)
        .increment(1);
}

/// How long the PostgreSQL store has been without a primary (0 while it has one): set while
/// it looks for one, and back to 0 when it finds one.
pub fn store_without_primary(without: Duration) {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE
        .get_or_init(
            || metrics::gauge!("memes_store_without_primary_seconds", "store" => "postgres"),
        )
        .set(without.as_secs_f64());
}

/// Changes handed to the PostgreSQL store's writers and not answered yet (`delta` is +1 when
/// one is asked for, -1 when it is answered).
pub fn store_changes_waiting(delta: f64) {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE
        .get_or_init(|| metrics::gauge!("memes_store_changes_waiting", "store" => "postgres"))
        .increment(delta);
}

/// Whether the store accepts changes (set when metrics are rendered).
pub fn store_writable(store: &'static str, writable: bool) {
    metrics::gauge!("memes_store_writable", "store" => store).set(if writable { 1.0 } else { 0.0 });
}

/// Accounts in the ledger (set when metrics are rendered).
pub fn accounts(count: u64) {
    metrics::gauge!("memes_accounts").set(count as f64);
}

/// The catalogue in service: its size, and when it was loaded.
pub fn catalogue_loaded(memes: usize) {
    metrics::gauge!("memes_catalogue_memes").set(memes as f64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!("memes_catalogue_reload_timestamp_seconds").set(now);
}

static CLAIMS: [OnceLock<Counter>; 2] = [const { OnceLock::new() }; 2];

/// A bearer token looked up in the claims cache: found (no signature check) or not.
pub fn claims_cache(hit: bool) {
    CLAIMS[usize::from(hit)]
        .get_or_init(|| {
            let result = if hit { "hit" } else { "miss" };
            metrics::counter!("memes_claims_cache_total", "result" => result)
        })
        .increment(1);
}

/// Expire and release entries the expirer wrote (durable).
pub fn expiries_written(entries: u64) {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER
        .get_or_init(|| metrics::counter!("memes_expiries_written_total"))
        .increment(entries);
}

/// How tokens moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    Charged,
    ToppedUp,
    Deducted,
}

static TOKENS: [OnceLock<Counter>; 3] = [const { OnceLock::new() }; 3];

/// Tokens moved by a durable change.
pub fn tokens(kind: Tokens, amount: u64) {
    TOKENS[kind as usize]
        .get_or_init(|| {
            let label = match kind {
                Tokens::Charged => "charged",
                Tokens::ToppedUp => "topped_up",
                Tokens::Deducted => "deducted",
            };
            metrics::counter!("memes_tokens_total", "kind" => label)
        })
        .increment(amount);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_has_its_own_slot() {
        assert!(code_index(Some(ErrorCode::HoldClosed)) < CODES);
        assert_eq!(Op::ALL.len(), OPS);
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "the table index of {op:?}");
        }
        for (i, front) in Front::ALL.iter().enumerate() {
            assert_eq!(*front as usize, i);
        }
    }
}

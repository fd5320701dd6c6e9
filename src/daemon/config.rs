//! memesd's command line, and its translation into the settings of each part. Every value
//! is checked as it is parsed (clap value parsers), so a flag out of range stops memesd
//! before it starts, with a message naming the flag, instead of a daemon that starts and
//! then refuses its work.
//!
//! This is the bottom of memesd's settings: it names no other part of the daemon's
//! configuration. The file and environment layering ([`super::config_file`]) and the
//! subcommands ([`super::transfer`]) build on the types here (the subcommands' arguments are
//! declared here too, as clap needs them inside [`DaemonArgs`]), never the other way round.

pub use super::logging::{LogFormat, colour_logs};
use crate::domain::{MAX_BALANCE, parse_duration};
use crate::fronts::http::HttpLimits;
use crate::fronts::unix::connection::Limits;
use crate::fronts::unix::socket::SocketAccess;
use crate::paths;
use crate::service::access::{self, AdminPolicy};
use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, value_parser};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// memesd: the memes daemon. Owns per-user token balances (a durable, auditable ledger in
/// the data directory) and the meme catalogue, and answers newline-delimited JSON requests
/// on a Unix socket. Runs in the foreground and logs to stderr (level: MEMES_LOG, e.g.
/// `MEMES_LOG=debug`). SIGTERM or SIGINT: finish requests in flight, flush, exit 0.
/// SIGHUP: reload the catalogue and the admin keys.
#[derive(Debug, Clone, Parser)]
#[command(name = "memesd", version)]
pub struct DaemonArgs {
    /// Socket to listen on [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]
    #[arg(long, env = paths::SOCKET_ENV, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Directory for the ledger (journal, checkpoint) and generated images [default: ~/.local/share/memes]
    #[arg(long, env = paths::DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Catalogue file to serve instead of the embedded one (reloaded on SIGHUP)
    #[arg(long, env = "MEMES_CATALOGUE", value_name = "FILE")]
    pub catalogue: Option<PathBuf>,

    /// Tokens granted once, when an account opens (at most the largest balance, 2^53 - 1)
    #[arg(long, default_value_t = 150, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u64).range(0..=MAX_BALANCE))]
    pub welcome_tokens: u64,

    /// How long the welcome grant lasts (e.g. 30d); what is left of it then expires.
    /// Without it, the grant never expires
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub welcome_expires: Option<Duration>,

    /// How often the ledger's expirer looks for lots and holds that have expired, and writes
    /// their `expire` and `release` entries (dated when they expired) without waiting for the
    /// account's next change. `off` (or `0`) leaves them to the next change
    #[arg(long, default_value = "1s", value_parser = parse_expire_every, value_name = "DURATION",
          allow_negative_numbers = true)]
    pub expire_every: Duration,

    /// Tokens charged per delivered meme (1 to 2^53 - 1)
    #[arg(long, default_value_t = 1, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u64).range(1..=MAX_BALANCE))]
    pub meme_cost: u64,

    /// Tokens charged per generated meme image, premium (1 to 2^53 - 1)
    #[arg(long, default_value_t = 5, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u64).range(1..=MAX_BALANCE))]
    pub generate_cost: u64,

    /// Key for signed claims (JWT): an HS256 secret file, or an Ed25519 public key (PEM)
    #[arg(long, value_name = "FILE")]
    pub claims_key: Option<PathBuf>,

    /// Clock difference tolerated with signed claims: a token still verifies this long past
    /// its `exp` and this long before its `nbf`. Whole seconds (`30`, `1m`; `0` for none, at
    /// most `1h`)
    #[arg(long, default_value = "30", value_parser = parse_leeway, value_name = "DURATION",
          allow_negative_numbers = true)]
    pub claims_leeway: Duration,

    /// External image generator, run with `sh -c`: request JSON on stdin, PNG on stdout
    #[arg(long, value_name = "CMD")]
    pub generator_cmd: Option<String>,

    /// How long the external generator may take: seconds (`30`) or with a unit (`1m`, `500ms`)
    #[arg(long, default_value = "30", value_parser = parse_duration, value_name = "DURATION",
          allow_negative_numbers = true)]
    pub generator_timeout: Duration,

    /// Also allow this user (name or uid) to run admin operations (topup, entitle, audit, reload)
    #[arg(long, value_name = "USER")]
    pub admin_uid: Vec<String>,

    /// Also allow members of this group (name or gid) to run admin operations
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Vec<String>,

    /// Permission bits of the socket, in octal (e.g. 660 to let --socket-group connect)
    #[arg(long, default_value = "600", value_parser = parse_mode, value_name = "MODE")]
    pub socket_mode: u32,

    /// Group that owns the socket (name or gid)
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Most connections open at once (1 to 1,000,000); more get a `busy` reply and are closed
    #[arg(long, default_value_t = 4096, value_name = "N", allow_negative_numbers = true,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_CONNECTIONS))]
    pub max_connections: usize,

    /// Close connections that complete no request, or take no reply, for this long: seconds
    /// (`300`) or with a unit (`5m`, `30s`)
    #[arg(long, default_value = "300", value_parser = parse_duration, value_name = "DURATION",
          allow_negative_numbers = true)]
    pub idle_timeout: Duration,

    /// Per-user request limit, like `20/s` or `20` (off by default)
    #[arg(long, value_parser = parse_rate, value_name = "N/s")]
    pub rate_limit: Option<u32>,

    /// Write a checkpoint whenever the journal grew by this many MiB (1 to 1,048,576)
    #[arg(long, default_value_t = 64, value_name = "MIB", allow_negative_numbers = true,
          value_parser = value_parser!(u64).range(1..=MAX_CHECKPOINT_MIB))]
    pub checkpoint_mib: u64,

    /// Also serve the HTTP API on this address, e.g. 127.0.0.1:8080 (TLS belongs to a
    /// reverse proxy)
    #[arg(long, env = "MEMES_HTTP", value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// Admin keys for the HTTP API: a file of `name sha256hex` lines (`memes admin-key new`),
    /// read again on SIGHUP and `memes reload`
    #[arg(long, value_name = "FILE")]
    pub admin_keys: Option<PathBuf>,

    /// Shared secret of payment webhooks (enables POST /v1/webhooks/topup)
    #[arg(long, value_name = "FILE")]
    pub webhook_secret: Option<PathBuf>,

    /// How long an HTTP client has to send a request's head (seconds, or like 10s); an idle
    /// keep-alive connection is closed after as long
    #[arg(long, default_value = "10", value_parser = parse_duration, value_name = "DURATION",
          allow_negative_numbers = true)]
    pub http_header_timeout: Duration,

    /// How long an HTTP client has to send a request's body once its head arrived
    #[arg(long, default_value = "30", value_parser = parse_duration, value_name = "DURATION",
          allow_negative_numbers = true)]
    pub http_body_timeout: Duration,

    /// Serve Prometheus metrics at /metrics on this address (with --http they are also on
    /// the HTTP listener)
    #[arg(long, env = "MEMES_METRICS", value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Without --claims-key, HTTP bearers are plain user ids (development mode); allow that
    /// on an address other than loopback anyway
    #[arg(long)]
    pub http_insecure_user_bearer: bool,

    /// Don't serve the web console at / on the HTTP front (the API is served either way)
    #[arg(long)]
    pub no_console: bool,

    /// Read settings from this TOML file: keys are the long flags without dashes
    /// (`welcome-tokens = 150`, `admin-uid = ["alice"]`). A flag wins over the environment
    /// (MEMES_WELCOME_TOKENS, ...), which wins over the file, which wins over the default
    #[arg(long, env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective settings and where each came from (flag, env, file, default), then
    /// exit
    #[arg(long)]
    pub print_config: bool,

    /// Log lines as text for people, or as JSON objects for log collectors (level: MEMES_LOG)
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Write the log to this file (appending) instead of stderr; SIGHUP reopens it, so that
    /// a rotated log (renamed, then SIGHUP) continues in a new file
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Where the ledger lives: a PostgreSQL connection string (postgres://user@host/db, or
    /// postgres:///db?host=/run/postgresql) that several memesd hosts may share, or `file`
    /// (the journal in the data directory, the default) or `file:DIR`
    #[arg(long, env = "MEMES_STORE", value_name = "URL", value_parser = parse_store)]
    pub store: Option<String>,

    /// File holding the PostgreSQL password (else the one in the URL, else PGPASSWORD)
    #[arg(long, value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,

    /// Connections to PostgreSQL this host keeps (one in sixteen commits batches of changes)
    #[arg(long, default_value_t = 16, value_name = "N", allow_negative_numbers = true,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_STORE_POOL))]
    pub store_pool: usize,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The environment variable that names the configuration file, as `--config` does.
pub const CONFIG_ENV: &str = "MEMES_CONFIG";

/// memesd's subcommands, run by [`super::transfer`].
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Write the file store's whole ledger (balances, entries with their history,
    /// idempotency keys with their stored replies, entitlements) as NDJSON, after auditing
    /// it. memesd must not be running on the data directory.
    Export(ExportArgs),
    /// Load an export into PostgreSQL (--store postgres://…), in one transaction, audited
    /// before it commits. Refuses a database that already holds a ledger unless --replace.
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The data directory whose ledger to export [default: memesd's --data-dir]
    #[arg(long, value_name = "DIR", conflicts_with = "store")]
    pub data_dir: Option<PathBuf>,
    /// Export this PostgreSQL database's ledger instead [default: memesd's --store, if it
    /// is one]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// File holding the PostgreSQL password (else the URL's, else PGPASSWORD)
    #[arg(long, value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Write to this file (created 0600) instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The PostgreSQL database to load into [default: memesd's --store, MEMES_STORE]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// File holding the PostgreSQL password (else the URL's, else PGPASSWORD)
    #[arg(long, value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Read the export from this file instead of stdin
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Discard whatever ledger the database already holds (in the same transaction)
    #[arg(long)]
    pub replace: bool,
}

impl DaemonArgs {
    pub fn data_dir(&self) -> PathBuf {
        paths::data_dir(self.data_dir.as_deref())
    }

    pub fn socket(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(paths::default_socket)
    }

    pub fn admin_policy(&self) -> Result<AdminPolicy, String> {
        let uids = self
            .admin_uid
            .iter()
            .map(|u| access::resolve_user(u))
            .collect::<Result<_, _>>()?;
        let groups = self
            .admin_group
            .iter()
            .map(|g| access::resolve_group(g))
            .collect::<Result<_, _>>()?;
        Ok(AdminPolicy::for_current_user(uids, groups))
    }

    pub fn socket_access(&self) -> Result<SocketAccess, String> {
        let group = self
            .socket_group
            .as_deref()
            .map(access::resolve_group)
            .transpose()?;
        Ok(SocketAccess {
            mode: self.socket_mode,
            group,
        })
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            write_timeout: self.idle_timeout,
            ..Limits::default()
        }
    }

    /// Bounds of the HTTP front.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_connections.max(1),
            header_timeout: self.http_header_timeout,
            body_timeout: self.http_body_timeout,
            ..HttpLimits::default()
        }
    }

    /// Refuses development-mode bearers (user ids as credentials) where others can reach them.
    pub fn check_http_exposure(&self) -> Result<(), String> {
        self.check_http_exposure_at(self.http)
    }

    /// [`DaemonArgs::check_http_exposure`] for the address actually served (systemd may pass
    /// a listener instead of `--http`).
    pub fn check_http_exposure_at(&self, http: Option<SocketAddr>) -> Result<(), String> {
        match http {
            Some(addr)
                if self.claims_key.is_none()
                    && !addr.ip().is_loopback()
                    && !self.http_insecure_user_bearer =>
            {
                Err(format!(
                    "--http {addr} without --claims-key would let anyone who can reach it act as any user \
                     (the bearer would be a plain user id); give --claims-key, listen on a loopback \
                     address, or pass --http-insecure-user-bearer if that is what you want"
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn generator_timeout(&self) -> Duration {
        self.generator_timeout
    }
}

/// The most `--max-connections` accepts: far beyond any descriptor limit, well within what a
/// semaphore can count.
const MAX_CONNECTIONS: u64 = 1_000_000;
/// The most `--checkpoint-mib` accepts (1 TiB of journal between checkpoints).
const MAX_CHECKPOINT_MIB: u64 = 1 << 20;
/// A clock leeway: a duration as [`parse_duration`] reads it, but zero is allowed (no
/// leeway), it must be whole seconds (a JWT's times are seconds), and at most an hour (a
/// leeway is how long a token outlives its `exp`; clocks that far apart need fixing, not a
/// longer life for every token).
fn parse_leeway(text: &str) -> Result<Duration, String> {
    let leeway = match text.trim_end_matches('s').trim_end_matches('.') {
        "0" => Duration::ZERO,
        _ => parse_duration(text)?,
    };
    if leeway.subsec_nanos() != 0 {
        return Err("must be whole seconds".to_string());
    }
    if leeway > Duration::from_secs(3600) {
        return Err("must be at most an hour (1h)".to_string());
    }
    Ok(leeway)
}

/// `--expire-every`: a duration, or `off` / `0` (the expirer does not run: `Duration::ZERO`).
/// At most an hour: expiries written that late serve no one who waits for them.
fn parse_expire_every(text: &str) -> Result<Duration, String> {
    let every = match text {
        "off" | "0" => return Ok(Duration::ZERO),
        _ => parse_duration(text)?,
    };
    match every <= Duration::from_secs(3600) {
        true => Ok(every),
        false => Err("must be at most an hour (1h), or off".to_string()),
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{text:?} is not an octal mode like 600 or 660"))?;
    if mode & !0o777 != 0 || mode & 0o600 != 0o600 {
        return Err(format!(
            "socket mode {text} must keep owner read/write and use only permission bits"
        ));
    }
    Ok(mode)
}

/// The most connections `--store-pool` keeps: far more than PostgreSQL's default
/// `max_connections` (100) would let one host have.
const MAX_STORE_POOL: u64 = 10_000;

/// A `--store` memesd knows (checked as it is parsed, so a bad one exits 2 naming the flag,
/// the environment variable or the file key, like every other bad value).
fn parse_store(text: &str) -> Result<String, String> {
    crate::store::spec::parse(Some(text), None, std::path::Path::new("."))
        .map(|_| text.to_string())
        .map_err(|_| {
            format!("{text:?} is not a store memesd knows: file, file:DIR or postgres://…")
        })
}

/// Requests per second per user: `20/s` or `20`, 1 or more.
fn parse_rate(text: &str) -> Result<u32, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    number
        .parse::<NonZeroU32>()
        .map(NonZeroU32::get)
        .map_err(|_| format!("{text:?} is not a rate like 20/s (1 or more per second)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn modes_and_rates_parse() {
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("060").is_err(), "the owner must keep access");
        assert!(parse_mode("4777").is_err());
        assert_eq!(parse_rate("20/s"), Ok(20));
        assert_eq!(parse_rate("5"), Ok(5));
        assert!(parse_rate("0/s").is_err());
    }

    #[test]
    fn a_claims_leeway_is_whole_seconds_from_none_to_an_hour() {
        assert_eq!(parse_leeway("0"), Ok(Duration::ZERO));
        assert_eq!(parse_leeway("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_leeway("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_leeway("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_leeway("1h"), Ok(Duration::from_secs(3600)));
        assert!(
            parse_leeway("1500ms")
                .unwrap_err()
                .contains("whole seconds")
        );
        assert!(parse_leeway("61m").unwrap_err().contains("at most an hour"));
        assert!(parse_leeway("-5").is_err());
        assert!(parse_leeway("soon").is_err());
        let args = DaemonArgs::try_parse_from(["memesd"]).unwrap();
        assert_eq!(args.claims_leeway, Duration::from_secs(30));
    }

    #[test]
    fn the_expirer_runs_every_second_unless_told_otherwise_or_off() {
        let every = |args: &[&str]| {
            let mut all = vec!["memesd"];
            all.extend_from_slice(args);
            DaemonArgs::try_parse_from(all).map(|args| args.expire_every)
        };
        assert_eq!(every(&[]).unwrap(), Duration::from_secs(1));
        assert_eq!(
            every(&["--expire-every", "250ms"]).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            every(&["--expire-every", "5"]).unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(every(&["--expire-every", "off"]).unwrap(), Duration::ZERO);
        assert_eq!(every(&["--expire-every", "0"]).unwrap(), Duration::ZERO);
        for wrong in ["-1", "2h", "soon"] {
            let error = refusal(&["--expire-every", wrong]);
            assert!(error.contains("--expire-every"), "{wrong}: {error}");
        }
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some(OsStr::new(""))));
        assert!(!colour_logs(true, Some(OsStr::new("1"))));
        assert!(!colour_logs(false, None));
    }

    #[test]
    fn defaults_match_the_documentation() {
        let args = DaemonArgs::parse_from(["memesd"]);
        assert_eq!(
            (args.welcome_tokens, args.meme_cost, args.generate_cost),
            (150, 1, 5)
        );
        assert_eq!(args.socket_mode, 0o600);
        assert_eq!(args.idle_timeout, Duration::from_secs(300));
        assert_eq!(args.generator_timeout, Duration::from_secs(30));
        assert_eq!((args.max_connections, args.checkpoint_mib), (4096, 64));
    }

    /// The error memesd would print for these arguments.
    fn refusal(args: &[&str]) -> String {
        let mut all = vec!["memesd"];
        all.extend_from_slice(args);
        DaemonArgs::try_parse_from(all)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn out_of_range_flags_are_refused_by_name() {
        for (args, flag) in [
            (
                &["--welcome-tokens", "99999999999999999"][..],
                "--welcome-tokens",
            ),
            (&["--welcome-tokens", "-1"], "--welcome-tokens"),
            (&["--meme-cost", "0"], "--meme-cost"),
            (&["--generate-cost", "9007199254740992"], "--generate-cost"),
            (&["--idle-timeout", "nan"], "--idle-timeout"),
            (&["--idle-timeout", "-5"], "--idle-timeout"),
            (&["--max-connections", "-1"], "--max-connections"),
            (&["--idle-timeout", "0"], "--idle-timeout"),
            (&["--generator-timeout", "inf"], "--generator-timeout"),
            (&["--max-connections", "0"], "--max-connections"),
            (&["--checkpoint-mib", "0"], "--checkpoint-mib"),
            (&["--rate-limit", "0/s"], "--rate-limit"),
        ] {
            let error = refusal(args);
            assert!(error.contains(flag), "{args:?}: {error}");
        }
        let largest = (1u64 << 53) - 1;
        let args = DaemonArgs::parse_from(["memesd", "--welcome-tokens", &largest.to_string()]);
        assert_eq!(args.welcome_tokens, largest);
        let args = DaemonArgs::parse_from(["memesd", "--idle-timeout", "5m"]);
        assert_eq!(args.limits().idle_timeout, Duration::from_secs(300));
    }
}

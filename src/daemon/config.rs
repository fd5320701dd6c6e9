//! memesd's command line, and its translation into the settings of each part.

use crate::fronts::http::HttpLimits;
use crate::fronts::unix::connection::Limits;
use crate::fronts::unix::socket::SocketAccess;
use crate::paths;
use crate::service::access::{self, AdminPolicy};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// memesd: the memes daemon. Owns per-user token balances (a durable, auditable ledger in
/// the data directory) and the meme catalogue, and answers newline-delimited JSON requests
/// on a Unix socket. Runs in the foreground and logs to stderr (level: MEMES_LOG, e.g.
/// `MEMES_LOG=debug`). SIGTERM or SIGINT: finish requests in flight, flush, exit 0.
/// SIGHUP: reload the catalogue.
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

    /// Tokens granted once, when an account opens
    #[arg(long, default_value_t = 150, value_name = "N")]
    pub welcome_tokens: u64,

    /// Tokens charged per delivered meme
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub meme_cost: u64,

    /// Tokens charged per generated meme image (premium)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub generate_cost: u64,

    /// Key for signed claims (JWT): an HS256 secret file, or an Ed25519 public key (PEM)
    #[arg(long, value_name = "FILE")]
    pub claims_key: Option<PathBuf>,

    /// External image generator, run with `sh -c`: request JSON on stdin, PNG on stdout
    #[arg(long, value_name = "CMD")]
    pub generator_cmd: Option<String>,

    /// Seconds the external generator may take
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub generator_timeout: f64,

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

    /// Most connections open at once; more get a `busy` reply and are closed
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,

    /// Close connections that complete no request, or take no reply, for this many seconds
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub idle_timeout: f64,

    /// Per-user request limit, like `20/s` or `20` (off by default)
    #[arg(long, value_parser = parse_rate, value_name = "N/s")]
    pub rate_limit: Option<u32>,

    /// Write a checkpoint whenever the journal grew by this many MiB
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub checkpoint_mib: u64,

    /// Also serve the HTTP API on this address, e.g. 127.0.0.1:8080 (TLS belongs to a
    /// reverse proxy)
    #[arg(long, env = "MEMES_HTTP", value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,

    /// Admin keys for the HTTP API: a file of `name sha256hex` lines (`memes admin-key new`)
    #[arg(long, value_name = "FILE")]
    pub admin_keys: Option<PathBuf>,

    /// Shared secret of payment webhooks (enables POST /v1/webhooks/topup)
    #[arg(long, value_name = "FILE")]
    pub webhook_secret: Option<PathBuf>,

    /// Seconds an HTTP client has to send a request's head; an idle keep-alive connection
    /// is closed after as long
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub http_header_timeout: f64,

    /// Seconds an HTTP client has to send a request's body once its head arrived
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub http_body_timeout: f64,

    /// Without --claims-key, HTTP bearers are plain user ids (development mode); allow that
    /// on an address other than loopback anyway
    #[arg(long)]
    pub http_insecure_user_bearer: bool,
}

impl DaemonArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(paths::default_data_dir)
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
            max_connections: self.max_connections.max(1),
            idle_timeout: seconds(self.idle_timeout),
            write_timeout: seconds(self.idle_timeout),
            ..Limits::default()
        }
    }

    /// Bounds of the HTTP front.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.max_connections.max(1),
            header_timeout: seconds(self.http_header_timeout),
            body_timeout: seconds(self.http_body_timeout),
            ..HttpLimits::default()
        }
    }

    /// Refuses development-mode bearers (user ids as credentials) where others can reach them.
    pub fn check_http_exposure(&self) -> Result<(), String> {
        match self.http {
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
        seconds(self.generator_timeout)
    }
}

fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.001)).unwrap_or(Duration::MAX)
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

fn parse_rate(text: &str) -> Result<u32, String> {
    let number = text.strip_suffix("/s").unwrap_or(text);
    match number.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a rate like 20/s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn defaults_match_the_documentation() {
        let args = DaemonArgs::parse_from(["memesd"]);
        assert_eq!(
            (args.welcome_tokens, args.meme_cost, args.generate_cost),
            (150, 1, 5)
        );
        assert_eq!(args.socket_mode, 0o600);
    }
}

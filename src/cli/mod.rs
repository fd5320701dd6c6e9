//! The `memes` command line: one file per subcommand (its arguments and `run`), plus the
//! shared pieces: [`connect`] (finding or starting memesd), [`output`] (tables, JSON,
//! errors) and [`exit`] (exit codes).

pub mod admin_key;
pub mod audit;
pub mod balance;
pub mod bench;
pub mod capture;
pub mod completions;
pub mod connect;
pub mod entitle;
pub mod exit;
pub mod get;
pub mod history;
pub mod hold;
pub mod lots;
pub mod output;
pub mod refund;
pub mod reload;
pub mod remote;
pub mod search;
pub mod similar;
pub mod status;
pub mod stop;
pub mod topup;
pub mod void;

use crate::client::{Client, ClientError};
use crate::paths;
use crate::protocol::{ErrorBody, ErrorCode, Request};
use clap::{Parser, Subcommand, ValueEnum};
use exit::Exit;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::path::PathBuf;
use std::process::ExitCode;

/// memes: memes as a service, from the command line. Talks to memesd over its socket;
/// when no daemon runs on the default socket, starts one in the background. With --url it
/// talks to a (remote) memesd's HTTP API instead.
#[derive(Debug, Parser)]
#[command(name = "memes", version, after_help = exit::HELP)]
pub struct Cli {
    /// memesd's socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]
    #[arg(long, global = true, env = paths::SOCKET_ENV, value_name = "PATH",
          help_heading = GLOBAL_OPTIONS)]
    pub socket: Option<PathBuf>,

    /// Talk to memesd's HTTP API at this URL instead of a socket (http://host:port), with the
    /// bearer credential in MEMES_TOKEN (a user's token or an admin key; without it, the
    /// request's user id, as a development-mode memesd takes it)
    #[arg(long, global = true, env = "MEMES_URL", value_name = "URL",
          help_heading = GLOBAL_OPTIONS)]
    pub url: Option<String>,

    /// Print the reply's data (or the error) as one JSON document on stdout, for scripts
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub json: bool,

    /// When to colour the error and warning labels on stderr (auto: when stderr is a terminal
    /// and NO_COLOR is not set)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto,
          value_name = "WHEN", help_heading = GLOBAL_OPTIONS)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

/// A count of 1 or more, refused in those words (clap's own range parser would say
/// "0 is not in 1..18446744073709551615").
pub fn parse_count(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("must be 1 or more".to_string()),
        Ok(count) => Ok(count),
        Err(_) if text.trim().starts_with('-') => Err("must be 1 or more".to_string()),
        Err(_) => Err("not a whole number (1 or more)".to_string()),
    }
}

/// The heading of the options every command takes.
const GLOBAL_OPTIONS: &str = "Global options";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Get a meme (charged only when delivered)
    Get(get::GetArgs),
    /// Add tokens to a balance, or deduct them with a negative amount (admins)
    Topup(topup::TopupArgs),
    /// Show a balance and tier
    Balance(balance::BalanceArgs),
    /// List the lots a balance is made of, in the order they are spent
    Lots(lots::LotsArgs),
    /// Set tokens of a balance aside until captured, voided or expired (admins)
    Hold(hold::HoldArgs),
    /// End a hold by spending (part of) it; the rest goes back (admins)
    Capture(capture::CaptureArgs),
    /// End a hold by giving all of it back (admins)
    Void(void::VoidArgs),
    /// Give back (part of) a charge, to the lots it came from (admins)
    Refund(refund::RefundArgs),
    /// Show a user's ledger entries, oldest first
    History(history::HistoryArgs),
    /// Browse ranked matches for a query, by its words and its meaning, free of charge
    Search(search::SearchArgs),
    /// List the memes nearest in meaning to one meme, free of charge
    Similar(similar::SimilarArgs),
    /// Set a user's tier (admins)
    Entitle(entitle::EntitleArgs),
    /// Replay the whole ledger and check every invariant (admins), or an export offline
    /// (--export FILE); exit 1 on a discrepancy
    Audit(audit::AuditArgs),
    /// Reload the meme catalogue and the admin keys from their files (admins; same as SIGHUP)
    Reload,
    /// Show the daemon's version, uptime and counts
    Status,
    /// Stop the memesd on this socket (and no other), and wait until it has finished
    Stop,
    /// Measure memesd: throughput and latency percentiles under load
    Bench(bench::BenchOptions),
    /// Print a shell completion script
    Completions(completions::CompletionsArgs),
    /// Make admin keys for memesd's HTTP API (local; no daemon needed)
    AdminKey(admin_key::AdminKeyArgs),
}

/// Why a command failed: its exit code, the error code `--json` prints, a message, and a
/// hint where one helps.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    /// memesd's error code for a refusal, else the CLI's own (see [`Exit::code`]).
    pub code: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            code: exit.code(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Failure {
        self.code = code;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl Failure {
    /// The daemon's refusal of `request` (or the same check made here before sending it),
    /// with the hint that fits that request.
    pub fn refused(error: ErrorBody, request: &Request) -> Failure {
        Failure {
            exit: error.code.into(),
            code: error.code.as_str(),
            // Said once: memesd's own message may already say to try again later.
            hint: hint(error.code, request)
                .filter(|hint| !(hint == TRY_LATER && error.message.contains("try again later"))),
            message: error.message,
        }
    }
}

/// The hint for a refusal that a later retry may not meet.
const TRY_LATER: &str = "nothing was changed; try again later";

/// The hint table: what to do about a refusal, given what was asked.
fn hint(code: ErrorCode, request: &Request) -> Option<String> {
    let command = |words: &[&str]| output::shell_command(words.iter().copied());
    match (code, request) {
        // A deduction is refused when it exceeds the balance: more tokens are not the answer.
        (ErrorCode::InsufficientTokens, Request::Topup(topup)) if topup.amount < 0 => {
            Some(format!(
                "a deduction never takes a balance below zero; deduct at most the balance (see `{}`)",
                command(&["memes", "balance", "--user", &topup.user])
            ))
        }
        (ErrorCode::InsufficientTokens, Request::Get(get)) => Some(format!(
            "an admin can add tokens with `{} --amount N`",
            command(&["memes", "topup", "--user", &get.user])
        )),
        (ErrorCode::InsufficientTokens, _) => {
            Some("an admin can add tokens with `memes topup --user USER --amount N`".into())
        }
        (ErrorCode::IdempotencyConflict, _) => Some(
            "use a new key for a new request; reuse a key only to retry the same request".into(),
        ),
        (ErrorCode::RateLimited | ErrorCode::Busy | ErrorCode::Unavailable, _) => {
            Some(TRY_LATER.into())
        }
        // Over HTTP only: the socket knows its peers.
        (ErrorCode::Unauthorized, _) => Some(format!(
            "give memes a credential in {}: an admin key (`memes admin-key new`) for admin operations, the user's token otherwise",
            remote::TOKEN_ENV
        )),
        _ => None,
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        match error {
            ClientError::Unreachable { .. } => {
                Failure::new(Exit::Unreachable, output::with_causes(&error))
                    .with_hint("is memesd running?")
            }
            other => Failure::new(Exit::Failure, output::with_causes(&other)),
        }
    }
}

impl From<remote::RemoteError> for Failure {
    fn from(error: remote::RemoteError) -> Failure {
        match error {
            remote::RemoteError::Unreachable { .. } => {
                Failure::new(Exit::Unreachable, output::with_causes(&error))
                    .with_hint("is memesd running there, with --http?")
            }
            other => Failure::new(Exit::Failure, output::with_causes(&other)),
        }
    }
}

/// What every subcommand gets: the global options and a lazily opened connection (to the
/// socket, or to the HTTP API with `--url`).
pub struct Ctx {
    pub socket: Option<PathBuf>,
    pub url: Option<String>,
    pub json: bool,
    pub color: bool,
    client: Option<Client>,
    remote: Option<remote::Remote>,
}

impl Ctx {
    /// Sends a request (validated here first, so bad input fails fast with exit 2) and
    /// returns the reply's raw data.
    pub fn call(&mut self, request: &Request) -> Result<Box<RawValue>, Failure> {
        let refused = |error| Failure::refused(error, request);
        request.validate().map_err(refused)?;
        if let Some(url) = &self.url {
            if self.remote.is_none() {
                let remote =
                    remote::Remote::new(url).map_err(|why| Failure::new(Exit::Invalid, why))?;
                self.remote = Some(remote);
            }
            let remote = self.remote.as_ref().expect("made above");
            return remote.call(request)?.map_err(refused);
        }
        if self.client.is_none() {
            self.client = Some(connect::connect(self.socket.as_deref())?);
        }
        let client = self.client.as_mut().expect("connected above");
        client.call(request)?.map_err(refused)
    }

    /// [`Ctx::call`], decoding the data as `T`.
    pub fn call_as<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<(T, Box<RawValue>), Failure> {
        let raw = self.call(request)?;
        let data = serde_json::from_str(raw.get()).map_err(|e| {
            Failure::new(Exit::Failure, format!("unexpected reply from memesd: {e}"))
        })?;
        Ok((data, raw))
    }
}

/// Entry point of the `memes` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return output::usage_error(&error, output::json_requested()),
    };
    let mut ctx = Ctx {
        socket: cli.socket.clone(),
        url: cli.url.clone(),
        json: cli.json,
        color: output::use_color(cli.color),
        client: None,
        remote: None,
    };
    let outcome = match cli.command {
        Command::Get(args) => get::run(&args, &mut ctx),
        Command::Topup(args) => topup::run(&args, &mut ctx),
        Command::Balance(args) => balance::run(&args, &mut ctx),
        Command::Lots(args) => lots::run(&args, &mut ctx),
        Command::Hold(args) => hold::run(&args, &mut ctx),
        Command::Capture(args) => capture::run(&args, &mut ctx),
        Command::Void(args) => void::run(&args, &mut ctx),
        Command::Refund(args) => refund::run(&args, &mut ctx),
        Command::History(args) => history::run(&args, &mut ctx),
        Command::Search(args) => search::run(&args, &mut ctx),
        Command::Similar(args) => similar::run(&args, &mut ctx),
        Command::Entitle(args) => entitle::run(&args, &mut ctx),
        Command::Audit(args) => audit::run(&args, &mut ctx),
        Command::Reload => reload::run(&mut ctx),
        Command::Status => status::run(&mut ctx),
        Command::Stop => stop::run(&ctx),
        Command::Bench(args) => bench::run(&args, &ctx),
        Command::Completions(args) => completions::run(&args),
        Command::AdminKey(args) => admin_key::run(&args, &ctx),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(failure) => {
            output::print_failure(&failure, ctx.color, ctx.json);
            failure.exit.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorBody, StatusRequest};

    #[test]
    fn try_again_later_is_said_once() {
        let request = Request::Status(StatusRequest {});
        let told = ErrorBody::new(
            ErrorCode::Unavailable,
            "the ledger cannot be written (x); nothing was changed, try again later",
        );
        assert_eq!(Failure::refused(told, &request).hint, None);
        let untold = ErrorBody::new(ErrorCode::Busy, "memesd is busy");
        assert_eq!(
            Failure::refused(untold, &request).hint.as_deref(),
            Some(TRY_LATER)
        );
    }
}

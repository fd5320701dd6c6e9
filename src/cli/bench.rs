//! `memes bench`: hands over to the `memes-bench` load generator, installed next to `memes`
//! (or on `PATH`), with the global options this command was given. The generator is a
//! binary of its own so that neither the library nor the daemon carries it; its options are
//! defined here, once, so that `memes bench --help`, the man page and the shell completions
//! list every one of them and `memes-bench` parses exactly the same.

use super::connect::sibling_program;
use super::exit::Exit;
use super::{Cli, Ctx, Failure};
use crate::domain::parse_duration;
use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, ValueEnum};
use serde::Serialize;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The load generator's options (all but `--socket` and `--json`, which `memes` has as
/// global options).
#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// Connections
    #[arg(long, short = 'c', default_value_t = 64, value_name = "C",
          allow_negative_numbers = true, value_parser = at_least_one)]
    pub conns: usize,
    /// Requests in flight per connection (closed loop)
    #[arg(long, short = 'd', default_value_t = 1, value_name = "D",
          allow_negative_numbers = true, value_parser = at_least_one)]
    pub depth: usize,
    /// Total requests to send
    #[arg(long, short = 'n', conflicts_with = "duration", value_name = "N")]
    pub requests: Option<u64>,
    /// Send for this long instead of a number of requests: seconds (`10`) or with a unit
    /// (`500ms`, `1m`)
    #[arg(long, value_name = "DURATION", allow_negative_numbers = true,
          value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open loop: this many requests per second in total, latency from the schedule
    #[arg(long, value_name = "R", allow_negative_numbers = true, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// What to send
    #[arg(long, value_enum, default_value_t = BenchOp::Get)]
    pub op: BenchOp,
    /// Distinct users to spread the requests over
    #[arg(long, default_value_t = 10_000, value_name = "U",
          allow_negative_numbers = true, value_parser = at_least_one)]
    pub users: usize,
    /// Bench user ids are this prefix plus a number
    #[arg(long, default_value = "bench-", value_name = "PREFIX")]
    pub user_prefix: String,
    /// Query of `get` requests
    #[arg(long, default_value = "cat")]
    pub query: String,
    /// Send this line instead (`{id}`, `{user}` and `{seq}`, the request's number on its
    /// connection, are filled in), e.g. for another daemon
    #[arg(long, value_name = "JSON")]
    pub template: Option<String>,
    /// First top up every bench user by a large amount (pipelined), then measure. Opens
    /// permanent accounts: refused on a ledger that already holds any, unless --force
    #[arg(long)]
    pub prepare: bool,
    /// Prepare, or send changes, even into a ledger that holds accounts other than the
    /// bench users'
    #[arg(long)]
    pub force: bool,
    /// Exit 1 if the p99 latency is above this many milliseconds
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = parse_threshold)]
    pub max_p99: Option<f64>,
    /// Exit 1 if the maximum latency is above this many milliseconds
    #[arg(long, value_name = "MS", allow_negative_numbers = true, value_parser = parse_threshold)]
    pub max_latency: Option<f64>,
    /// Exit 1 if throughput (successful requests per second) is below this
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_threshold)]
    pub min_rps: Option<f64>,
    /// Exit 1 if more than this many requests get an error reply (none are allowed by default)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_errors: u64,
    /// Client threads (1 keeps the generator's own footprint small)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Over HTTP instead: charged `GET /memes` on this server (`http://host:port`), a
    /// rotating bearer per request
    #[arg(long, value_name = "URL")]
    pub http: Option<String>,
    /// With --http: the bearers to rotate over, one per line (signed tokens, say), instead
    /// of the bench user ids
    #[arg(long, value_name = "FILE", requires = "http")]
    pub bearers: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchOp {
    /// Charged `get` (durable)
    Get,
    /// `topup` by 1 (durable; admins)
    Topup,
    /// `balance` (read)
    Balance,
    /// 70% get, 25% balance, 5% topup
    Mixed,
}

pub fn run(_args: &BenchOptions, ctx: &Ctx) -> Result<Exit, Failure> {
    let program = sibling_program("memes-bench");
    let mut command = Command::new(&program);
    if let Some(socket) = &ctx.socket {
        command.arg("--socket").arg(socket);
    }
    if let Some(url) = &ctx.url {
        command.arg("--http").arg(url);
    }
    if ctx.json {
        command.arg("--json");
    }
    command.args(given_options());
    // Only returns if the program could not be started.
    let error = command.exec();
    Err(Failure::new(
        Exit::Failure,
        format!("cannot run {}: {error}", program.display()),
    ))
}

/// The bench options given on this process's command line, as `--long=value` arguments for
/// `memes-bench`. Read back from clap's matches (this command line parsed already, so this
/// parse succeeds) rather than rebuilt from [`BenchOptions`] field by field, so a new option
/// is forwarded without anyone remembering to. Options from the environment are left to
/// `memes-bench`, which reads the same variables.
fn given_options() -> Vec<OsString> {
    let Ok(matches) = Cli::command().try_get_matches_from(std::env::args_os()) else {
        return Vec::new();
    };
    let Some(("bench", bench)) = matches.subcommand() else {
        return Vec::new();
    };
    let mut forwarded = Vec::new();
    for arg in BenchOptions::command().get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if bench.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            forwarded.push(OsString::from(format!("--{long}")));
            continue;
        }
        for value in bench.get_raw(id).into_iter().flatten() {
            let mut option = OsString::from(format!("--{long}="));
            option.push(value);
            forwarded.push(option);
        }
    }
    forwarded
}

impl BenchOptions {
    /// These options alone, as a command (to list them).
    fn command() -> clap::Command {
        <BenchOptions as Args>::augment_args(clap::Command::new("memes-bench"))
    }
}

/// A count of 1 or more.
fn at_least_one(text: &str) -> Result<usize, String> {
    let count = super::parse_count(text)?;
    usize::try_from(count).map_err(|_| "too large".to_string())
}

/// The most requests per second `--rate` schedules: far beyond any daemon here, and a send
/// interval still a whole number of nanoseconds.
const MAX_RATE: f64 = 100_000_000.0;

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!(
            "not a number of requests per second above 0 and at most {MAX_RATE}"
        )),
    }
}

/// A latency or throughput threshold: a finite number, 0 or more.
fn parse_threshold(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("not a finite number, 0 or more".to_string()),
    }
}

//! `memes-bench` (run as `memes bench`): a load generator for operators checking their own
//! service level. A binary of its own so that the library, the CLI and the daemon do not
//! carry it.
//!
//! Closed loop: C connections, each keeping D requests in flight; latency runs from the
//! moment a request is written. Open loop (`--rate R`): requests are scheduled at R per
//! second in total, whatever the daemon does, and latency runs from each request's
//! *scheduled* send time, so a daemon stall shows up as latency instead of silently
//! slowing the load (coordinated omission). `--prepare` first gives every bench user a large
//! balance with pipelined top-ups, so a long run never hits `insufficient_tokens` and a
//! million accounts take seconds.
//!
//! Error replies are counted by code and are not throughput: `rps` counts successful requests
//! only, and a run with more errors than `--max-errors` (none by default) exits 1, like a run
//! that misses any other threshold. A `--prepare` with any failed top-up stops the run.
//!
//! `--template` sends any NDJSON line (`{id}`, `{user}`, `{seq}` filled in; `{n}` is an older
//! name of `{seq}`, kept out of the help because clap prints `{n}` as a line break), which lets
//! the same generator measure a reference daemon in the same run.

mod http;
mod open_loop;

use clap::Parser;
use hdrhistogram::Histogram;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use memes::cli::bench::{BenchOp, BenchOptions};
use memes::cli::exit::Exit;
use memes::cli::{Failure, connect, output};
use memes::client::Client;
use memes::paths;
use memes::progress::Progress;
use memes::protocol::{BalanceRequest, Request, StatusData, StatusRequest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};

/// Measure memesd: throughput and latency percentiles under load
#[derive(Debug, Parser)]
#[command(name = "memes bench", bin_name = "memes bench", version)]
pub struct BenchArgs {
    /// memesd's socket [default: $XDG_RUNTIME_DIR/memes/memesd.sock, else /tmp/memes-$UID/memesd.sock]
    #[arg(long, env = paths::SOCKET_ENV, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the report as one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: BenchOptions,
}

/// The generator's own options are defined in the library, where `memes bench` parses them
/// too (so its help, man page and completions list them); here they read as if declared on
/// `BenchArgs`.
impl std::ops::Deref for BenchArgs {
    type Target = BenchOptions;

    fn deref(&self) -> &BenchOptions {
        &self.options
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub op: String,
    pub mode: &'static str,
    pub conns: usize,
    pub depth: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Requests sent (and answered).
    pub requests: u64,
    /// Requests answered with `"ok": true`.
    pub succeeded: u64,
    pub secs: f64,
    /// Successful requests per second: errors are not throughput.
    pub rps: f64,
    pub latency_ms: Latency,
    /// Error replies by code.
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    /// True when Ctrl-C ended the run early: what was measured until then.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// How requests are produced.
struct Workload {
    op: BenchOp,
    users: Vec<String>,
    query: String,
    template: Option<String>,
}

impl open_loop::Requests for Workload {
    fn write(&self, conn: usize, n: u64, conns: usize, out: &mut Vec<u8>) {
        self.line(conn, n, conns, out);
    }
}

impl Workload {
    fn line(&self, conn: usize, n: u64, conns: usize, out: &mut Vec<u8>) {
        let user = &self.users[(conn + n as usize * conns) % self.users.len()];
        let id = ((conn as u64) << 40) | n;
        if let Some(template) = &self.template {
            let line = template
                .replace("{id}", &id.to_string())
                .replace("{user}", user)
                .replace("{seq}", &n.to_string())
                .replace("{n}", &n.to_string());
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            return;
        }
        let op = match self.op {
            BenchOp::Mixed => match n % 20 {
                0 => BenchOp::Topup,
                1..=5 => BenchOp::Balance,
                _ => BenchOp::Get,
            },
            op => op,
        };
        let request = match op {
            BenchOp::Topup => {
                serde_json::json!({"id": id, "op": "topup", "user": user, "amount": 1})
            }
            BenchOp::Balance => serde_json::json!({"id": id, "op": "balance", "user": user}),
            _ => serde_json::json!({"id": id, "op": "get", "user": user, "query": self.query}),
        };
        serde_json::to_writer(&mut *out, &request).expect("request serialises");
        out.push(b'\n');
    }
}

/// When a connection stops sending.
#[derive(Clone, Copy)]
enum Quota {
    Requests(u64),
    Until(Instant),
}

impl Quota {
    /// Connection `conn`'s quota in a closed loop started at `started`: until `--duration` is
    /// up, else its share of `-n` (100,000 by default).
    fn of(args: &BenchArgs, started: Instant, conn: usize) -> Quota {
        match args.duration {
            Some(duration) => Quota::Until(started + duration),
            None => Quota::Requests(share(args.requests.unwrap_or(100_000), args.conns, conn)),
        }
    }

    fn allows(self, sent: u64) -> bool {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return false;
        }
        match self {
            Quota::Requests(n) => sent < n,
            Quota::Until(end) => Instant::now() < end,
        }
    }
}

/// Set by the first Ctrl-C of a run: connections (or, in an open loop, the clock) stop
/// sending, the replies in flight are read, and the run reports what it measured, marked
/// partial.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C ends a run early with a partial report; a second one quits at once.
fn stop_on_ctrl_c(runtime: &tokio::runtime::Runtime) {
    runtime.spawn(async {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        INTERRUPTED.store(true, Ordering::Relaxed);
        eprintln!(
            "memes bench: interrupted; reading the replies in flight for a partial report (Ctrl-C again to quit now)"
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            // The user asked twice: no report is wanted any more.
            std::process::exit(130);
        }
    });
}

/// Replies received so far, all connections together: what the progress bar shows (read by
/// its own thread, so the request loops only bump a counter).
static ANSWERED: AtomicU64 = AtomicU64::new(0);

/// Progress of a run on a terminal (nothing with --json or off a terminal): a bar of replies
/// for a number of requests, of seconds for a duration.
fn progress(args: &BenchArgs) -> Progress {
    ANSWERED.store(0, Ordering::Relaxed);
    let requests = match (args.rate, args.requests, args.duration) {
        (_, Some(n), _) => Some(n),
        (Some(rate), None, Some(duration)) => Some((rate * duration.as_secs_f64()) as u64),
        (Some(rate), None, None) => Some((rate * 10.0) as u64),
        (None, None, Some(_)) => None,
        (None, None, None) => Some(100_000),
    };
    match (requests, args.duration) {
        (Some(n), _) => {
            let bar = Progress::bar(args.json, n, "replies");
            bar.track(|| ANSWERED.load(Ordering::Relaxed));
            bar
        }
        (None, duration) => Progress::timer(args.json, duration.unwrap_or_default()),
    }
}

/// One connection's tally.
struct Tally {
    latencies: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latencies: Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, started: Instant, reply: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Code {
            code: String,
        }
        #[derive(Deserialize)]
        struct Outcome {
            ok: bool,
            #[serde(default)]
            error: Option<Code>,
        }
        ANSWERED.fetch_add(1, Ordering::Relaxed);
        let nanos = started.elapsed().as_nanos().clamp(1, 600_000_000_000) as u64;
        self.latencies.record(nanos).map_err(|e| e.to_string())?;
        let outcome: Outcome = serde_json::from_slice(reply).map_err(|e| {
            format!(
                "reply is not JSON ({e}): {}",
                String::from_utf8_lossy(reply).trim()
            )
        })?;
        if !outcome.ok {
            let code = outcome
                .error
                .map_or_else(|| "unknown".to_string(), |e| e.code);
            *self.errors.entry(code).or_default() += 1;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = match BenchArgs::try_parse() {
        Ok(args) => args,
        Err(error) => return output::usage_error(&error, output::json_requested()),
    };
    match run(&args) {
        // Interrupted: the partial report is printed; exit as a shell reports Ctrl-C.
        Ok(_) if INTERRUPTED.load(Ordering::Relaxed) => ExitCode::from(130),
        Ok(exit) => exit.into(),
        Err(failure) => {
            let color = output::use_color(memes::cli::ColorChoice::Auto);
            output::print_failure(&failure, color, args.json);
            failure.exit.into()
        }
    }
}

fn run(args: &BenchArgs) -> Result<Exit, Failure> {
    if let Some(url) = &args.http {
        return http::run(args, url);
    }
    // A load generator never starts a daemon: one started on the default socket would take
    // the load into the user's own ledger.
    let socket = args.socket.clone().unwrap_or_else(paths::default_socket);
    let mut client = connect::connect(Some(&socket))?;
    match args.prepare {
        true => check_prepare(&mut client, args)?,
        false => check_ledger(&mut client, args)?,
    }
    drop(client);
    let workload = Arc::new(Workload {
        op: args.op,
        users: (0..args.users)
            .map(|i| format!("{}{i}", args.user_prefix))
            .collect(),
        query: args.query.clone(),
        template: args.template.clone(),
    });
    let runtime = runtime(args)?;
    let failed = |e: String| Failure::new(Exit::Failure, format!("bench: {e}"));
    if args.prepare {
        let started = Instant::now();
        ANSWERED.store(0, Ordering::Relaxed);
        let shown = Progress::bar(args.json, args.users as u64, "accounts prepared");
        shown.track(|| ANSWERED.load(Ordering::Relaxed));
        let prepared = runtime
            .block_on(prepare(&socket, &workload, args.conns.min(16)))
            .map_err(failed)?;
        drop(shown);
        if prepared.error_total > 0 {
            return Err(failed(format!(
                "preparing: {} of {} top-ups failed: {:?}",
                prepared.error_total, prepared.requests, prepared.errors
            )));
        }
        eprintln!(
            "memes bench: prepared {} users in {:.2} s ({:.0} top-ups/s)",
            args.users,
            started.elapsed().as_secs_f64(),
            args.users as f64 / started.elapsed().as_secs_f64(),
        );
    }
    let shown = progress(args);
    let report = runtime
        .block_on(measure(&socket, workload, args))
        .map_err(failed)?;
    drop(shown);
    Ok(conclude(&report, args))
}

/// How many of `total` requests connection `conn` of `conns` sends: request n goes to
/// connection n % conns.
fn share(total: u64, conns: usize, conn: usize) -> u64 {
    total / conns as u64 + u64::from((conn as u64) < total % conns as u64)
}

/// The generator's runtime: one thread, or `--threads` workers.
fn runtime(args: &BenchArgs) -> Result<tokio::runtime::Runtime, Failure> {
    match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .inspect(stop_on_ctrl_c)
    .map_err(|e| Failure::new(Exit::Failure, format!("starting the runtime: {e}")))
}

/// Prints the report (as JSON with `--json`) and the thresholds it missed: a run that
/// missed any fails.
fn conclude(report: &Report, args: &BenchArgs) -> Exit {
    let report = &Report {
        partial: INTERRUPTED.load(Ordering::Relaxed),
        ..report.clone()
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serialises")
        );
    } else {
        print_report(report);
    }
    let missed = missed_thresholds(report, args);
    for miss in &missed {
        eprintln!("memes bench: threshold missed: {miss}");
    }
    if missed.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    }
}

/// Without `--prepare`, changes go only into a ledger that is empty or was prepared for
/// this bench (its first user has an account), unless forced: a bench must never open
/// permanent accounts among somebody's real ones by accident.
fn check_ledger(client: &mut Client, args: &BenchArgs) -> Result<(), Failure> {
    if args.op == BenchOp::Balance || args.template.is_some() || args.force {
        return Ok(());
    }
    let status: StatusData = client
        .call_as(&Request::Status(StatusRequest {}))?
        .map_err(|e| Failure::new(Exit::Failure, format!("asking memesd for its status: {e}")))?;
    let accounts = status.accounts;
    let first = format!("{}0", args.user_prefix);
    let balance = Request::Balance(BalanceRequest {
        user: first.clone(),
        at: None,
    });
    let prepared = client.call_as::<serde_json::Value>(&balance)?.is_ok();
    if accounts == 0 || prepared {
        return Ok(());
    }
    Err(Failure::new(
        Exit::Invalid,
        format!(
            "this ledger holds {accounts} accounts and no bench user ({first} has none): the bench would open up to {} permanent accounts among them",
            args.users
        ),
    )
    .with_hint(
        "bench against a daemon kept for benchmarks (its own --data-dir, prepared with --prepare), or add --force to write into this ledger anyway",
    ))
}

/// The balance `--prepare` gives every bench user.
const PREPARE_TOKENS: u64 = 1_000_000_000;

/// `--prepare` opens accounts that can never be removed: only on an empty ledger, unless
/// forced, and never without saying so.
fn check_prepare(client: &mut Client, args: &BenchArgs) -> Result<(), Failure> {
    let status: StatusData = client
        .call_as(&Request::Status(StatusRequest {}))?
        .map_err(|e| Failure::new(Exit::Failure, format!("asking memesd for its status: {e}")))?;
    let last = format!("{}{}", args.user_prefix, args.users - 1);
    if status.accounts > 0 && !args.force {
        return Err(Failure::new(
            Exit::Invalid,
            format!(
                "--prepare would add {} permanent accounts ({}0 to {last}) to a ledger that holds {} accounts",
                args.users, args.user_prefix, status.accounts
            ),
        )
        .with_hint(
            "prepare against a daemon kept for benchmarks (its own --data-dir), or add --force to prepare here anyway",
        ));
    }
    eprintln!(
        "memes bench: --prepare opens accounts {}0 to {last} with {PREPARE_TOKENS} tokens each; \
         they are permanent (a ledger never deletes accounts)",
        args.user_prefix
    );
    Ok(())
}

fn missed_thresholds(report: &Report, args: &BenchArgs) -> Vec<String> {
    let mut missed = Vec::new();
    if report.error_total > args.max_errors {
        missed.push(format!(
            "{} errors > --max-errors {}: {:?}",
            report.error_total, args.max_errors, report.errors
        ));
    }
    if let Some(max) = args.max_p99
        && report.latency_ms.p99 > max
    {
        missed.push(format!("p99 {:.3} ms > {max} ms", report.latency_ms.p99));
    }
    if let Some(max) = args.max_latency
        && report.latency_ms.max > max
    {
        missed.push(format!(
            "max latency {:.3} ms > {max} ms",
            report.latency_ms.max
        ));
    }
    if let Some(min) = args.min_rps
        && report.rps < min
    {
        missed.push(format!("{:.0} requests/s < {min}", report.rps));
    }
    missed
}

fn print_report(report: &Report) {
    let l = &report.latency_ms;
    let mode = match report.rate {
        Some(rate) => format!("open loop at {rate:.0}/s"),
        None => format!("closed loop, {} in flight per connection", report.depth),
    };
    println!(
        "memes bench: op={} conns={} ({mode})",
        report.op, report.conns
    );
    if report.partial {
        println!("  PARTIAL    interrupted by Ctrl-C: what was measured until then");
    }
    println!(
        "  requests   {} in {:.2} s ({} succeeded)",
        report.requests, report.secs, report.succeeded
    );
    println!("  throughput {:.0} successful requests/s", report.rps);
    println!(
        "  latency    mean {:.3} ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms",
        l.mean, l.p50, l.p90, l.p99, l.p999, l.max
    );
    match report.error_total {
        0 => println!("  errors     0"),
        n => println!("  errors     {n}: {:?}", report.errors),
    }
}

async fn open(socket: &Path) -> Result<Stream, String> {
    let name = socket
        .to_fs_name::<GenericFilePath>()
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    Stream::connect(name)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))
}

/// Tops every user up by a large amount, pipelined deeply.
async fn prepare(socket: &Path, workload: &Workload, conns: usize) -> Result<Report, String> {
    let prepare = Arc::new(Workload {
        op: BenchOp::Topup,
        users: workload.users.clone(),
        query: String::new(),
        template: Some(format!(
            r#"{{"id":{{id}},"op":"topup","user":"{{user}}","amount":{PREPARE_TOKENS}}}"#
        )),
    });
    let per_conn = workload.users.len().div_ceil(conns) as u64;
    let mut tasks = Vec::new();
    for conn in 0..conns {
        let stream = open(socket).await?;
        let prepare = prepare.clone();
        tasks.push(tokio::spawn(closed_loop(
            stream,
            prepare,
            conn,
            conns,
            64,
            Quota::Requests(per_conn),
        )));
    }
    collect(tasks, "prepare", 64, None, Instant::now()).await
}

async fn measure(
    socket: &Path,
    workload: Arc<Workload>,
    args: &BenchArgs,
) -> Result<Report, String> {
    let op = match &args.template {
        Some(_) => "template".to_string(),
        None => format!("{:?}", args.op).to_lowercase(),
    };
    if let Some(rate) = args.rate {
        let total = open_loop::total(args, rate);
        return open_loop(socket, workload, args.conns, rate, total, &op).await;
    }
    let mut streams = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        streams.push(open(socket).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (conn, stream) in streams.into_iter().enumerate() {
        let quota = Quota::of(args, started, conn);
        let workload = workload.clone();
        tasks.push(tokio::spawn(closed_loop(
            stream, workload, conn, args.conns, args.depth, quota,
        )));
    }
    collect(tasks, &op, args.depth, None, started).await
}

/// Waits for every connection's task and makes one report of their tallies.
async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Result<(Tally, u64), String>>>,
    op: &str,
    depth: usize,
    rate: Option<f64>,
    started: Instant,
) -> Result<Report, String> {
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await.map_err(|e| e.to_string())??);
    }
    summarise(tallies, op, depth, rate, started)
}

/// One report from every connection's tally.
fn summarise(
    tallies: Vec<(Tally, u64)>,
    op: &str,
    depth: usize,
    rate: Option<f64>,
    started: Instant,
) -> Result<Report, String> {
    let conns = tallies.len();
    let mut total = Tally::new();
    let mut requests = 0;
    for (tally, sent) in tallies {
        total
            .latencies
            .add(&tally.latencies)
            .map_err(|e| e.to_string())?;
        for (code, n) in tally.errors {
            *total.errors.entry(code).or_default() += n;
        }
        requests += sent;
    }
    let secs = started.elapsed().as_secs_f64();
    let error_total: u64 = total.errors.values().sum();
    let succeeded = requests.saturating_sub(error_total);
    let h = &total.latencies;
    let ms = |nanos: u64| nanos as f64 / 1e6;
    Ok(Report {
        op: op.to_string(),
        mode: if rate.is_some() { "open" } else { "closed" },
        conns,
        depth,
        rate,
        requests,
        succeeded,
        secs,
        rps: succeeded as f64 / secs,
        latency_ms: Latency {
            mean: h.mean() / 1e6,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        },
        error_total,
        errors: total.errors,
        partial: false,
    })
}

/// Keeps `depth` requests in flight until the quota is used up.
async fn closed_loop(
    stream: Stream,
    workload: Arc<Workload>,
    conn: usize,
    conns: usize,
    depth: usize,
    quota: Quota,
) -> Result<(Tally, u64), String> {
    let mut reader = BufReader::with_capacity(64 * 1024, &stream);
    let mut writer = BufWriter::with_capacity(64 * 1024, &stream);
    let mut tally = Tally::new();
    let mut in_flight = VecDeque::with_capacity(depth);
    let (mut sent, mut line, mut reply) = (0u64, Vec::with_capacity(256), Vec::with_capacity(512));
    loop {
        while in_flight.len() < depth && quota.allows(sent) {
            line.clear();
            workload.line(conn, sent, conns, &mut line);
            writer.write_all(&line).await.map_err(|e| e.to_string())?;
            in_flight.push_back(Instant::now());
            sent += 1;
        }
        writer.flush().await.map_err(|e| e.to_string())?;
        let Some(started) = in_flight.pop_front() else {
            return Ok((tally, sent));
        };
        read_reply(&mut reader, &mut reply).await?;
        tally.record(started, &reply)?;
    }
}

/// Reads the next reply line into `reply` (replacing what it held).
async fn read_reply(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    reply: &mut Vec<u8>,
) -> Result<(), String> {
    reply.clear();
    match reader.read_until(b'\n', reply).await {
        Ok(0) => Err("the daemon closed the connection".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The open loop over the socket ([`open_loop`]).
async fn open_loop(
    socket: &Path,
    workload: Arc<Workload>,
    conns: usize,
    rate: f64,
    total: u64,
    op: &str,
) -> Result<Report, String> {
    open_loop::run(conns, rate, total, op, workload, |scheduled, expected| {
        let stream = std::os::unix::net::UnixStream::connect(socket)
            .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let reader = tokio::net::UnixStream::from_std(stream).map_err(|e| e.to_string())?;
        Ok((
            writer,
            tokio::spawn(read_scheduled(reader, scheduled, expected)),
        ))
    })
    .await
}

/// Reads `expected` replies, measuring each from the time it was scheduled.
async fn read_scheduled(
    stream: tokio::net::UnixStream,
    scheduled: open_loop::Schedule,
    expected: u64,
) -> Result<(Tally, u64), String> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let (mut tally, mut reply) = (Tally::new(), Vec::with_capacity(512));
    let mut tick = open_loop::ticker();
    for read in 0..expected {
        let Some(next) =
            open_loop::next_reply(read_reply(&mut reader, &mut reply), &scheduled, &mut tick).await
        else {
            return Ok((tally, read));
        };
        next?;
        let started = scheduled
            .lock()
            .expect("not poisoned")
            .pop_front()
            .ok_or("a reply to a request never sent")?;
        tally.record(started, &reply)?;
    }
    Ok((tally, expected))
}

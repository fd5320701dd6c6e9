//! The open loop, over either transport: one clock thread writes each request at its
//! scheduled time straight to its connection (no hand-off to another thread on the way),
//! while one task per connection reads the replies and measures each from its *scheduled*
//! time. The transports supply the connections and the requests' bytes; the schedule, the
//! clock and the tally are here, once.

use super::{BenchArgs, Report, Tally, share, summarise};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The scheduled send times of a connection's requests still waiting for their reply, oldest
/// first: the clock pushes, the connection's reader pops.
pub type Schedule = Arc<Mutex<VecDeque<Instant>>>;

/// A connection's reader: the tally of the replies it read, and how many.
pub type Reader = JoinHandle<Result<(Tally, u64), String>>;

/// The bytes of each request.
pub trait Requests: Send + Sync + 'static {
    /// Appends request `n` of connection `conn` (of `conns`) to `out`.
    fn write(&self, conn: usize, n: u64, conns: usize, out: &mut Vec<u8>);
}

/// How many requests a run at `rate` sends: `-n`, or `--duration`'s worth (10 s by default).
pub fn total(args: &BenchArgs, rate: f64) -> u64 {
    match (args.requests, args.duration) {
        (Some(n), _) => n,
        (None, Some(duration)) => (rate * duration.as_secs_f64()) as u64,
        (None, None) => (rate * 10.0) as u64,
    }
}

/// Runs `total` requests at `rate` per second over `conns` connections. `connect` opens
/// connection `conn`, starts its reader (which expects that many replies, timed against the
/// schedule) and returns the blocking writer the clock thread writes to; it must be
/// non-blocking, so that a server falling behind shows as latency rather than stalling the
/// clock on one connection.
pub async fn run<W, R>(
    conns: usize,
    rate: f64,
    total: u64,
    op: &str,
    requests: Arc<R>,
    mut connect: impl FnMut(Schedule, u64) -> Result<(W, Reader), String>,
) -> Result<Report, String>
where
    W: Write + Send + 'static,
    R: Requests,
{
    let mut writers = Vec::with_capacity(conns);
    let mut readers = Vec::with_capacity(conns);
    for conn in 0..conns {
        let scheduled = Schedule::default();
        let expected = share(total, conns, conn);
        let (writer, reader) = connect(scheduled.clone(), expected)?;
        readers.push(reader);
        writers.push((writer, scheduled));
    }
    let started = Instant::now();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(send_on_schedule(
            started,
            rate,
            total,
            &mut writers,
            &*requests,
        ));
    });
    let sending = async {
        match done_rx.await {
            Ok(Ok(())) => std::future::pending().await,
            Ok(Err(error)) => Err::<Report, String>(error),
            Err(_) => Err("the sending thread died".to_string()),
        }
    };
    let receiving = async {
        let mut finished = Vec::with_capacity(conns);
        for reader in readers {
            finished.push(reader.await.map_err(|e| e.to_string())??);
        }
        Ok::<_, String>(finished)
    };
    let tallies = tokio::select! {
        failed = sending => return failed,
        tallies = receiving => tallies?,
    };
    summarise(tallies, op, 1, Some(rate), started)
}

/// The clock: writes `total` requests at `rate` per second in total, round robin over the
/// connections. A write that would block is retried: the server is then not keeping up, and
/// the wait shows as latency because the schedule does not move.
fn send_on_schedule<W: Write>(
    start: Instant,
    rate: f64,
    total: u64,
    conns: &mut [(W, Schedule)],
    requests: &impl Requests,
) -> Result<(), String> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut request = Vec::with_capacity(256);
    let count = conns.len();
    precise_clock(rate);
    for n in 0..total {
        let at = start + interval.mul_f64(n as f64);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let conn = n as usize % count;
        request.clear();
        requests.write(conn, n / count as u64, count, &mut request);
        let (stream, scheduled) = &mut conns[conn];
        scheduled.lock().expect("not poisoned").push_back(at);
        let mut rest = &request[..];
        while !rest.is_empty() {
            match stream.write(rest) {
                Ok(0) => return Err("the server closed a connection".into()),
                Ok(written) => rest = &rest[written..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("sending: {e}")),
            }
        }
    }
    Ok(())
}

/// Makes this (sleeping) clock thread wake on time: late wake-ups would show up as latency
/// that is the generator's, not the server's. Timer slack goes to 1 ns (the default 50 µs
/// is added to every sleep), and where the system allows it (root, or RLIMIT_RTPRIO) the
/// thread gets the lowest real-time priority, so a busy CPU does not delay its wake-ups by
/// milliseconds. Not at rates so high that the thread would barely sleep: it must never
/// crowd out the server.
fn precise_clock(rate: f64) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let _ = nix::sys::prctl::set_timerslack(1);
    if rate <= 100_000.0 {
        let realtime = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
        let _ = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, realtime);
    }
}

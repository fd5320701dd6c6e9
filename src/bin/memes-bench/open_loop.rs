//! The open loop, over either transport: one clock thread writes each request at its
//! scheduled time straight to its connection (no hand-off to another thread on the way),
//! while one task per connection reads the replies and measures each from its *scheduled*
//! time. The transports supply the connections and the requests' bytes; the schedule, the
//! clock and the tally are here, once.

use super::{BenchArgs, INTERRUPTED, Report, Tally, share, summarise};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Set once the clock has stopped sending (its schedule done, or cut short by Ctrl-C): from
/// then on a connection whose schedule is empty has every reply it will ever get.
static CLOCK_STOPPED: AtomicBool = AtomicBool::new(false);

/// How often a reader waiting for a reply looks whether the run was interrupted and every
/// request it sent is answered (a reply that is not coming cannot wake it).
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// The timer a connection's reader gives [`next_reply`]: one per reader, not one per reply.
pub fn ticker() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Awaits `read` (a connection's next reply), or gives up with `None` once a Ctrl-C has
/// stopped the clock and every request sent on this connection is answered: the readers
/// expect a reply per *scheduled* request, and after Ctrl-C fewer are sent. The read is never
/// cancelled halfway through a reply (a reply split across reads would be lost): it is only
/// dropped when nothing more is coming.
pub async fn next_reply<T>(
    read: impl Future<Output = T>,
    scheduled: &Schedule,
    tick: &mut tokio::time::Interval,
) -> Option<T> {
    let answered_all = || {
        INTERRUPTED.load(Ordering::Relaxed)
            && CLOCK_STOPPED.load(Ordering::Acquire)
            && scheduled.lock().expect("not poisoned").is_empty()
    };
    let mut read = std::pin::pin!(read);
    loop {
        if answered_all() {
            return None;
        }
        tokio::select! {
            biased;
            reply = &mut read => return Some(reply),
            _ = tick.tick() => {}
        }
    }
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
    CLOCK_STOPPED.store(false, Ordering::Release);
    std::thread::spawn(move || {
        let sent = send_on_schedule(started, rate, total, &mut writers, &*requests);
        CLOCK_STOPPED.store(true, Ordering::Release);
        let _ = done_tx.send(sent);
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
/// connections, or fewer if Ctrl-C stops it. A write that would block is retried: the server is then not keeping up, and
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
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
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

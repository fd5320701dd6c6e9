//! The checkpointer: writes checkpoints of the live ledger (see [`super::snapshot`]) in a
//! thread of its own, whenever the journal writer asks for one, and decides when not to.
//!
//! A checkpoint is only a shortcut for start-up; the journal is what must keep going. So:
//! - a checkpoint that fails removes its temporary file at once: left behind on a full disk,
//!   it holds exactly the space the journal needs to resume;
//! - after a failure the next attempt waits ([`Retry`]: 1 s, doubling, at most 64 s by
//!   default). A failed checkpoint leaves the journal as far ahead of the last one as before,
//!   so without this every journal flush would ask for another full rewrite;
//! - a checkpoint is not started while its file system has less free space than the
//!   checkpoint's estimated size plus [`JOURNAL_RESERVE`] (such a start counts as a failure,
//!   so the free space is looked at again after the same waits). Once the space is back, the
//!   next attempt goes ahead, and the journal writer, which probes the disk by itself, has
//!   its space too.
//!
//! A problem is logged as a warning when it starts and when it ends, not at every attempt.

use super::journal::Shared;
use super::ledger::Ledger;
use super::recovery::{self, SNAPSHOT_FILE};
use super::{CHUNK, snapshot};
use crate::atomic_file;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Free space a checkpoint must leave for the journal, beyond its own size: room for a few
/// seconds of writes at full speed while the checkpoint is written, so that the journal
/// never runs out because a checkpoint took its space.
pub const JOURNAL_RESERVE: u64 = 8 << 20;

/// Account and key rows serialised to estimate a checkpoint's size.
const SAMPLE: usize = 256;

/// What the background checkpointer did since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints written and published.
    pub written: u64,
    /// Attempts that failed (their temporary file removed).
    pub failed: u64,
    /// Attempts not started for lack of free space.
    pub deferred: u64,
}

/// How long to wait before the next attempt after a failed one: `first`, doubling after each
/// further failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
}

/// Asks the checkpointer thread for a checkpoint.
#[derive(Clone)]
pub(crate) struct Trigger {
    tx: SyncSender<()>,
    /// A request is waiting to be served: later ones add nothing (and, while the
    /// checkpointer waits out a failure, would only wake it at every flush).
    requested: Arc<AtomicBool>,
}

impl Trigger {
    /// Asks for a checkpoint unless one is already requested.
    pub fn request(&self) {
        if !self.requested.swap(true, Ordering::AcqRel) {
            let _ = self.tx.try_send(());
        }
    }
}

/// Starts the checkpointer thread. It stops once every [`Trigger`] is dropped.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    dir: PathBuf,
    last: Arc<AtomicU64>,
    stats: Arc<Mutex<CheckpointStats>>,
    retry: Retry,
) -> io::Result<(Trigger, JoinHandle<()>)> {
    let (tx, rx) = sync_channel::<()>(1);
    let requested = Arc::new(AtomicBool::new(false));
    let checkpointer = Checkpointer {
        shared,
        dir,
        last,
        stats,
        retry,
        delay: None,
        not_before: None,
        warned: Vec::new(),
    };
    let flag = requested.clone();
    let thread = std::thread::Builder::new()
        .name("memes-checkpoint".into())
        .spawn(move || checkpointer.run(&rx, &flag))?;
    Ok((Trigger { tx, requested }, thread))
}

/// The checkpointer thread's state.
struct Checkpointer {
    shared: Arc<Shared>,
    dir: PathBuf,
    last: Arc<AtomicU64>,
    stats: Arc<Mutex<CheckpointStats>>,
    retry: Retry,
    /// The wait after the latest failure, while failing.
    delay: Option<Duration>,
    /// No attempt before this, while failing.
    not_before: Option<Instant>,
    /// The problems logged as warnings since the last checkpoint written.
    warned: Vec<Trouble>,
}

/// Why checkpoints are not being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    NoSpace,
    Failing,
}

impl Checkpointer {
    fn run(mut self, requests: &Receiver<()>, requested: &AtomicBool) {
        loop {
            let wait = match requested.load(Ordering::Acquire) {
                false => None,
                true => match self.not_before {
                    Some(at) => Some(at.saturating_duration_since(Instant::now())),
                    None => Some(Duration::ZERO),
                },
            };
            match wait {
                None => {
                    if requests.recv().is_err() {
                        return;
                    }
                }
                Some(wait) if !wait.is_zero() => match requests.recv_timeout(wait) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                Some(_) => {
                    requested.store(false, Ordering::Release);
                    if self.attempt() {
                        // Requests made while it was written were measured against the
                        // previous checkpoint; the next flush asks again if still due.
                        requested.store(false, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Tries to write a checkpoint; true if one was written.
    fn attempt(&mut self) -> bool {
        let target = self.dir.join(SNAPSHOT_FILE);
        let needed = estimate_size(&self.shared).saturating_add(JOURNAL_RESERVE);
        match free_space(&self.dir) {
            Ok(free) if free < needed => {
                self.count(|stats| stats.deferred += 1);
                self.failed(Trouble::NoSpace, format!(
                    "not writing checkpoint {}: {} has {} KiB free, and a checkpoint needs about {} KiB plus {} KiB kept for the journal",
                    target.display(),
                    self.dir.display(),
                    free >> 10,
                    (needed - JOURNAL_RESERVE) >> 10,
                    JOURNAL_RESERVE >> 10,
                ));
                return false;
            }
            Ok(_) => {}
            // Not knowing costs nothing but the check: a failing write cleans up after itself.
            Err(e) => tracing::debug!("free space of {}: {e}", self.dir.display()),
        }
        match write(&self.shared, &self.dir) {
            Ok(Some(offset)) => {
                self.last.store(offset, Ordering::Relaxed);
                self.count(|stats| stats.written += 1);
                self.delay = None;
                self.not_before = None;
                if !self.warned.is_empty() {
                    self.warned.clear();
                    tracing::info!(
                        "checkpoint {} written again (journal offset {offset})",
                        target.display()
                    );
                }
                true
            }
            // Changes were taken back while it was copied: the journal is failing, and the
            // next request comes once it writes again.
            Ok(None) => false,
            Err(e) => {
                self.count(|stats| stats.failed += 1);
                self.failed(Trouble::Failing, format!("checkpoint failed: {e}"));
                false
            }
        }
    }

    /// Schedules the next attempt after a failure, and logs a new problem as a warning.
    fn failed(&mut self, trouble: Trouble, problem: String) {
        let delay = match self.delay {
            None => self.retry.first,
            Some(delay) => (delay * 2).min(self.retry.max),
        };
        self.delay = Some(delay);
        self.not_before = Some(Instant::now() + delay);
        if self.warned.contains(&trouble) {
            tracing::debug!("{problem}; next attempt in {delay:.0?}");
        } else {
            tracing::warn!(
                "{problem}; next attempt in {delay:.0?}, then at growing intervals up to {:.0?} (logged again once one succeeds)",
                self.retry.max
            );
            self.warned.push(trouble);
        }
    }

    fn count(&self, update: impl FnOnce(&mut CheckpointStats)) {
        update(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Bytes available to this process on the file system holding `dir`.
fn free_space(dir: &Path) -> io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

/// About how many bytes a checkpoint of the ledger takes now: rows spread over both tables
/// are serialised, and their mean size multiplied out.
fn estimate_size(shared: &Shared) -> u64 {
    let state = shared.lock();
    let ledger = &state.ledger;
    let mut buf = Vec::with_capacity(64 << 10);
    let mut estimate = 1024;
    let accounts = ledger.accounts_len();
    let sampled = accounts.min(SAMPLE);
    for i in 0..sampled {
        let (user, account) = ledger
            .account_at(i * accounts / sampled)
            .expect("index in range");
        snapshot::account_row(&mut buf, false, user, account);
    }
    if sampled > 0 {
        estimate += buf.len() as u64 * accounts as u64 / sampled as u64;
    }
    buf.clear();
    let keys = ledger.keys_len();
    let sampled = keys.min(SAMPLE);
    for i in 0..sampled {
        let (key, entry) = ledger.key_at(i * keys / sampled).expect("index in range");
        snapshot::key_row(&mut buf, false, key, entry);
    }
    if sampled > 0 {
        estimate += buf.len() as u64 * keys as u64 / sampled as u64;
    }
    estimate
}

/// Writes a checkpoint of the live ledger without stopping it; returns the journal offset it
/// covers, or `None` if changes were taken back meanwhile (it is then discarded). Errors
/// name the file; whatever fails, the temporary file is removed.
pub(crate) fn write(shared: &Shared, dir: &Path) -> io::Result<Option<u64>> {
    let _one_at_a_time = shared
        .checkpointing
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let tmp = recovery::temporary_snapshot_path(dir);
    match copy(shared, &tmp) {
        Ok(Some(journal_offset)) => {
            atomic_file::publish(&tmp, &dir.join(SNAPSHOT_FILE))?;
            tracing::debug!("checkpoint written at journal offset {journal_offset}");
            Ok(Some(journal_offset))
        }
        Ok(None) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(None)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Copies the ledger into the file `tmp`; returns the journal offset it covers, or `None`
/// if changes were taken back while it was copied.
fn copy(shared: &Shared, tmp: &Path) -> io::Result<Option<u64>> {
    let (journal_offset, next_seq, rollbacks) = {
        let state = shared.lock();
        (
            state.ledger.end(),
            state.ledger.next_seq(),
            state.queue.rollbacks,
        )
    };
    let written = |e| atomic_file::context("writing", tmp, e);
    // Paced so that the journal's flushes never queue behind a whole checkpoint's.
    let mut file = snapshot::PacedWriter::new(atomic_file::create(tmp)?);
    // Rows are serialised under the lock, a chunk at a time, and written outside it.
    let mut buf = Vec::with_capacity(1 << 20);
    snapshot::begin(&mut buf, journal_offset, next_seq);
    for (state, rows) in shared.chunks(CHUNK, Ledger::accounts_len) {
        for i in rows {
            let (user, account) = state.ledger.account_at(i).expect("index in range");
            snapshot::account_row(&mut buf, i == 0, user, account);
        }
        drop(state);
        file.write_all(&buf).map_err(written)?;
        buf.clear();
    }
    snapshot::begin_keys(&mut buf);
    for (state, rows) in shared.chunks(CHUNK, Ledger::keys_len) {
        for i in rows {
            let (key, entry) = state.ledger.key_at(i).expect("index in range");
            snapshot::key_row(&mut buf, i == 0, key, entry);
        }
        drop(state);
        file.write_all(&buf).map_err(written)?;
        buf.clear();
    }
    snapshot::end_keys(&mut buf);
    for (state, rows) in shared.chunks(CHUNK, Ledger::holds_len) {
        for i in rows {
            let (user, hold) = state.ledger.hold_at(i).expect("index in range");
            snapshot::hold_row(&mut buf, i == 0, user, hold);
        }
        drop(state);
        file.write_all(&buf).map_err(written)?;
        buf.clear();
    }
    snapshot::end_holds(&mut buf);
    file.write_all(&buf).map_err(written)?;
    file.seal().map_err(written)?;
    // Everything the checkpoint copied must be on disk before it may replace the old one,
    // and nothing may have been taken back while it was copied.
    let barrier = shared.barrier();
    let durable = barrier.wait_blocking().is_ok();
    if !durable || shared.lock().queue.rollbacks != rollbacks {
        return Ok(None);
    }
    Ok(Some(journal_offset))
}

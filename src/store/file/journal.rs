//! The journal's write path: the file I/O boundary and the group-commit writer.
//!
//! Changes are applied to the ledger and encoded into the *pending batch* under one lock, in
//! order. A single writer thread repeatedly takes the whole pending batch, writes it at the
//! end of the journal, calls `fdatasync` once, and only then resolves every waiter in it. So
//! a reply that says "charged" is sent after its line is on disk, while concurrent requests
//! share one flush (one fdatasync costs ~0.1-0.4 ms here; one per request caps a daemon at a
//! few thousand changes per second).
//!
//! Each batch is closed by a batch end line (see [`super::record::BatchEnd`]), and written
//! over zeros set aside ahead of time (see [`ZeroedAhead`]), so that the flush need not also
//! commit a larger file.
//!
//! If a write or flush fails (disk full, I/O error), nothing in that batch, nor anything
//! applied after it, is acknowledged: the writer takes those changes back out of memory (so
//! memory never runs ahead of the disk), cuts the file back to its last durable byte before it
//! tells anyone, refuses
//! further changes, and probes the disk until a write succeeds again.
//!
//! All file access goes through [`JournalFile`], which is where tests inject faults.

use super::ledger::{Ledger, Undo};
use super::record::BatchEnd;
use crate::store::Commit;
use crate::telemetry;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// The operations the writer performs on the journal file.
pub trait JournalFile: Send {
    /// Writes all of `buf` starting at byte `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Flushes written data to stable storage (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl JournalFile for File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// Changes applied in memory but not yet on disk, in order.
#[derive(Default)]
pub(crate) struct Batch {
    /// Encoded journal lines.
    pub bytes: Vec<u8>,
    /// Replies waiting for these lines (and reads waiting for everything before them).
    pub waiters: Vec<Waiter>,
    /// How to take the lines' changes back out of memory.
    pub undo: Vec<Undo>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.waiters.is_empty()
    }
}

/// Group-commit bookkeeping, guarded by the same lock as the ledger so that the order of
/// lines in the file is the order in which changes were applied.
pub(crate) struct Queue {
    pub pending: Batch,
    /// The writer holds a batch it has not finished writing.
    pub writer_busy: bool,
    /// The writer waits on the condition variable (so appenders must wake it).
    pub writer_sleeping: bool,
    pub shutdown: bool,
    /// Why writes are failing, while they are.
    pub degraded: Option<String>,
    /// Journal length known to be on disk.
    pub durable_end: u64,
    /// Incremented whenever changes are taken back; checkpoints compare it.
    pub rollbacks: u64,
}

impl Queue {
    pub fn new(durable_end: u64) -> Queue {
        Queue {
            pending: Batch::default(),
            writer_busy: false,
            writer_sleeping: false,
            shutdown: false,
            degraded: None,
            durable_end,
            rollbacks: 0,
        }
    }

    /// Registers a waiter for the change just appended to the pending batch.
    /// Returns the commit and whether the writer must be woken.
    pub fn commit_change(&mut self) -> (Commit, bool) {
        let (tx, rx) = oneshot::channel();
        self.pending.waiters.push(tx);
        (Commit::pending(rx), self.writer_sleeping)
    }

    /// A commit for a read: resolves once everything applied so far is on disk, so a reader
    /// never reports state that a failed write could still take back.
    pub fn barrier(&mut self) -> (Commit, bool) {
        if self.pending.is_empty() && !self.writer_busy {
            return (Commit::done(), false);
        }
        self.commit_change()
    }
}

/// The ledger and its queue behind one lock, plus the writer's wake-up.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub wake: Condvar,
    /// Held while a checkpoint is written: one at a time (they share a temporary file).
    pub checkpointing: Mutex<()>,
}

pub(crate) struct State {
    pub ledger: Ledger,
    pub queue: Queue,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug that already took the daemon down; the
        // state itself is never left half-changed by a panic-free path.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A commit that resolves once everything applied so far is durable.
    pub fn barrier(&self) -> Commit {
        let (commit, wake) = self.lock().queue.barrier();
        if wake {
            self.wake.notify_one();
        }
        commit
    }

    /// The rows of a ledger table (`len` of them) in chunks of `chunk`, each handed out with
    /// the lock held: long scans take the lock once per chunk and never hold up requests
    /// for long (drop the guard before doing I/O). Rows appended meanwhile are included.
    pub fn chunks(&self, chunk: usize, len: fn(&Ledger) -> usize) -> Chunks<'_> {
        Chunks {
            shared: self,
            chunk,
            len,
            start: 0,
        }
    }
}

/// See [`Shared::chunks`].
pub(crate) struct Chunks<'a> {
    shared: &'a Shared,
    chunk: usize,
    len: fn(&Ledger) -> usize,
    start: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = (MutexGuard<'a, State>, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let state = self.shared.lock();
        let stop = (self.start + self.chunk).min((self.len)(&state.ledger));
        if stop <= self.start {
            return None;
        }
        let rows = self.start..stop;
        self.start = stop;
        Some((state, rows))
    }
}

/// Settings of the writer.
pub(crate) struct WriterConfig {
    /// Shown in messages.
    pub path: String,
    /// How often a failing disk is probed.
    pub retry_interval: Duration,
    /// The file's length when the writer starts; bytes past the ledger's end are zeros.
    pub file_len: u64,
}

/// Zeroed space kept ahead of the journal's end.
///
/// Appending to a file makes each `fdatasync` commit the new file size and blocks too: a file
/// system journal commit, which on this kind of disk is where the 8-40 ms flush stalls come
/// from. Overwriting bytes the file already has, and that were flushed, needs only the data
/// written. So the writer fills a slice of zeros past the end (and flushes it) whenever less
/// than a quarter slice is left, between batches.
///
/// A crash can then leave a batch that was being written with holes of zeros in it, not only
/// a short tail; recovery tells that from damage by the batch end lines.
struct ZeroedAhead {
    /// Where the zeroed space ends (the file's length).
    end: u64,
    /// After a failed fill (a full disk), the journal end from which to try again.
    retry_from: u64,
}

impl ZeroedAhead {
    const SLICE: u64 = 1 << 20;

    /// Tops the zeroed space up if it runs low. Failure only costs speed: appends still work.
    fn top_up(&mut self, file: &mut dyn JournalFile, durable_end: u64) {
        static ZEROS: [u8; ZeroedAhead::SLICE as usize] = [0; ZeroedAhead::SLICE as usize];
        let from = self.end.max(durable_end);
        if from - durable_end >= Self::SLICE / 4 || durable_end < self.retry_from {
            return;
        }
        match file
            .write_all_at(&ZEROS, from)
            .and_then(|()| file.sync_data())
        {
            Ok(()) => self.end = from + Self::SLICE,
            Err(error) => {
                tracing::debug!("cannot set journal space aside: {error}");
                // The file may have grown by a part of the zeros; cut it back to plain data.
                let _ = file.set_len(from);
                self.end = from;
                self.retry_from = durable_end + Self::SLICE;
            }
        }
    }
}

/// The writer thread's body: runs until shutdown with an empty queue. `on_durable` is called
/// with the new durable length after each successful flush (the checkpoint trigger).
pub(crate) fn run_writer(
    shared: &Shared,
    mut file: Box<dyn JournalFile>,
    config: WriterConfig,
    on_durable: impl Fn(u64),
) {
    let mut batch = Batch::default();
    let (mut durable_end, mut durable_next_seq) = {
        let state = shared.lock();
        (state.queue.durable_end, state.ledger.next_seq())
    };
    let mut zeroed = ZeroedAhead {
        end: config.file_len,
        retry_from: 0,
    };
    zeroed.top_up(file.as_mut(), durable_end);
    loop {
        let batch_next_seq = {
            let mut state = shared.lock();
            loop {
                if !state.queue.pending.is_empty() {
                    std::mem::swap(&mut batch, &mut state.queue.pending);
                    state.queue.writer_busy = true;
                    break;
                }
                state.queue.writer_busy = false;
                if state.queue.shutdown {
                    drop(state);
                    // A cleanly stopped journal ends with its last line. (A crash leaves the
                    // zeros, which recovery reads as such.)
                    let _ = file.set_len(durable_end).and_then(|()| file.sync_data());
                    return;
                }
                state.queue.writer_sleeping = true;
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                state.queue.writer_sleeping = false;
            }
            if !batch.bytes.is_empty() {
                debug_assert_eq!(state.ledger.end(), durable_end + batch.bytes.len() as u64);
                let end_line = BatchEnd {
                    batch_start: durable_end,
                }
                .encode(&mut batch.bytes);
                state.ledger.skip(end_line);
            }
            // With the pending batch taken, everything applied so far is in `batch`.
            state.ledger.next_seq()
        };
        if !batch.bytes.is_empty() {
            let flush_started = std::time::Instant::now();
            let written = file
                .write_all_at(&batch.bytes, durable_end)
                .and_then(|()| file.sync_data());
            if let Err(error) = written {
                let reason = format!("cannot write {}: {error}", config.path);
                tracing::error!(
                    "{reason}; refusing balance changes until the disk accepts writes again"
                );
                // Whatever part of the batch reached the file must not outlive the refusals
                // sent next: after a crash it would replay changes said not to have happened.
                if let Err(error) = file.set_len(durable_end).and_then(|()| file.sync_data()) {
                    tracing::error!(
                        "cannot cut {} back to its durable end: {error}",
                        config.path
                    );
                }
                zeroed.end = durable_end;
                roll_back(shared, &mut batch, durable_end, durable_next_seq, &reason);
                if !recover_disk(shared, file.as_mut(), durable_end, &config) {
                    return;
                }
                continue;
            }
            telemetry::store_commit(
                telemetry::Store::File,
                flush_started.elapsed(),
                batch.waiters.len(),
            );
            durable_end += batch.bytes.len() as u64;
            durable_next_seq = batch_next_seq;
            shared.lock().queue.durable_end = durable_end;
            on_durable(durable_end);
        }
        let wrote = !batch.bytes.is_empty();
        for waiter in batch.waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        batch.bytes.clear();
        batch.undo.clear();
        if wrote {
            zeroed.top_up(file.as_mut(), durable_end);
        }
    }
}

/// Takes every change that is not on disk (the failed batch and anything applied after it)
/// back out of memory, and fails their waiters.
fn roll_back(
    shared: &Shared,
    failed: &mut Batch,
    durable_end: u64,
    durable_next_seq: u64,
    reason: &str,
) {
    let newer = {
        let mut state = shared.lock();
        let State { ledger, queue } = &mut *state;
        let newer = std::mem::take(&mut queue.pending);
        let steps = newer
            .undo
            .iter()
            .rev()
            .chain(failed.undo.iter().rev())
            .cloned();
        ledger.undo(steps, durable_end, durable_next_seq);
        queue.degraded = Some(reason.to_string());
        queue.rollbacks += 1;
        queue.writer_busy = false;
        newer
    };
    for waiter in failed.waiters.drain(..).chain(newer.waiters) {
        let _ = waiter.send(Err(reason.to_string()));
    }
    failed.bytes.clear();
    failed.undo.clear();
}

/// Cuts the journal back to its durable length and probes until a write of a batch's worth
/// of bytes succeeds; then lets changes in again. Returns false if shut down meanwhile.
fn recover_disk(
    shared: &Shared,
    file: &mut dyn JournalFile,
    durable_end: u64,
    config: &WriterConfig,
) -> bool {
    // The probe is not a newline-terminated line, so if we crash while it is in the file,
    // recovery trims it as a torn tail.
    static PROBE: [u8; 64 * 1024] = [b' '; 64 * 1024];
    loop {
        {
            let state = shared.lock();
            if state.queue.shutdown {
                return false;
            }
            let (state, _) = shared
                .wake
                .wait_timeout(state, config.retry_interval)
                .unwrap_or_else(|p| p.into_inner());
            if state.queue.shutdown {
                return false;
            }
        }
        let probe = file
            .set_len(durable_end)
            .and_then(|()| file.write_all_at(&PROBE[..], durable_end))
            .and_then(|()| file.sync_data())
            .and_then(|()| file.set_len(durable_end))
            .and_then(|()| file.sync_data());
        match probe {
            Ok(()) => {
                shared.lock().queue.degraded = None;
                tracing::warn!(
                    "{} is writable again; accepting balance changes",
                    config.path
                );
                return true;
            }
            Err(error) => tracing::debug!("journal still not writable: {error}"),
        }
    }
}

//! The checkpointer: writes checkpoints of the live ledger (see [`super::snapshot`]) in a
//! thread of its own, whenever the journal writer asks for one.

use super::journal::Shared;
use super::ledger::Ledger;
use super::recovery::{self, SNAPSHOT_FILE};
use super::{CHUNK, snapshot};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the background checkpointer did since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints written and published.
    pub written: u64,
    /// Attempts that failed.
    pub failed: u64,
}

/// Asks the checkpointer thread for a checkpoint.
#[derive(Clone)]
pub(crate) struct Trigger {
    tx: SyncSender<()>,
}

impl Trigger {
    /// Asks for a checkpoint unless one is already requested.
    pub fn request(&self) {
        match self.tx.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// Starts the checkpointer thread. It stops once every [`Trigger`] is dropped.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    dir: PathBuf,
    last: Arc<AtomicU64>,
    stats: Arc<Mutex<CheckpointStats>>,
) -> io::Result<(Trigger, JoinHandle<()>)> {
    let (tx, rx) = sync_channel::<()>(1);
    let thread = std::thread::Builder::new()
        .name("memes-checkpoint".into())
        .spawn(move || run(&shared, &dir, &last, &stats, rx))?;
    Ok((Trigger { tx }, thread))
}

fn run(
    shared: &Shared,
    dir: &Path,
    last: &AtomicU64,
    stats: &Mutex<CheckpointStats>,
    requests: Receiver<()>,
) {
    while requests.recv().is_ok() {
        let written = write(shared, dir);
        let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
        match written {
            Ok(Some(offset)) => {
                last.store(offset, Ordering::Relaxed);
                stats.written += 1;
            }
            Ok(None) => {}
            Err(e) => {
                stats.failed += 1;
                tracing::warn!("checkpoint of {} failed: {e}", dir.display())
            }
        }
    }
}

/// Writes a checkpoint of the live ledger without stopping it; returns the journal offset it
/// covers, or `None` if changes were taken back meanwhile (it is then discarded).
pub(crate) fn write(shared: &Shared, dir: &Path) -> io::Result<Option<u64>> {
    let _one_at_a_time = shared
        .checkpointing
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let (journal_offset, next_seq, rollbacks) = {
        let state = shared.lock();
        (
            state.ledger.end(),
            state.ledger.next_seq(),
            state.queue.rollbacks,
        )
    };
    let tmp_path = recovery::temporary_snapshot_path(dir);
    // Paced so that the journal's flushes never queue behind a whole checkpoint's.
    let mut file = snapshot::PacedWriter::new(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp_path)?,
    );
    // Rows are serialised under the lock, a chunk at a time, and written outside it.
    let mut buf = Vec::with_capacity(1 << 20);
    snapshot::begin(&mut buf, journal_offset, next_seq);
    for (state, rows) in shared.chunks(CHUNK, Ledger::accounts_len) {
        for i in rows {
            let (user, account) = state.ledger.account_at(i).expect("index in range");
            snapshot::account_row(&mut buf, i == 0, user, account);
        }
        drop(state);
        file.write_all(&buf)?;
        buf.clear();
    }
    snapshot::begin_keys(&mut buf);
    for (state, rows) in shared.chunks(CHUNK, Ledger::keys_len) {
        for i in rows {
            let (key, entry) = state.ledger.key_at(i).expect("index in range");
            snapshot::key_row(&mut buf, i == 0, key, entry);
        }
        drop(state);
        file.write_all(&buf)?;
        buf.clear();
    }
    snapshot::finish(&mut buf);
    file.write_all(&buf)?;
    drop(file);
    // Everything the checkpoint copied must be on disk before it may replace the old one,
    // and nothing may have been taken back while it was copied.
    let barrier = shared.barrier();
    let durable = barrier.wait_blocking().is_ok();
    if !durable || shared.lock().queue.rollbacks != rollbacks {
        let _ = std::fs::remove_file(&tmp_path);
        return Ok(None);
    }
    crate::atomic_file::publish(&tmp_path, &dir.join(SNAPSHOT_FILE))?;
    tracing::debug!("checkpoint written at journal offset {journal_offset}");
    Ok(Some(journal_offset))
}

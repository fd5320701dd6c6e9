//! [`FileStore`]: the token store as JSON files in a data directory, durable by group commit.
//!
//! Files (all mode 0600, directory 0700):
//! - `journal.ndjson`: the ledger itself, append-only, never rewritten (while the daemon runs
//!   it ends with zeroed space set aside for the next writes);
//! - `snapshot.json`: the latest checkpoint (start-up shortcut, see [`snapshot`]);
//! - `memesd.lock`: held exclusively while a store is open, so two daemons can never write
//!   the same files;
//! - `moved.json`: present once the ledger was moved elsewhere (see [`moved`]).
//!
//! Threads: the group-commit writer (see [`journal`]) and a checkpointer (see
//! [`checkpointer`]) that writes a new checkpoint whenever the journal has grown by
//! `checkpoint_bytes` since the last one.

pub mod audit;
pub mod checkpointer;
pub mod export;
pub mod history;
pub mod journal;
pub mod ledger;
pub mod moved;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod verify;

use checkpointer::Trigger;
pub use checkpointer::{CheckpointStats, Retry};
use journal::{JournalFile, Queue, Shared, State, WriterConfig, run_writer};
use ledger::{Account, Ledger, Undo};
use recovery::{JOURNAL_FILE, RecoveryStats};

use crate::domain::{AccountView, AuditReport, HistoryCursor, HistoryPage, Hold, Lot, Stale, Tier};
use crate::lockfile;
use crate::store::{
    Changed, ChargeRequest, Clock, Commit, EndHold, HoldChange, Idempotency, OpenError, Outcome,
    RefundChange, Refunded, StoreError, StoreHealth, StoreStats, StoredReply, TokenStore,
    TopupChange,
};
use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Account rows copied per lock acquisition while checkpointing or auditing: small enough
/// that requests never wait long for the lock.
const CHUNK: usize = 4096;

/// Settings of a [`FileStore`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Tokens granted when an account opens.
    pub welcome_tokens: u64,
    /// How long the welcome grant's lot lasts; `None`: it never expires.
    pub welcome_expires: Option<Duration>,
    /// Write a checkpoint after the journal grew by this many bytes.
    pub checkpoint_bytes: u64,
    /// How often a failing disk is probed for recovery.
    pub retry_interval: Duration,
    /// When to try again after a checkpoint failed (see [`checkpointer`]).
    pub checkpoint_retry: Retry,
    /// The ledger's clock: what every change is dated with and every read is judged at.
    pub clock: Clock,
}

impl StoreConfig {
    /// The welcome grant as the rules take it.
    pub fn welcome(&self) -> crate::store::rules::Welcome {
        crate::store::rules::Welcome {
            tokens: self.welcome_tokens,
            expires_in: self
                .welcome_expires
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            welcome_tokens: 150,
            welcome_expires: None,
            checkpoint_bytes: 64 << 20,
            retry_interval: Duration::from_millis(500),
            checkpoint_retry: Retry {
                first: Duration::from_secs(1),
                max: Duration::from_secs(64),
            },
            clock: Clock::system(),
        }
    }
}

/// The JSON-on-disk token store.
pub struct FileStore {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// A read-only handle for history (positional reads need no lock).
    reader: Arc<File>,
    /// Where history pages and audits are read, one at a time.
    reads: reader::JournalReader,
    recovery: RecoveryStats,
    last_checkpoint: Arc<AtomicU64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(Trigger, JoinHandle<()>)>>,
    checkpoint_stats: Arc<Mutex<CheckpointStats>>,
    clock: Clock,
    /// Held for the store's lifetime; released when dropped.
    _lock: File,
}

impl FileStore {
    /// Opens (or creates) the store in `dir`, recovering it from its files.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<FileStore, OpenError> {
        FileStore::open_with(dir, config, |file| Box::new(file))
    }

    /// [`FileStore::open`] with the journal's file wrapped by `wrap` (tests inject faults).
    pub fn open_with(
        dir: &Path,
        config: StoreConfig,
        wrap: impl FnOnce(File) -> Box<dyn JournalFile>,
    ) -> Result<FileStore, OpenError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_error(dir))?;
        let lock_path = dir.join("memesd.lock");
        let lock = lockfile::try_acquire(&lock_path)
            .map_err(io_error(&lock_path))?
            .ok_or_else(|| OpenError::Locked(dir.into()))?;
        let recovered = recovery::recover(dir, config.welcome())?;
        let journal_path = dir.join(JOURNAL_FILE);
        restrict(&journal_path).map_err(io_error(&journal_path))?;
        let reader = File::open(&journal_path).map_err(io_error(&journal_path))?;
        let end = recovered.ledger.end();
        let replayed = recovered.stats.replayed_bytes;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ledger: recovered.ledger,
                queue: Queue::new(end),
            }),
            wake: std::sync::Condvar::new(),
            checkpointing: Mutex::new(()),
        });
        let last_checkpoint = Arc::new(AtomicU64::new(end - replayed));

        let checkpoint_stats = Arc::new(Mutex::new(CheckpointStats::default()));
        let (trigger, checkpointer) = checkpointer::spawn(
            shared.clone(),
            dir.to_path_buf(),
            last_checkpoint.clone(),
            checkpoint_stats.clone(),
            config.checkpoint_retry,
        )
        .map_err(io_error(dir))?;
        let writer = {
            let shared = shared.clone();
            let file_len = recovered
                .journal
                .metadata()
                .map_err(io_error(&journal_path))?
                .len();
            let file = wrap(recovered.journal);
            let writer_config = WriterConfig {
                path: journal_path.display().to_string(),
                retry_interval: config.retry_interval,
                file_len,
            };
            let (last, every, trigger) = (
                last_checkpoint.clone(),
                config.checkpoint_bytes,
                trigger.clone(),
            );
            std::thread::Builder::new()
                .name("memes-journal".into())
                .spawn(move || {
                    run_writer(&shared, file, writer_config, |durable_end| {
                        if durable_end - last.load(Ordering::Relaxed) >= every {
                            trigger.request();
                        }
                    })
                })
                .map_err(io_error(dir))?
        };
        // A long replay means the checkpoint is far behind: refresh it now, not at the next
        // threshold, so the next start is fast.
        if replayed > 0 && replayed >= config.checkpoint_bytes / 4 {
            trigger.request();
        }
        Ok(FileStore {
            shared,
            dir: dir.to_path_buf(),
            reader: Arc::new(reader),
            reads: reader::JournalReader::start().map_err(io_error(dir))?.0,
            recovery: recovered.stats,
            last_checkpoint,
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some((trigger, checkpointer))),
            checkpoint_stats,
            clock: config.clock,
            _lock: lock,
        })
    }

    /// What start-up found (checkpoint size, lines replayed, torn bytes trimmed).
    pub fn recovery_stats(&self) -> RecoveryStats {
        self.recovery
    }

    /// What the background checkpointer did so far.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        *self
            .checkpoint_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal's length once every applied change is written: where its last complete
    /// line ends (what an export reads up to).
    pub fn journal_end(&self) -> u64 {
        self.shared.lock().ledger.end()
    }

    /// Counters for `status`, read in memory.
    pub fn stats_now(&self) -> StoreStats {
        let state = self.shared.lock();
        StoreStats {
            accounts: state.ledger.accounts_len() as u64,
            entries: state.ledger.entries(),
            writable: state.queue.degraded.is_none(),
            // Counted in memory: never out of reach.
            unreachable: None,
        }
    }

    /// Flushes everything applied, stops the threads and writes a final checkpoint.
    /// Blocking. Changes are refused afterwards.
    pub fn close(&self) -> io::Result<()> {
        self.closing()()
    }

    /// [`FileStore::close`] as a job that borrows nothing from the store: changes are
    /// refused from now on, and the job waits for the threads and writes the checkpoint.
    /// An async caller runs it on a blocking thread ([`TokenStore::close`]).
    fn closing(&self) -> impl FnOnce() -> io::Result<()> + Send + 'static {
        let stopping = self.stop();
        let (shared, dir) = (self.shared.clone(), self.dir.clone());
        let last_checkpoint = self.last_checkpoint.clone();
        move || {
            stopping.join();
            if let Some(offset) = checkpointer::write(&shared, &dir)? {
                last_checkpoint.store(offset, Ordering::Relaxed);
            }
            Ok(())
        }
    }

    /// Writes a checkpoint now (blocking); returns the journal offset it covers.
    pub fn checkpoint_now(&self) -> io::Result<Option<u64>> {
        let written = checkpointer::write(&self.shared, &self.dir)?;
        if let Some(offset) = written {
            self.last_checkpoint.store(offset, Ordering::Relaxed);
        }
        Ok(written)
    }

    /// Refuses changes from now on and tells the threads to stop once the writer has
    /// written everything applied; [`Stopping::join`] waits for them.
    fn stop(&self) -> Stopping {
        {
            let mut state = self.shared.lock();
            state.queue.shutdown = true;
            state
                .queue
                .degraded
                .get_or_insert_with(|| "the store is closed".into());
        }
        self.shared.wake.notify_all();
        Stopping {
            writer: take(&self.writer),
            checkpointer: take(&self.checkpointer),
        }
    }

    /// Applies a change under the lock and registers its commit.
    fn mutate<T>(
        &self,
        apply: impl FnOnce(&mut Ledger, i64, &mut Vec<u8>, &mut Vec<Undo>) -> Result<T, StoreError>,
    ) -> Result<(T, Commit), StoreError> {
        let mut state = self.shared.lock();
        if let Some(reason) = &state.queue.degraded {
            return Err(StoreError::Unavailable(reason.clone()));
        }
        let now = self.clock.now();
        let State { ledger, queue } = &mut *state;
        let written = queue.pending.bytes.len();
        let value = apply(
            ledger,
            now,
            &mut queue.pending.bytes,
            &mut queue.pending.undo,
        )?;
        let (commit, wake) = if queue.pending.bytes.len() == written {
            queue.barrier()
        } else {
            queue.commit_change()
        };
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok((value, commit))
    }

    /// Runs a read under the lock; the commit resolves once everything it saw is durable.
    fn read<T>(
        &self,
        look: impl FnOnce(&Ledger) -> Result<T, StoreError>,
    ) -> Result<(T, Commit), StoreError> {
        let value = look(&self.shared.lock().ledger)?;
        Ok((value, self.shared.barrier()))
    }

    /// An account as this store keeps it (with its journal position).
    fn kept_account(&self, user: &str) -> Result<(Account, Commit), StoreError> {
        self.read(|ledger| {
            ledger
                .account(user)
                .cloned()
                .ok_or_else(|| StoreError::UnknownUser(user.to_string()))
        })
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        self.stop().join();
    }
}

/// The store's threads, told to stop.
struct Stopping {
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<(Trigger, JoinHandle<()>)>,
}

impl Stopping {
    /// Waits until the writer has flushed and the checkpointer has finished.
    fn join(self) {
        if let Some(writer) = self.writer {
            let _ = writer.join();
        }
        if let Some((trigger, thread)) = self.checkpointer {
            drop(trigger);
            let _ = thread.join();
        }
    }
}

#[async_trait::async_trait]
impl TokenStore for FileStore {
    async fn charge(
        &self,
        request: ChargeRequest<'_>,
    ) -> Result<(Outcome<u64>, Commit), StoreError> {
        self.mutate(|ledger, now, out, undo| ledger.charge(request, now, out, undo))
    }

    async fn topup(
        &self,
        change: TopupChange<'_>,
    ) -> Result<(Outcome<Changed>, Commit), StoreError> {
        self.mutate(|ledger, now, out, undo| ledger.topup(change, now, out, undo))
    }

    async fn replay(
        &self,
        idem: Idempotency<'_>,
    ) -> Result<Option<(StoredReply, Commit)>, StoreError> {
        let (reply, commit) = self.read(|ledger| ledger.replay(&idem))?;
        Ok(reply.map(|reply| (reply, commit)))
    }

    async fn hold(&self, change: HoldChange<'_>) -> Result<(Outcome<Changed>, Commit), StoreError> {
        self.mutate(|ledger, now, out, undo| ledger.hold(change, now, out, undo))
    }

    async fn end_hold(
        &self,
        change: EndHold<'_>,
    ) -> Result<(Outcome<Changed>, Commit), StoreError> {
        self.mutate(|ledger, now, out, undo| ledger.end_hold(change, now, out, undo))
    }

    async fn refund(
        &self,
        change: RefundChange<'_>,
    ) -> Result<(Outcome<Refunded>, Commit), StoreError> {
        let (entry, named) = (change.entry, change.user);
        let unknown = || {
            let of = named.map(|user| format!(" of user {user:?}"));
            StoreError::UnknownEntry(entry, of.unwrap_or_default())
        };
        let corrupt = |e: history::HistoryError| match e {
            history::HistoryError::NotTheUsersLine(at) => {
                StoreError::Internal(format!("journal offset {at}: not the line expected"))
            }
            history::HistoryError::Corrupt(what) => StoreError::Internal(what),
        };
        let user = match change.user {
            Some(user) => user.to_string(),
            None => {
                let (end, commit) = self.read(|ledger| Ok(ledger.end()))?;
                commit.wait().await?;
                let reader = self.reader.clone();
                self.reads
                    .run(move || Ok(history::user_of_entry(&reader, end, entry)))
                    .await?
                    .map_err(corrupt)?
                    .ok_or_else(unknown)?
            }
        };
        // The entry and its refunds are read from the journal without the lock; the refund is
        // decided under it, on what was read, only if the account has not changed since
        // (another refund of the same entry, say): otherwise it is read again.
        let mut change = change;
        loop {
            let (account, commit) = self.kept_account(&user).map_err(|_| unknown())?;
            commit.wait().await?;
            let (reader, owner, last) = (self.reader.clone(), user.clone(), account.last);
            let held = account.lots();
            let (mut reversed, hold) = self
                .reads
                .run(move || Ok(history::read_reversed(&reader, &owner, last, entry, &held)))
                .await?
                .map_err(corrupt)?
                .ok_or_else(unknown)?;
            if let Some(id) = hold {
                // A capture spent the first of what its hold took: the hold keeps its parts.
                let (parts, _) = self.read(|ledger| match ledger.holds().get(&id) {
                    Some((_, hold)) => Ok(crate::store::rules::captured_parts(hold)),
                    None => Err(StoreError::Internal(format!(
                        "entry {entry} captures hold {id}, which the ledger does not keep"
                    ))),
                })?;
                reversed.parts = parts;
            }
            let (outcome, commit) = self.mutate(|ledger, now, out, undo| {
                ledger.refund(&mut change, &reversed, last, now, out, undo)
            })?;
            if let Some(outcome) = outcome {
                return Ok((outcome, commit));
            }
        }
    }

    async fn account(&self, user: &str) -> Result<(AccountView, Commit), StoreError> {
        let now = self.clock.now();
        self.read(|ledger| {
            ledger
                .view_at(user, now)
                .ok_or_else(|| StoreError::UnknownUser(user.to_string()))
        })
    }

    async fn lots(&self, user: &str) -> Result<(Vec<Lot>, Vec<Hold>, Commit), StoreError> {
        let now = self.clock.now();
        let ((lots, holds), commit) = self.read(|ledger| {
            ledger
                .lots_at(user, now)
                .ok_or_else(|| StoreError::UnknownUser(user.to_string()))
        })?;
        Ok((lots, holds, commit))
    }

    async fn account_at(
        &self,
        user: &str,
        at: i64,
    ) -> Result<(crate::store::rules::Past, Option<Stale>), StoreError> {
        let (account, commit) = self.kept_account(user)?;
        commit.wait().await?;
        let (reader, owner, from) = (self.reader.clone(), user.to_string(), account.last);
        let read = self
            .reads
            .run(move || Ok(history::read_account_at(&reader, &owner, from, at)))
            .await?;
        match read {
            Ok(Some(past)) => Ok((past, None)),
            Ok(None) => Err(StoreError::UnknownUser(user.to_string())),
            Err(history::HistoryError::NotTheUsersLine(offset)) => Err(StoreError::Internal(
                format!("journal offset {offset}: not a line of user {user:?}"),
            )),
            Err(history::HistoryError::Corrupt(what)) => Err(StoreError::Internal(what)),
        }
    }

    async fn entitle(
        &self,
        user: &str,
        tier: Tier,
        until_ms: Option<i64>,
    ) -> Result<(AccountView, Commit), StoreError> {
        let (view, commit) = self.mutate(|ledger, now, out, undo| {
            ledger.entitle(user, tier, until_ms, now, out, undo)?;
            ledger
                .view_at(user, now)
                .ok_or_else(|| StoreError::Internal(format!("user {user:?} was not entitled")))
        })?;
        Ok((view, commit))
    }

    async fn history(
        &self,
        user: &str,
        limit: usize,
        before: Option<&HistoryCursor>,
    ) -> Result<HistoryPage, StoreError> {
        let before = match before {
            Some(cursor) => Some(
                history::Position::parse(cursor)
                    .ok_or_else(|| StoreError::unreadable_cursor(cursor))?,
            ),
            None => None,
        };
        let (account, commit) = self.kept_account(user)?;
        commit.wait().await?;
        let bad_cursor = || StoreError::foreign_cursor(user);
        let from = match before {
            Some(position) if position.offset > account.last => return Err(bad_cursor()),
            Some(position) => position.offset,
            None => account.last,
        };
        let before_seq = before.map(|position| position.before_seq);
        let (reader, owner) = (self.reader.clone(), user.to_string());
        let read = self
            .reads
            .run(move || {
                Ok(history::read_history(
                    &reader, &owner, from, before_seq, limit,
                ))
            })
            .await?;
        read.map_err(|e| match e {
            history::HistoryError::NotTheUsersLine(_) if before.is_some() => bad_cursor(),
            history::HistoryError::NotTheUsersLine(at) => {
                StoreError::Internal(format!("journal offset {at}: not a line of user {user:?}"))
            }
            history::HistoryError::Corrupt(what) => StoreError::Internal(what),
        })
    }

    /// From the ledger's index of accounts by their next expiry: a range at its front.
    async fn due(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now();
        let (due, _) = self.read(|ledger| Ok(ledger.due(now, limit)))?;
        Ok(due.into_iter().map(String::from).collect())
    }

    /// Through the journal like any change (group-committed with the others; the commit
    /// resolves once the entries are durable).
    async fn settle(&self, user: &str) -> Result<(u64, Commit), StoreError> {
        self.mutate(|ledger, now, out, undo| ledger.settle(user, now, out, undo))
    }

    async fn audit(&self) -> Result<AuditReport, StoreError> {
        self.shared.barrier().wait().await?;
        let (shared, path) = (self.shared.clone(), self.dir.join(JOURNAL_FILE));
        self.reads.run(move || audit_journal(&shared, &path)).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(self.stats_now())
    }

    async fn health(&self) -> StoreHealth {
        let stats = self.stats_now();
        StoreHealth {
            accounts: stats.accounts,
            writable: stats.writable,
        }
    }

    async fn close(&self) -> io::Result<()> {
        // Joining threads and writing a checkpoint block: not on the runtime's threads.
        tokio::task::spawn_blocking(self.closing())
            .await
            .map_err(io::Error::other)?
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

/// Replays the durable journal and checks it, then compares what it derives with the live
/// balances. Blocking.
fn audit_journal(shared: &Shared, path: &Path) -> Result<AuditReport, StoreError> {
    let upto = shared.lock().queue.durable_end;
    let scan = audit::scan(path, upto)
        .map_err(|e| StoreError::Internal(format!("reading {}: {e}", path.display())))?;
    let mut report = scan.report.clone();
    if report.ok
        && let Some(problem) = audit::compare_with_memory(shared, &scan, upto)
    {
        report.ok = false;
        report.discrepancy = Some(problem);
    }
    Ok(report)
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

fn restrict(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

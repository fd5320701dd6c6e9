//! Tests of what is particular to the file store: recovery from what a crash leaves in the
//! journal, corruption found at start-up, write faults, checkpoints under load. What every
//! store must do is the contract suite's (`crate::store::contract`), which runs on this
//! store too.

use super::journal::JournalFile;
use super::recovery::{self, JOURNAL_FILE, SNAPSHOT_FILE};
use super::*;
use crate::store::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

fn config() -> StoreConfig {
    StoreConfig {
        retry_interval: Duration::from_millis(20),
        ..StoreConfig::default()
    }
}

/// The store's calls are async; these tests drive them from plain threads.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

fn block<F: Future>(future: F) -> F::Output {
    RUNTIME.block_on(future)
}

fn charge(store: &dyn TokenStore, user: &str, cost: u64) -> Result<u64, StoreError> {
    block(async {
        let (outcome, commit) = store
            .charge(ChargeRequest {
                user,
                cost,
                memes: &["grumpy-cat"],
                keyed: None,
            })
            .await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(balance) => Ok(balance),
            Outcome::Replayed(_) => panic!("unkeyed charge replayed"),
        }
    })
}

fn topup(store: &dyn TokenStore, user: &str, amount: i64) -> Result<u64, StoreError> {
    block(async {
        let (outcome, commit) = store
            .topup(TopupChange {
                user,
                amount,
                terms: Default::default(),
                reason: None,
                keyed: None,
            })
            .await?;
        commit.wait().await?;
        match outcome {
            Outcome::Applied(changed) => Ok(changed.balance),
            Outcome::Replayed(_) => panic!("unkeyed topup replayed"),
        }
    })
}

fn keyed_topup(
    store: &dyn TokenStore,
    user: &str,
    amount: i64,
    key: &str,
) -> Result<String, StoreError> {
    let fingerprint = format!("topup {user} {amount}");
    let build = |balance: u64| StoredReply::record(&serde_json::json!({ "new_balance": balance }));
    block(async {
        let (outcome, commit) = store
            .topup(TopupChange {
                user,
                amount,
                terms: Default::default(),
                reason: Some("test"),
                keyed: Some(Keyed {
                    idem: Idempotency {
                        key,
                        fingerprint: &fingerprint,
                    },
                    reply: Box::new(move |changed| build(changed.balance)),
                }),
            })
            .await?;
        commit.wait().await?;
        Ok(match outcome {
            Outcome::Applied(changed) => build(changed.balance).as_str().to_string(),
            Outcome::Replayed(reply) => reply.as_str().to_string(),
        })
    })
}

fn balance(store: &dyn TokenStore, user: &str) -> Option<u64> {
    block(async {
        let (account, commit) = store.account(user).await.ok()?;
        commit.wait().await.unwrap();
        Some(account.balance)
    })
}

fn audit(store: &dyn TokenStore) -> crate::domain::AuditReport {
    block(store.audit()).unwrap()
}

#[test]
fn a_clean_close_leaves_a_checkpoint_that_covers_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), config()).unwrap();
        assert_eq!(charge(&store, "u1", 1), Ok(149));
        assert_eq!(
            keyed_topup(&store, "u2", 7, "k1").unwrap(),
            r#"{"new_balance":157}"#
        );
        store.close().unwrap();
    }
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(
        store.recovery_stats().replayed_lines,
        0,
        "the close checkpoint covers all"
    );
    assert_eq!(store.recovery_stats().checkpoint_accounts, 2);
    assert_eq!(balance(&store, "u1"), Some(149));
    assert_eq!(
        keyed_topup(&store, "u2", 7, "k1").unwrap(),
        r#"{"new_balance":157}"#
    );
    assert_eq!(balance(&store, "u2"), Some(157));
    let forged = crate::domain::HistoryCursor::from_client("1:3");
    assert_eq!(
        block(store.history("u1", 5, Some(&forged)))
            .unwrap_err()
            .code(),
        ErrorCode::InvalidArgument,
        "an offset inside another line"
    );
    assert!(audit(&store).ok);
}

#[test]
fn a_torn_last_batch_is_trimmed_at_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), config()).unwrap();
        charge(&store, "a", 1).unwrap();
        topup(&store, "b", 5).unwrap();
        keyed_topup(&store, "a", 3, "key-with-a-reply").unwrap();
        // Dropped without close: no checkpoint, recovery replays the journal.
    }
    let journal = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            journal
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    // The last batch: the keyed top-up's line, then its batch end.
    let [.., last_start, end_line_start, file_end] = line_starts[..] else {
        panic!("too few lines")
    };
    assert_eq!(file_end, journal.len());
    assert!(journal[end_line_start..].starts_with(b"{\"batch_start\":"));
    for cut in last_start..journal.len() {
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join(JOURNAL_FILE), &journal[..cut]).unwrap();
        let store =
            FileStore::open(copy.path(), config()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        // A whole transaction line is kept even if its batch end never made it.
        let (a, kept) = if cut < end_line_start {
            (149, last_start)
        } else {
            (152, end_line_start)
        };
        assert_eq!(balance(&store, "a"), Some(a), "cut at {cut}");
        assert_eq!(balance(&store, "b"), Some(155), "cut at {cut}");
        assert_eq!(store.recovery_stats().trimmed_bytes, (cut - kept) as u64);
        drop(store);
        let len = std::fs::metadata(copy.path().join(JOURNAL_FILE))
            .unwrap()
            .len();
        assert_eq!(len, kept as u64, "the torn bytes are cut off the file");
    }
}

/// A journal as the writer writes it: each batch's top-ups, then its batch end. Returns the
/// bytes and the offset where each line starts.
fn journal_of_batches(batches: &[&[(&str, i64)]]) -> (Vec<u8>, Vec<usize>) {
    let mut ledger = ledger::Ledger::new(crate::store::rules::Welcome {
        tokens: 150,
        expires_in: None,
    });
    let (mut out, mut undo, mut starts) = (Vec::new(), Vec::new(), Vec::new());
    for batch in batches {
        let batch_start = out.len() as u64;
        for (user, amount) in *batch {
            starts.push(out.len());
            ledger
                .test_topup(user, *amount, &mut out, &mut undo)
                .unwrap();
        }
        starts.push(out.len());
        ledger.skip(record::BatchEnd { batch_start }.encode(&mut out));
    }
    assert_eq!(ledger.end(), out.len() as u64);
    (out, starts)
}

/// Opens a store on a copy of `journal`.
fn open_journal(journal: &[u8]) -> (tempfile::TempDir, Result<FileStore, OpenError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(JOURNAL_FILE), journal).unwrap();
    let store = FileStore::open(dir.path(), config());
    (dir, store)
}

#[test]
fn the_zeroed_space_ahead_of_the_journal_is_reused_quietly_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    topup(&store, "u", 5).unwrap();
    charge(&store, "u", 1).unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    // What a crash would leave: the lines, then the space set aside.
    let crashed = std::fs::read(&path).unwrap();
    let end = crashed.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    assert!(crashed.len() >= end + (256 << 10), "space is set aside");
    assert!(crashed[end..].iter().all(|b| *b == 0));
    drop(store);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        end as u64,
        "a clean stop leaves only the lines"
    );

    let (copy, reopened) = open_journal(&crashed);
    let store = reopened.unwrap();
    assert_eq!(store.recovery_stats().trimmed_bytes, 0);
    assert_eq!(balance(&store, "u"), Some(154));
    topup(&store, "u", 1).unwrap();
    drop(store);
    let store = FileStore::open(copy.path(), config()).unwrap();
    assert_eq!(balance(&store, "u"), Some(155), "written over the zeros");
    assert!(audit(&store).ok);
}

#[test]
fn an_interrupted_batch_with_holes_keeps_the_lines_before_the_first_hole() {
    let (mut journal, starts) = journal_of_batches(&[
        &[("a", 1), ("b", 1)],
        &[("a", 10), ("b", 10), ("a", 100), ("b", 100)],
    ]);
    // Pages of the second batch missing here and there, as a crash before its flush can
    // leave them in space set aside beforehand: a hole from the middle of its second line
    // into its third, another inside its fourth; its first line and its batch end landed.
    let second = &starts[3..];
    journal[second[1] + 5..second[2] + 7].fill(0);
    journal[second[3] + 3..second[3] + 9].fill(0);
    journal.resize(journal.len() + 4096, 0);
    let (dir, reopened) = open_journal(&journal);
    let store = reopened.unwrap();
    assert_eq!(
        balance(&store, "a"),
        Some(161),
        "the first line of the batch is kept"
    );
    assert_eq!(balance(&store, "b"), Some(151), "nothing after the hole");
    let damaged_end = starts.last().unwrap() + {
        let end_line = &journal[*starts.last().unwrap()..];
        end_line.iter().position(|b| *b == b'\n').unwrap() + 1
    };
    assert_eq!(
        store.recovery_stats().trimmed_bytes,
        (damaged_end - second[1]) as u64
    );
    topup(&store, "b", 2).unwrap();
    assert!(audit(&store).ok);
    drop(store);
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(balance(&store, "b"), Some(153));
    assert!(audit(&store).ok);
}

#[test]
fn a_whole_batch_whose_batch_end_was_lost_is_kept() {
    let (mut journal, starts) = journal_of_batches(&[&[("a", 1)], &[("a", 10), ("b", 10)]]);
    let end_line = *starts.last().unwrap();
    journal[end_line..].fill(0);
    let (_dir, reopened) = open_journal(&journal);
    let store = reopened.unwrap();
    assert_eq!(store.recovery_stats().trimmed_bytes, 0);
    assert_eq!(balance(&store, "a"), Some(161));
    assert_eq!(balance(&store, "b"), Some(160));
    topup(&store, "c", 1).unwrap();
    assert!(audit(&store).ok, "a later batch may follow");
}

#[test]
fn a_hole_followed_by_a_later_batch_is_damage_and_stops_start_up() {
    let (mut journal, starts) =
        journal_of_batches(&[&[("a", 1)], &[("a", 10), ("b", 10)], &[("c", 1)]]);
    // A hole in the second batch, which a third batch followed: the second was flushed
    // before the third was written, so this is not an interrupted write.
    journal[starts[2] + 4..starts[3] + 2].fill(0);
    let (dir, reopened) = open_journal(&journal);
    let message = reopened.err().expect("must refuse to start").to_string();
    assert!(
        message.contains("journal.ndjson")
            && message.contains("line 3")
            && message.contains("later batch"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap(),
        journal,
        "untouched"
    );
    // Even when the later batch's end line follows a hole directly.
    let third_end = starts[6];
    journal[starts[5]..third_end].fill(0);
    let (_dir, reopened) = open_journal(&journal);
    let message = reopened.err().expect("must refuse to start").to_string();
    assert!(message.contains("later batch"), "{message}");
}

#[test]
fn corruption_before_the_last_line_stops_start_up_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), config()).unwrap();
        for user in ["a", "b", "c"] {
            charge(&store, user, 1).unwrap();
        }
    }
    let path = dir.path().join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let broken: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            // The second transaction (each is followed by its batch end).
            if i == 2 {
                line.replace('{', "[")
            } else {
                line.to_string()
            }
        })
        .collect();
    std::fs::write(&path, broken.join("\n") + "\n").unwrap();
    let error = FileStore::open(dir.path(), config())
        .err()
        .expect("must refuse to start");
    let message = error.to_string();
    assert!(
        message.contains("journal.ndjson") && message.contains("line 3"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        broken.join("\n") + "\n",
        "untouched"
    );

    std::fs::write(dir.path().join(SNAPSHOT_FILE), b"{not json").unwrap();
    let message = FileStore::open(dir.path(), config())
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("snapshot.json"), "{message}");
}

#[test]
fn a_garbled_last_line_stops_start_up_too() {
    // Whole lines are never what a crash leaves: only cut-short lines and zeros are.
    let (journal, starts) = journal_of_batches(&[&[("a", 1)], &[("b", 1), ("a", 2)]]);
    let last = starts[starts.len() - 2];
    let mut garbled = journal.clone();
    garbled[last + 2] = b'#';
    let (dir, reopened) = open_journal(&garbled);
    let message = reopened.err().expect("must refuse to start").to_string();
    assert!(
        message.contains("line 4") && message.contains("not a valid ledger line"),
        "{message}"
    );
    assert_eq!(
        std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap(),
        garbled,
        "untouched"
    );
    // The same line with a hole in it is an interrupted write.
    let mut holed = journal;
    holed[last + 2] = 0;
    let (_dir, reopened) = open_journal(&holed);
    let store = reopened.unwrap();
    assert_eq!(balance(&store, "a"), Some(151));
    assert_eq!(balance(&store, "b"), Some(151));
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FileStore::open(dir.path(), config()).unwrap();
    assert!(matches!(
        FileStore::open(dir.path(), config()),
        Err(OpenError::Locked(_))
    ));
}

/// A journal file that fails while `failing` is set: its writes like a full disk, or only
/// its flushes, like an I/O error.
struct FaultyFile {
    file: File,
    failing: Arc<AtomicBool>,
    flushes_only: bool,
}

impl JournalFile for FaultyFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) && !self.flushes_only {
            // Like ENOSPC after a partial write: some bytes land, then the write fails.
            let half = &buf[..buf.len() / 2];
            std::os::unix::fs::FileExt::write_all_at(&self.file, half, offset)?;
            return Err(io::Error::from_raw_os_error(28));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) && self.flushes_only {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn faulty_store(dir: &Path, flushes_only: bool) -> (FileStore, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let store = FileStore::open_with(dir, config(), move |file| {
        Box::new(FaultyFile {
            file,
            failing: flag,
            flushes_only,
        })
    })
    .unwrap();
    (store, failing)
}

#[test]
fn a_refused_change_is_off_the_journal_before_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, failing) = faulty_store(dir.path(), true);
    topup(&store, "u", 10).unwrap();
    failing.store(true, Ordering::SeqCst);
    // The line is written whole, but its flush fails.
    let refused = topup(&store, "u", 5).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unavailable);
    // A crash right now: start from the files as they are.
    let crashed = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    let (_copy, reopened) = open_journal(&crashed);
    assert_eq!(
        balance(&reopened.unwrap(), "u"),
        Some(160),
        "a change its client was told did not happen stays undone"
    );
}

#[test]
fn a_failed_write_acknowledges_nothing_and_recovers_when_the_disk_does() {
    let dir = tempfile::tempdir().unwrap();
    let (store, failing) = faulty_store(dir.path(), false);
    topup(&store, "u", 10).unwrap();
    failing.store(true, Ordering::SeqCst);
    // Two changes race to the failing disk: one fails in the writer (and is taken back,
    // with anything queued behind it), the other fails there too or is refused up front.
    let store = Arc::new(store);
    let racers: Vec<_> = ["u", "new"]
        .into_iter()
        .map(|user| {
            let store = store.clone();
            std::thread::spawn(move || charge(&*store, user, 1))
        })
        .collect();
    for racer in racers {
        let error = racer.join().unwrap().unwrap_err();
        assert_eq!(error.code(), ErrorCode::Unavailable);
    }
    assert_eq!(
        balance(&*store, "u"),
        Some(160),
        "memory does not run ahead of the disk"
    );
    assert!(
        block(store.account("new")).is_err(),
        "an account opened by a failed write is gone"
    );
    let refused = charge(&*store, "u", 1).unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    assert!(!store.stats_now().writable);
    assert!(
        block(store.history("u", 10, None)).is_ok(),
        "reads keep working"
    );
    let store = Arc::into_inner(store).unwrap();

    failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.stats_now().writable {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(charge(&store, "u", 1), Ok(159));
    assert!(audit(&store).ok);
    drop(store);
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(balance(&store, "u"), Some(159));
    assert!(
        audit(&store).ok,
        "the partial write was cut off the journal"
    );
}

#[test]
fn checkpoints_taken_under_load_recover_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path(), config()).unwrap());
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let user = format!("user-{w}-{}", i % 50);
                    topup(&*store, &user, 2).unwrap();
                    charge(&*store, &user, 1).unwrap();
                }
            })
        })
        .collect();
    while !workers.iter().all(|w| w.is_finished()) {
        store.checkpoint_now().unwrap();
    }
    for worker in workers {
        worker.join().unwrap();
    }
    store.checkpoint_now().unwrap();
    topup(&*store, "after-checkpoint", 1).unwrap();
    drop(store);
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert!(store.recovery_stats().checkpoint_accounts >= 200);
    for w in 0..4 {
        for u in 0..50 {
            // 6 rounds of +2 -1 on top of the welcome grant.
            assert_eq!(balance(&store, &format!("user-{w}-{u}")), Some(156));
        }
    }
    assert_eq!(balance(&store, "after-checkpoint"), Some(151));
    assert!(audit(&store).ok);
}

#[test]
fn audit_names_a_hand_corrupted_ledger() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FileStore::open(dir.path(), config()).unwrap();
        charge(&store, "a", 1).unwrap();
        charge(&store, "a", 1).unwrap();
        // The checkpoint covers the line edited below: start-up does not read it again.
        store.close().unwrap();
    }
    let path = dir.path().join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(r#""delta":-1,"balance":148"#, r#""delta":-1,"balance":948"#),
    )
    .unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    let report = audit(&store);
    assert!(!report.ok);
    assert!(report.discrepancy.unwrap().contains("948"));
}

/// Batches of top-ups, (user, amount), for the recovery property below.
fn batches() -> impl Strategy<Value = Vec<Vec<(u8, i64)>>> {
    let batch = proptest::collection::vec((0u8..4, 1i64..100), 1..6);
    proptest::collection::vec(batch, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Whatever holes a crash leaves in the last batch, start-up keeps exactly the whole lines
    /// before the first one; a hole in any earlier batch stops it.
    #[test]
    fn recovery_keeps_what_precedes_a_hole_only_in_the_last_batch(
        batches in batches(),
        holes in proptest::collection::vec((any::<prop::sample::Index>(), 1usize..300), 1..4),
        earlier in any::<Option<prop::sample::Index>>(),
        zeros_after in 0usize..5000,
    ) {
        let users: Vec<Vec<(String, i64)>> = batches
            .iter()
            .map(|b| b.iter().map(|(u, a)| (format!("u{u}"), *a)).collect())
            .collect();
        let borrowed: Vec<Vec<(&str, i64)>> = users
            .iter()
            .map(|b| b.iter().map(|(u, a)| (u.as_str(), *a)).collect())
            .collect();
        let slices: Vec<&[(&str, i64)]> = borrowed.iter().map(|b| &b[..]).collect();
        let (mut journal, starts) = journal_of_batches(&slices);
        // Each batch's byte range, and each transaction's (start, end, user, amount).
        let mut ranges = Vec::new();
        let mut transactions = Vec::new();
        let mut line = 0;
        for batch in &borrowed {
            let first = line;
            for (user, amount) in batch {
                transactions.push((starts[line], starts[line + 1], *user, *amount));
                line += 1;
            }
            line += 1; // the batch end
            ranges.push(starts[first]..starts.get(line).copied().unwrap_or(journal.len()));
        }
        let mut punch = |range: &std::ops::Range<usize>, (at, len): (prop::sample::Index, usize)| {
            let from = range.start + at.index(range.len());
            let to = (from + len).min(range.end);
            journal[from..to].fill(0);
            from
        };
        let damaged_earlier = earlier.filter(|_| ranges.len() > 1);
        let first_hole = match &damaged_earlier {
            Some(which) => punch(&ranges[which.index(ranges.len() - 1)], holes[0]),
            None => {
                let last = ranges.last().unwrap().clone();
                holes.iter().map(|hole| punch(&last, *hole)).min().unwrap()
            }
        };
        journal.resize(journal.len() + zeros_after, 0);
        let (_dir, reopened) = open_journal(&journal);
        if damaged_earlier.is_some() {
            prop_assert!(reopened.is_err(), "a hole before a later batch must stop start-up");
            return Ok(());
        }
        let store = reopened.unwrap();
        let mut expected: HashMap<&str, u64> = HashMap::new();
        for (_, end, user, amount) in &transactions {
            if *end <= first_hole {
                *expected.entry(user).or_insert(150) += *amount as u64;
            }
        }
        for user in ["u0", "u1", "u2", "u3"] {
            prop_assert_eq!(balance(&store, user), expected.get(user).copied(), "{}", user);
        }
        topup(&store, "after", 1).unwrap();
        let report = audit(&store);
        prop_assert!(report.ok, "{:?}", report.discrepancy);
    }
}

/// Puts a non-empty directory where the checkpoint goes: it cannot be replaced, even by root.
fn block_checkpoints(dir: &Path) -> std::path::PathBuf {
    let target = dir.join(SNAPSHOT_FILE);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("in-the-way"), b"").unwrap();
    target
}

#[test]
fn a_failing_checkpoint_removes_its_temporary_file_and_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(
        dir.path(),
        StoreConfig {
            // Every flush asks for a checkpoint.
            checkpoint_bytes: 1,
            checkpoint_retry: Retry {
                first: Duration::from_millis(100),
                max: Duration::from_millis(400),
            },
            ..config()
        },
    )
    .unwrap();
    let target = block_checkpoints(dir.path());
    let tmp = recovery::temporary_snapshot_path(dir.path());
    let started = Instant::now();
    let mut flushes = 0u64;
    while started.elapsed() < Duration::from_millis(1500) {
        topup(&store, "u", 1).unwrap();
        flushes += 1;
    }
    let stats = store.checkpoint_stats();
    assert!(flushes > 100, "only {flushes} flushes");
    // Retried after 0.1, 0.2, 0.4, 0.4... s: at most 6 attempts in 1.5 s, not one per flush.
    assert!(
        stats.failed >= 2 && stats.failed <= 6,
        "{stats:?} after {flushes} flushes"
    );
    assert_eq!(stats.written, 0);
    // The attempt in progress, if any, ends soon; none leaves its temporary file behind.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmp.exists() {
        assert!(Instant::now() < deadline, "{} left behind", tmp.display());
        std::thread::sleep(Duration::from_millis(5));
    }
    // A final checkpoint names the file it could not replace.
    let message = store.checkpoint_now().unwrap_err().to_string();
    assert!(
        message.contains(&*target.to_string_lossy()) && message.contains(".tmp"),
        "{message}"
    );
    assert!(!tmp.exists());

    // The obstacle goes: the next attempt succeeds by itself.
    std::fs::remove_dir_all(&target).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.checkpoint_stats().written == 0 {
        assert!(Instant::now() < deadline, "{:?}", store.checkpoint_stats());
        topup(&store, "u", 1).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(target.is_file());
    let balance_before = balance(&store, "u");
    drop(store);
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(balance(&store, "u"), balance_before);
}

#[test]
fn a_checkpoint_that_cannot_be_written_leaves_no_temporary_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    topup(&store, "u", 1).unwrap();
    // Writes into the temporary file fail as on a full disk.
    let tmp = recovery::temporary_snapshot_path(dir.path());
    std::os::unix::fs::symlink("/dev/full", &tmp).unwrap();
    let message = store.checkpoint_now().unwrap_err().to_string();
    assert!(
        message.contains(&*tmp.to_string_lossy()) && message.contains("No space left"),
        "{message}"
    );
    assert!(
        tmp.symlink_metadata().is_err(),
        "{} left behind",
        tmp.display()
    );
    assert!(!dir.path().join(SNAPSHOT_FILE).exists());
    assert!(store.checkpoint_now().unwrap().is_some());
}

/// A ledger with a checkpoint and lines after it: "a" and "b" opened before it; after it "a"
/// topped up by 50 (179 -> 229), "b" charged 1 (155 -> 154), "c" opened, "b" topped up by 5
/// (154 -> 159). Left as a crash leaves it, without a final checkpoint.
fn lines_after_a_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(topup(&store, "a", 29), Ok(179));
    assert_eq!(topup(&store, "b", 5), Ok(155));
    store.checkpoint_now().unwrap().unwrap();
    assert_eq!(topup(&store, "a", 50), Ok(229));
    assert_eq!(charge(&store, "b", 1), Ok(154));
    assert_eq!(topup(&store, "c", 1), Ok(151));
    assert_eq!(topup(&store, "b", 5), Ok(159));
    drop(store);
    dir
}

/// Replaces `from` by `to` in the one journal line that contains `anchor`; returns the
/// line's number.
fn edit_journal_line(dir: &Path, anchor: &str, from: &str, to: &str) -> usize {
    let path = dir.join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let matching: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].contains(anchor))
        .collect();
    let [index] = matching[..] else {
        panic!("{anchor:?} is on lines {matching:?} of\n{text}")
    };
    assert!(lines[index].contains(from), "{}", lines[index]);
    lines[index] = lines[index].replacen(from, to, 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    index + 1
}

#[track_caller]
fn assert_refused(dir: &Path, line: usize, reason: &str) {
    let journal = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
    let message = match FileStore::open(dir, config()) {
        Ok(_) => panic!("started on a forged journal; expected line {line}: {reason}"),
        Err(error) => error.to_string(),
    };
    assert!(
        message.contains(&*dir.join(JOURNAL_FILE).to_string_lossy())
            && message.contains(&format!("line {line}:"))
            && message.contains(reason),
        "{message}"
    );
    assert_eq!(
        std::fs::read(dir.join(JOURNAL_FILE)).unwrap(),
        journal,
        "untouched"
    );
}

#[test]
fn the_lines_after_a_checkpoint_replay_onto_it_and_pass_the_audit() {
    let dir = lines_after_a_checkpoint();
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(store.recovery_stats().replayed_lines, 4);
    for (user, expected) in [("a", 229), ("b", 159), ("c", 151)] {
        assert_eq!(balance(&store, user), Some(expected), "{user}");
    }
    assert!(audit(&store).ok);
}

#[test]
fn a_forged_balance_after_the_checkpoint_stops_start_up() {
    let dir = lines_after_a_checkpoint();
    let line = edit_journal_line(
        dir.path(),
        r#""delta":50,"balance":229"#,
        r#""balance":229"#,
        r#""balance":929"#,
    );
    assert_refused(dir.path(), line, "recorded as 929 but 179 +50 = 229");
}

#[test]
fn a_forged_delta_after_the_checkpoint_stops_start_up() {
    let dir = lines_after_a_checkpoint();
    let line = edit_journal_line(
        dir.path(),
        r#""delta":50,"balance":229"#,
        r#""delta":50"#,
        r#""delta":90"#,
    );
    assert_refused(dir.path(), line, "recorded as 229 but 179 +90 = 269");
}

#[test]
fn a_broken_prev_chain_after_the_checkpoint_stops_start_up() {
    let dir = lines_after_a_checkpoint();
    let anchor = r#""kind":"charge","delta":-1,"balance":154"#;
    let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
    let line = text.lines().find(|line| line.contains(anchor)).unwrap();
    let prev: u64 = serde_json::from_str::<serde_json::Value>(line).unwrap()["prev"]
        .as_u64()
        .unwrap();
    // Another offset of the same length, so that no later line moves.
    let other = if prev % 10 == 9 { prev - 1 } else { prev + 1 };
    let line = edit_journal_line(
        dir.path(),
        anchor,
        &format!(r#""prev":{prev}"#),
        &format!(r#""prev":{other}"#),
    );
    assert_refused(dir.path(), line, "\"b\"'s previous line is at");
}

#[test]
fn a_second_welcome_after_the_checkpoint_stops_start_up() {
    let dir = lines_after_a_checkpoint();
    let line = edit_journal_line(
        dir.path(),
        r#""kind":"topup","delta":5,"balance":159"#,
        r#""kind":"topup""#,
        r#""kind":"welcome""#,
    );
    assert_refused(dir.path(), line, "user \"b\": a second welcome grant");
}

/// Writes a checkpoint now, then moves its header back to `(journal_offset, next_seq)`: a
/// checkpoint whose rows already include every change after that point, as one taken while
/// requests kept coming can.
fn fuzzy_checkpoint(store: &FileStore, journal_offset: u64, next_seq: u64) {
    let covered = store.checkpoint_now().unwrap().unwrap();
    let path = store.dir().join(SNAPSHOT_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let header: serde_json::Value = serde_json::from_str(&text).unwrap();
    let from = format!(
        r#""journal_offset":{covered},"next_seq":{}"#,
        header["next_seq"]
    );
    let to = format!(r#""journal_offset":{journal_offset},"next_seq":{next_seq}"#);
    assert!(text.contains(&from), "{text}");
    std::fs::write(&path, text.replacen(&from, &to, 1)).unwrap();
    reseal(&path);
}

/// The bytes of the checkpoint at `path` up to its digest field.
fn checkpoint_body(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let at = text.rfind(r#","digest":"#).expect("a digest");
    bytes.truncate(at);
    bytes
}

/// Recomputes the digest of the checkpoint at `path`, as memesd writes it.
fn reseal(path: &Path) {
    let mut bytes = checkpoint_body(path);
    let digest = <sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes);
    snapshot::seal(&mut bytes, digest);
    std::fs::write(path, bytes).unwrap();
}

/// A ledger whose checkpoint already includes the five lines after its journal offset:
/// "a" topped up by 50 (179 -> 229), "b" by 7 with key "k1" (155 -> 162), "d" opened, "c"
/// made premium, "a" charged 1 (229 -> 228); then three lines after the checkpoint.
fn lines_under_a_fuzzy_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(topup(&store, "a", 29), Ok(179));
    assert_eq!(topup(&store, "b", 5), Ok(155));
    assert_eq!(charge(&store, "c", 1), Ok(149));
    let (offset, seq) = {
        let state = store.shared.lock();
        (state.ledger.end(), state.ledger.next_seq())
    };
    assert_eq!(topup(&store, "a", 50), Ok(229));
    keyed_topup(&store, "b", 7, "k1").unwrap();
    assert_eq!(topup(&store, "d", 1), Ok(151));
    block(store.entitle("c", crate::domain::Tier::Premium, None))
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    assert_eq!(charge(&store, "a", 1), Ok(228));
    fuzzy_checkpoint(&store, offset, seq);
    assert_eq!(topup(&store, "a", 2), Ok(230));
    assert_eq!(topup(&store, "d", 1), Ok(152));
    keyed_topup(&store, "b", 1, "k2").unwrap();
    drop(store);
    dir
}

#[test]
fn a_checkpoint_that_includes_lines_after_its_offset_is_replayed_onto_exactly() {
    let dir = lines_under_a_fuzzy_checkpoint();
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(store.recovery_stats().replayed_lines, 8);
    for (user, expected) in [("a", 230), ("b", 163), ("c", 149), ("d", 152)] {
        assert_eq!(balance(&store, user), Some(expected), "{user}");
    }
    assert_eq!(
        block(store.account("c")).unwrap().0.tier,
        crate::domain::Tier::Premium
    );
    assert_eq!(
        keyed_topup(&store, "b", 7, "k1").unwrap(),
        r#"{"new_balance":162}"#
    );
    assert_eq!(balance(&store, "b"), Some(163));
    assert!(audit(&store).ok);
}

#[test]
fn a_forged_line_that_the_checkpoint_already_includes_stops_start_up() {
    let dir = lines_under_a_fuzzy_checkpoint();
    let line = edit_journal_line(
        dir.path(),
        r#""delta":50,"balance":229"#,
        r#""balance":229"#,
        r#""balance":929"#,
    );
    assert_refused(dir.path(), line, "recorded as 929 but 179 +50 = 229");
}

#[test]
fn every_checkpoint_taken_under_load_recovers_exactly_with_the_journal_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path(), config()).unwrap());
    // Enough accounts that a checkpoint copies them in several chunks, between which the
    // workers change rows it has not copied yet.
    let users = 3 * CHUNK + 100;
    let names: Vec<String> = (0..users).map(|i| format!("user-{i}")).collect();
    let commits: Vec<_> = names
        .iter()
        .map(|user| {
            let change = TopupChange {
                user,
                amount: 1,
                terms: Default::default(),
                reason: None,
                keyed: None,
            };
            block(store.topup(change)).unwrap().1
        })
        .collect();
    for commit in commits {
        commit.wait_blocking().unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..300 {
                    let user = format!("user-{}", (w * 2503 + i * 379) % users);
                    topup(&*store, &user, 2).unwrap();
                    charge(&*store, &user, 1).unwrap();
                    if i % 7 == 0 {
                        keyed_topup(&*store, &user, 1, &format!("k-{w}-{i}")).unwrap();
                    }
                    if i % 10 == 0 {
                        topup(&*store, &format!("new-{w}-{i}"), 1).unwrap();
                    }
                    if i % 3 == 0 {
                        hold_and_end(&store, &user, i % 2 == 0);
                    }
                    if i % 5 == 0 {
                        charge_and_refund(&store, &format!("refunded-{w}"));
                    }
                }
            })
        })
        .collect();
    // Each one is kept, to start from it with the whole journal later.
    let mut checkpoints = Vec::new();
    while !workers.iter().all(|w| w.is_finished()) {
        store.checkpoint_now().unwrap();
        checkpoints.push(std::fs::read(dir.path().join(SNAPSHOT_FILE)).unwrap());
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let final_balances: Vec<(String, u64)> = {
        let state = store.shared.lock();
        (0..state.ledger.accounts_len())
            .map(|i| state.ledger.account_at(i).unwrap())
            .map(|(user, account)| (user.to_string(), account.balance))
            .collect()
    };
    let final_lots: Vec<(String, Vec<crate::domain::Lot>)> = {
        let state = store.shared.lock();
        (0..state.ledger.accounts_len())
            .map(|i| state.ledger.account_at(i).unwrap())
            .map(|(user, account)| (user.to_string(), account.lots()))
            .collect()
    };
    let final_holds = store.shared.lock().ledger.holds().clone();
    assert!(final_holds.len() > 100, "{} holds", final_holds.len());
    drop(store);
    let journal = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
    let mut fuzzy = 0;
    // About 30 of them are enough.
    for checkpoint in checkpoints.iter().step_by(checkpoints.len().div_ceil(30)) {
        let copy = tempfile::tempdir().unwrap();
        std::fs::write(copy.path().join(JOURNAL_FILE), &journal).unwrap();
        std::fs::write(copy.path().join(SNAPSHOT_FILE), checkpoint).unwrap();
        let loaded = snapshot::load(&copy.path().join(SNAPSHOT_FILE))
            .unwrap()
            .unwrap();
        fuzzy += usize::from(
            loaded
                .accounts
                .values()
                .any(|account| account.last >= loaded.journal_offset),
        );
        let store = FileStore::open(copy.path(), config()).unwrap();
        let state = store.shared.lock();
        assert_eq!(state.ledger.accounts_len(), final_balances.len());
        for (user, expected) in &final_balances {
            assert_eq!(
                state.ledger.account(user).unwrap().balance,
                *expected,
                "{user}"
            );
        }
        assert_eq!(*state.ledger.holds(), final_holds);
        for (user, lots) in &final_lots {
            assert_eq!(state.ledger.account(user).unwrap().lots(), *lots, "{user}");
        }
    }
    assert!(
        fuzzy > 0,
        "none of {} checkpoints included a change after its offset",
        checkpoints.len()
    );
}

/// Holds 1 of `user`'s tokens for a minute and captures it (`capture`) or voids it; every
/// third hold is left open.
fn hold_and_end(store: &FileStore, user: &str, capture: bool) {
    let change = HoldChange {
        user,
        amount: 1,
        ttl_ms: 60_000,
        keyed: None,
    };
    let (outcome, commit) = block(store.hold(change)).unwrap();
    commit.wait_blocking().unwrap();
    let Outcome::Applied(Changed {
        hold: Some(held), ..
    }) = outcome
    else {
        panic!("an unkeyed hold applied");
    };
    if held.id % 3 == 0 {
        return;
    }
    let end = match capture {
        true => HoldEnd::Capture { amount: None },
        false => HoldEnd::Void,
    };
    let change = EndHold {
        hold: held.id,
        user: Some(user),
        end,
        memes: &[],
        keyed: None,
    };
    let (_, commit) = block(store.end_hold(change)).unwrap();
    commit.wait_blocking().unwrap();
}

/// Charges `user` 3 tokens and refunds them in two refunds (1, then the 2 left).
fn charge_and_refund(store: &FileStore, user: &str) {
    charge(store, user, 3).unwrap();
    let seq = last_seq(store, user);
    for amount in [Some(1), None] {
        let change = RefundChange {
            entry: seq,
            user: None,
            amount,
            keyed: None,
        };
        let (_, commit) = block(store.refund(change)).unwrap();
        commit.wait_blocking().unwrap();
    }
}

/// The seq of `user`'s latest entry.
fn last_seq(store: &FileStore, user: &str) -> u64 {
    let page = block(store.history(user, 1, None)).unwrap();
    page.entries.last().unwrap().seq
}

#[test]
fn refunds_after_a_checkpoint_replay_onto_it_reopening_their_lots() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    let change = TopupChange {
        user: "a",
        amount: 10,
        terms: crate::domain::LotTerms {
            priority: 10,
            ..Default::default()
        },
        reason: None,
        keyed: None,
    };
    block(store.topup(change))
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    // Lot 2 (priority 10) is emptied, 2 taken from lot 1.
    assert_eq!(charge(&store, "a", 12), Ok(148));
    let seq = last_seq(&store, "a");
    store.checkpoint_now().unwrap().unwrap();
    let change = RefundChange {
        entry: seq,
        user: Some("a"),
        amount: Some(11),
        keyed: None,
    };
    block(store.refund(change))
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    let lots = store.shared.lock().ledger.account("a").unwrap().lots();
    assert_eq!(
        lots.iter().map(|l| (l.id, l.remaining)).collect::<Vec<_>>(),
        [(2, 9), (1, 150)]
    );
    drop(store);
    // As a crash leaves it: the refund is replayed onto the checkpoint, re-opening lot 2.
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(store.recovery_stats().replayed_lines, 1);
    assert_eq!(
        store.shared.lock().ledger.account("a").unwrap().lots(),
        lots
    );
    assert!(audit(&store).ok);
    // What is left of the charge (1) is known after the restart.
    let change = RefundChange {
        entry: seq,
        user: None,
        amount: Some(2),
        keyed: None,
    };
    assert_eq!(
        block(store.refund(change)).unwrap_err().code(),
        crate::domain::ErrorCode::InvalidArgument
    );
    drop(store);
    // A refund line giving back more than it says stops start-up.
    let line = edit_journal_line(dir.path(), r#""kind":"refund""#, "[2,9]", "[2,11]");
    assert_refused(
        dir.path(),
        line,
        "a refund of 11 tokens of entry 3 gives back",
    );
}

/// A ledger whose checkpoint covers all of it: keys "k1" (u1 +7) and "k2" (u2 +7), and
/// "quiet" at 160, which no later line touches.
fn ledger_with_keys_in_the_checkpoint() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    keyed_topup(&store, "u1", 7, "k1").unwrap();
    keyed_topup(&store, "u2", 7, "k2").unwrap();
    assert_eq!(topup(&store, "quiet", 10), Ok(160));
    store.close().unwrap();
    dir
}

/// Ways to edit a checkpoint that leave it valid JSON, and what the audit then says.
const CHECKPOINT_EDITS: [(&str, &str, &str, &str); 4] = [
    (
        "drop a key row",
        r#",["k2","topup u2 7",{"new_balance":157}]"#,
        "",
        r#"idempotency key "k2": the ledger recorded it but the daemon does not hold it"#,
    ),
    (
        "rename a key",
        r#"["k2","topup u2 7""#,
        r#"["k9","topup u2 7""#,
        r#"idempotency key "k2": the ledger recorded it but the daemon does not hold it"#,
    ),
    (
        "change a stored reply",
        r#"["k2","topup u2 7",{"new_balance":157}]"#,
        r#"["k2","topup u2 7",{"new_balance":999}]"#,
        r#"idempotency key "k2": the daemon holds another request or reply"#,
    ),
    (
        "change a balance",
        r#"["quiet",160,"#,
        r#"["quiet",960,"#,
        r#"user "quiet": the daemon holds a balance of 960 but the ledger sums to 160"#,
    ),
];

fn edit_checkpoint(dir: &Path, from: &str, to: &str) {
    let path = dir.join(SNAPSHOT_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from} in {text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn an_edited_checkpoint_stops_start_up_naming_it() {
    for (edit, from, to, _) in CHECKPOINT_EDITS {
        let dir = ledger_with_keys_in_the_checkpoint();
        edit_checkpoint(dir.path(), from, to);
        let message = match FileStore::open(dir.path(), config()) {
            Ok(_) => panic!("{edit}: started"),
            Err(error) => error.to_string(),
        };
        assert!(
            message.contains(&*dir.path().join(SNAPSHOT_FILE).to_string_lossy())
                && message.contains("does not match its digest"),
            "{edit}: {message}"
        );
    }
}

#[test]
fn the_audit_compares_the_checkpoints_keys_and_rows_with_the_journal() {
    for (edit, from, to, discrepancy) in CHECKPOINT_EDITS {
        // An older memesd wrote no digest; an editor can recompute one. Either way the
        // audit, which derives everything from the journal, finds the edit.
        for resealed in [false, true] {
            let dir = ledger_with_keys_in_the_checkpoint();
            edit_checkpoint(dir.path(), from, to);
            let path = dir.path().join(SNAPSHOT_FILE);
            if resealed {
                reseal(&path);
            } else {
                let mut legacy = checkpoint_body(&path);
                legacy.extend_from_slice(b"}\n");
                std::fs::write(&path, legacy).unwrap();
            }
            let store = match FileStore::open(dir.path(), config()) {
                // A row carries its lots since lots exist: a balance edited alone no longer
                // adds up to them, which start-up sees without the audit.
                Err(e) if edit.contains("change a balance") => {
                    let message = e.to_string();
                    assert!(
                        message.contains("the lots add up to 160 but the balance is 960"),
                        "{message}"
                    );
                    continue;
                }
                opened => opened.unwrap_or_else(|e| panic!("{edit}, resealed {resealed}: {e}")),
            };
            let report = audit(&store);
            assert!(!report.ok, "{edit}, resealed {resealed}: the audit passed");
            let found = report.discrepancy.unwrap();
            assert!(
                found.contains(discrepancy),
                "{edit}, resealed {resealed}: {found}"
            );
        }
    }
    // Unedited, with or without a digest, the same checkpoint passes both.
    let dir = ledger_with_keys_in_the_checkpoint();
    assert!(audit(&FileStore::open(dir.path(), config()).unwrap()).ok);
    let path = dir.path().join(SNAPSHOT_FILE);
    let mut legacy = checkpoint_body(&path);
    legacy.extend_from_slice(b"}\n");
    std::fs::write(&path, legacy).unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    assert_eq!(
        keyed_topup(&store, "u2", 7, "k2").unwrap(),
        r#"{"new_balance":157}"#
    );
    assert!(audit(&store).ok);
}

#[test]
fn the_audit_compares_tiers_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), config()).unwrap();
    block(store.entitle("p", crate::domain::Tier::Premium, Some(4_000_000_000_000)))
        .unwrap()
        .1
        .wait_blocking()
        .unwrap();
    topup(&store, "f", 1).unwrap();
    store.close().unwrap();
    drop(store);
    edit_checkpoint(dir.path(), r#""free",null,[[3,"#, r#""premium",null,[[3,"#);
    reseal(&dir.path().join(SNAPSHOT_FILE));
    let store = FileStore::open(dir.path(), config()).unwrap();
    let found = audit(&store).discrepancy.unwrap();
    assert!(
        found.contains(
            r#"user "f": the daemon holds tier premium until None but the ledger says free"#
        ),
        "{found}"
    );
}

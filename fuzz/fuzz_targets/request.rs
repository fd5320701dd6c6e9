//! Fuzzes memesd's request path: `connection::respond`, from one request line through the
//! service to its reply line.
//!
//! Each input is fed as ONE request line (whatever its bytes, newlines included), and, when it
//! contains newlines, again line by line, so that sequences of requests (top up, then spend;
//! entitle, then generate; reuse an idempotency key; ...) are fuzzed too. The peer is chosen
//! per line from its first byte: odd (`{` is 0x7B) is the daemon's own uid, an admin; even
//! (a leading space, say) is uid 4242, not an admin.
//!
//! Every reply must be exactly one line of JSON with a boolean `ok`, `data` when ok,
//! `error.code` from the closed set otherwise; a balance never exceeds the protocol's
//! maximum; an audit never finds the ledger inconsistent.
//!
//! One service (store in a temporary directory, journal without fsync) serves many inputs;
//! `MEMES_FUZZ_RECYCLE=N` replaces it with a fresh one every N inputs (default 20000; 0:
//! never), which bounds the ledger's legitimate growth (accounts and idempotency keys are
//! kept forever by design) and with it the cost of `audit`, which re-reads the journal.
//! `MEMES_FUZZ_SLOW_SHARE` caps the time spent in requests that are slow by design (see
//! [`is_slow`]); set it to 100 when reproducing an artifact.

#![no_main]

use libfuzzer_sys::fuzz_target;
use memes::catalogue::Catalogue;
use memes::fronts::unix::connection;
use memes::protocol::ndjson as framing;
use memes::premium::Premium;
use memes::premium::generate::{Backend, Generator};
use memes::premium::render::Renderer;
use memes::protocol::{GetRequest, MAX_BALANCE, MAX_LINE_BYTES, Request};
use memes::service::{AdminPolicy, Caller, Peer, Service, ServiceConfig};
use memes::store::file::journal::JournalFile;
use memes::store::{FileStore, StoreConfig};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::Instant;
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// The journal file without `fdatasync`: durability is not what is fuzzed, and a sync per
/// change would make fuzzing ~1000x slower.
struct NoSync(File);

impl JournalFile for NoSync {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

struct Instance {
    service: Arc<Service>,
    /// Inputs served by this instance.
    served: u64,
    /// Dropped after the service (field order), so the store closes before its files go.
    dir: TempDir,
}

impl Instance {
    fn new() -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("memes-fuzz-")
            .tempdir()
            .expect("temporary directory");
        remove_at_exit(dir.path());
        INSTANCES.fetch_add(1, Ordering::Relaxed);
        LazyLock::force(&STARTED);
        let store = FileStore::open_with(dir.path(), StoreConfig::default(), |file| {
            Box::new(NoSync(file))
        })
        .expect("store opens");
        let catalogue = Catalogue::embedded().expect("embedded catalogue");
        let generator = Generator::new(
            Renderer::embedded().expect("embedded templates"),
            Backend::Builtin,
        );
        let premium = Premium::new(None, generator, dir.path().join("generated"), 5);
        let config = ServiceConfig {
            meme_cost: 1,
            catalogue_path: None,
            admin: AdminPolicy::for_current_user(vec![], vec![]),
            rate_limit: None,
        };
        let service = Arc::new(Service::new(Arc::new(store), catalogue, premium, config));
        Instance {
            service,
            served: 0,
            dir,
        }
    }
}

/// The data directory in use: libFuzzer ends the process with `exit`, which runs no
/// destructors of statics, so an `atexit` hook removes it.
static CURRENT_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

fn remove_at_exit(dir: &Path) {
    static HOOK: Once = Once::new();
    extern "C" fn remove_current_dir() {
        eprintln!(
            "memes-fuzz: {} services, {} lines served ({} slow), {} slow lines skipped, {:.1} s in slow lines",
            INSTANCES.load(Ordering::Relaxed),
            SERVED.load(Ordering::Relaxed),
            SLOW_SERVED.load(Ordering::Relaxed),
            SLOW_SKIPPED.load(Ordering::Relaxed),
            SLOW_NANOS.load(Ordering::Relaxed) as f64 / 1e9,
        );
        if let Ok(slot) = INSTANCE.try_lock()
            && let Some(instance) = slot.as_ref()
        {
            let stats = RUNTIME
                .block_on(instance.service.store().stats())
                .expect("stats");
            let journal = std::fs::metadata(instance.dir.path().join("journal.ndjson"))
                .map_or(0, |m| m.len());
            eprintln!(
                "memes-fuzz: the last service served {} inputs: {} accounts, {} ledger entries, {} journal bytes",
                instance.served, stats.accounts, stats.entries, journal
            );
        }
        if let Ok(current) = CURRENT_DIR.try_lock()
            && let Some(dir) = current.as_ref()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    *CURRENT_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.to_path_buf());
    // SAFETY: registers a plain function without arguments, as atexit expects.
    HOOK.call_once(|| unsafe {
        libc::atexit(remove_current_dir);
    });
}

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
});

static INSTANCE: Mutex<Option<Instance>> = Mutex::new(None);

static RECYCLE: LazyLock<u64> = LazyLock::new(|| {
    std::env::var("MEMES_FUZZ_RECYCLE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
});

/// The daemon's own user: an admin.
static ADMIN: LazyLock<Caller> = LazyLock::new(|| {
    let owner = AdminPolicy::for_current_user(vec![], vec![]).owner;
    Caller::Local(Peer {
        uid: Some(owner),
        gid: Some(owner),
    })
});

/// Anyone else: not an admin.
const STRANGER: Caller = Caller::Local(Peer {
    uid: Some(4242),
    gid: Some(4242),
});

const ERROR_CODES: &[&str] = &[
    "bad_request",
    "invalid_argument",
    "unknown_op",
    "line_too_long",
    "insufficient_tokens",
    "not_found",
    "not_allowed",
    "idempotency_conflict",
    "rate_limited",
    "busy",
    "unavailable",
    "internal",
];

/// A reply line's shape. Borrowed raw values check JSON grammar (and UTF-8) without imposing
/// a number range: an echoed `id` is the client's own text, verbatim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    ok: bool,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<ErrorShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorShape {
    code: String,
    #[allow(dead_code)]
    message: String,
}

/// Fields of reply data that the oracle checks, when present.
#[derive(Deserialize)]
struct Numbers {
    balance: Option<u64>,
    new_balance: Option<u64>,
}

/// An audit report (only `audit` replies have all of these fields).
#[derive(Deserialize)]
#[allow(dead_code)]
struct Audit {
    ok: bool,
    transactions: u64,
    entries: u64,
    accounts: u64,
    keys: u64,
    welcomes: u64,
    discrepancy: Option<String>,
}

fn check(line: &[u8], reply: &[u8]) {
    let shown = || String::from_utf8_lossy(line).into_owned();
    let Some((&b'\n', body)) = reply.split_last() else {
        panic!(
            "reply does not end with a newline: {:?} (request {:?})",
            String::from_utf8_lossy(reply),
            shown()
        );
    };
    assert!(
        !body.contains(&b'\n'),
        "reply spans more than one line: {:?} (request {:?})",
        String::from_utf8_lossy(reply),
        shown()
    );
    let parsed: Reply = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(e) => panic!(
            "reply is not the expected JSON ({e}): {:?} (request {:?})",
            String::from_utf8_lossy(reply),
            shown()
        ),
    };
    let _ = parsed.id;
    if parsed.ok {
        let data = parsed
            .data
            .unwrap_or_else(|| panic!("ok reply without data (request {:?})", shown()));
        assert!(
            parsed.error.is_none(),
            "ok reply with an error (request {:?})",
            shown()
        );
        if let Ok(numbers) = serde_json::from_str::<Numbers>(data.get()) {
            for balance in [numbers.balance, numbers.new_balance].into_iter().flatten() {
                assert!(
                    balance <= MAX_BALANCE,
                    "balance {balance} above the maximum (request {:?})",
                    shown()
                );
            }
        }
        if let Ok(audit) = serde_json::from_str::<Audit>(data.get()) {
            assert!(
                audit.ok,
                "the audit found the ledger inconsistent: {:?}",
                audit.discrepancy
            );
        }
    } else {
        let error = parsed
            .error
            .unwrap_or_else(|| panic!("failed reply without error (request {:?})", shown()));
        assert!(
            ERROR_CODES.contains(&error.code.as_str()),
            "undocumented error code {:?} (request {:?})",
            error.code,
            shown()
        );
        assert!(
            parsed.data.is_none(),
            "failed reply with data (request {:?})",
            shown()
        );
    }
}

/// Requests that are slow by design: `get` with `generate` renders and stores a PNG (~10 ms,
/// ~80 ms with coverage instrumentation), `reload` re-parses and re-indexes the catalogue
/// (~15 ms), `audit` re-reads the whole journal and `history` an account's whole chain of
/// journal lines (both grow with the ledger; a busy account's full history is megabytes).
/// Left alone, the fuzzer soon spends most of its time in them.
fn is_slow(line: &[u8]) -> bool {
    matches!(
        framing::parse_line(line).request,
        Ok(Request::Reload(_)
            | Request::Audit(_)
            | Request::History(_)
            | Request::Get(GetRequest { generate: true, .. }))
    )
}

/// Percent of the run's time that slow requests may take (`MEMES_FUZZ_SLOW_SHARE`, default
/// 10; 100 lets every one through, which is what to use to reproduce an artifact). A slow
/// request over budget is skipped (not sent to the service) and counted.
static SLOW_SHARE: LazyLock<u64> = LazyLock::new(|| {
    std::env::var("MEMES_FUZZ_SLOW_SHARE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
});
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);
static SLOW_NANOS: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);
static SLOW_SERVED: AtomicU64 = AtomicU64::new(0);
static SLOW_SKIPPED: AtomicU64 = AtomicU64::new(0);
static INSTANCES: AtomicU64 = AtomicU64::new(0);

fn slow_allowed() -> bool {
    let share = *SLOW_SHARE;
    if share >= 100 {
        return true;
    }
    let elapsed = STARTED.elapsed().as_nanos() as u64;
    SLOW_NANOS.load(Ordering::Relaxed).saturating_mul(100) <= elapsed.saturating_mul(share)
}

fn serve(service: &Arc<Service>, line: &[u8]) {
    if line.len() > MAX_LINE_BYTES {
        // The connection layer answers `line_too_long` before `respond` ever sees it.
        return;
    }
    let slow = is_slow(line);
    if slow && !slow_allowed() {
        SLOW_SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let peer = match line.first() {
        Some(byte) if byte % 2 == 0 => &STRANGER,
        _ => &*ADMIN,
    };
    let started = Instant::now();
    let reply = RUNTIME.block_on(connection::respond(service, peer, line));
    if slow {
        SLOW_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        SLOW_SERVED.fetch_add(1, Ordering::Relaxed);
    }
    SERVED.fetch_add(1, Ordering::Relaxed);
    check(line, &reply);
}

fuzz_target!(|data: &[u8]| {
    let service = {
        let mut slot = INSTANCE.lock().unwrap_or_else(|e| e.into_inner());
        let stale = slot
            .as_ref()
            .is_some_and(|instance| *RECYCLE > 0 && instance.served >= *RECYCLE);
        if stale || slot.is_none() {
            // Close the old store (and remove its files) before opening the next.
            drop(slot.take());
            *slot = Some(Instance::new());
        }
        let instance = slot.as_mut().expect("just set");
        instance.served += 1;
        instance.service.clone()
    };
    serve(&service, data);
    if data.contains(&b'\n') {
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            serve(&service, line);
        }
    }
});

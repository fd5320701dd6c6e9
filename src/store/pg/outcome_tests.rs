//! No ambiguous replies: a connection cut just before or just after COMMIT reaches the server
//! (a proxy of the test's own between the store and PostgreSQL, which reads the protocol's
//! message framing and cuts both sides at the client's `COMMIT`). The store looks the batch's
//! commit id up and answers "applied" exactly when the change is in the ledger, once.

use super::testing::{TestDatabase, cluster};
use super::tests::runtime;
use super::*;
use crate::store::{Idempotency, Keyed, KeyedAs, RefundChange, Refunded, TopupChange};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize};

/// Where the next `COMMIT` is cut.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Cut {
    None = 0,
    /// Both sides closed instead of forwarding it: the server rolls back.
    Before = 1,
    /// Forwarded, then both sides closed before its reply: the server commits.
    After = 2,
}

/// A Unix-socket proxy in front of PostgreSQL that cuts one connection at its next `COMMIT`
/// when armed.
struct Cutter {
    dir: tempfile::TempDir,
    armed: Arc<AtomicU8>,
    cuts: Arc<AtomicUsize>,
}

impl Cutter {
    fn start(upstream: PathBuf) -> Cutter {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        let armed = Arc::new(AtomicU8::new(Cut::None as u8));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let (armed, cuts) = (a.clone(), c.clone());
                std::thread::spawn(move || relay(client, server, &armed, &cuts));
            }
        });
        Cutter { dir, armed, cuts }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn arm(&self, cut: Cut) {
        self.armed.store(cut as u8, Ordering::SeqCst);
    }
}

/// Copies server → client on a thread, and client → server message by message here.
fn relay(client: UnixStream, mut server: UnixStream, armed: &AtomicU8, cuts: &AtomicUsize) {
    let (mut to_client, from_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut from_server = from_server;
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let cut_both = |client: &UnixStream, server: &UnixStream| {
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = server.shutdown(std::net::Shutdown::Both);
    };
    let mut reader = BufReader::new(client.try_clone().unwrap());
    // The startup message has no type byte: its length (itself included), then the rest.
    let mut length = [0u8; 4];
    if reader.read_exact(&mut length).is_err() {
        return;
    }
    let mut startup = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4)];
    if reader.read_exact(&mut startup).is_err()
        || server.write_all(&length).is_err()
        || server.write_all(&startup).is_err()
    {
        return;
    }
    loop {
        let mut head = [0u8; 5];
        if reader.read_exact(&mut head).is_err() {
            return cut_both(&client, &server);
        }
        let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; length.saturating_sub(4)];
        if reader.read_exact(&mut body).is_err() {
            return cut_both(&client, &server);
        }
        let commit = head[0] == b'Q' && body.starts_with(b"COMMIT");
        let cut = match commit {
            true => armed.swap(Cut::None as u8, Ordering::SeqCst),
            false => Cut::None as u8,
        };
        if cut == Cut::Before as u8 {
            cuts.fetch_add(1, Ordering::SeqCst);
            return cut_both(&client, &server);
        }
        if cut == Cut::After as u8 {
            // The client is cut first, so that no reply reaches it; the server gets the
            // COMMIT, and time to commit, before it is cut too.
            let _ = client.shutdown(std::net::Shutdown::Both);
            cuts.fetch_add(1, Ordering::SeqCst);
        }
        if server.write_all(&head).is_err() || server.write_all(&body).is_err() {
            return cut_both(&client, &server);
        }
        if cut == Cut::After as u8 {
            std::thread::sleep(Duration::from_millis(300));
            return cut_both(&client, &server);
        }
    }
}

async fn topup(store: &PgStore, user: &str, amount: i64, key: Option<&str>) -> String {
    let fingerprint = format!("topup {user} {amount}");
    let change = TopupChange {
        user,
        amount,
        terms: Default::default(),
        reason: None,
        keyed: key.map(|key| Keyed {
            idem: Idempotency {
                key,
                fingerprint: &fingerprint,
            },
            reply: Box::new(|changed| {
                let balance = changed.balance;
                StoredReply::parse(format!("{{\"balance\":{balance}}}")).unwrap()
            }),
        }),
    };
    match store.topup(change).await {
        Ok((Outcome::Applied(changed), _)) => format!("applied {}", changed.balance),
        Ok((Outcome::Replayed(reply), _)) => format!("replayed {}", reply.as_str()),
        Err(error) => format!("error {error}"),
    }
}

#[test]
fn a_connection_cut_around_commit_is_answered_by_what_the_ledger_holds() {
    let db = TestDatabase::create();
    let cutter = Cutter::start(cluster().socket_dir().join(".s.PGSQL.5432"));
    let url = format!(
        "host={} user=postgres dbname={}",
        cutter.dir().display(),
        db.name
    );
    runtime().block_on(async {
        let store = PgStore::open(PgConfig {
            pool_size: 4,
            ..PgConfig::new(url)
        })
        .await
        .expect("opens");
        assert_eq!(topup(&store, "u", 5, None).await, "applied 155");
        // Unkeyed, on this host's copy of the account (one round trip) and then on locked rows
        // (the copies are dropped after a failure); keyed, always on locked rows.
        let steps = [
            (Cut::After, None, "applied 160"),
            (Cut::Before, None, "applied 165"),
            (Cut::After, None, "applied 170"),
            (Cut::After, Some("k1"), "applied 175"),
            (Cut::Before, Some("k2"), "applied 180"),
        ];
        for (n, (cut, key, expected)) in steps.into_iter().enumerate() {
            cutter.arm(cut);
            assert_eq!(
                topup(&store, "u", 5, key).await,
                expected,
                "{cut:?} {key:?}"
            );
            assert_eq!(
                cutter.cuts.load(Ordering::SeqCst),
                n + 1,
                "the cut happened"
            );
        }
        // The keys were applied once: asked again, they replay.
        assert_eq!(
            topup(&store, "u", 5, Some("k1")).await,
            r#"replayed {"balance":175}"#
        );
        let report = store.audit().await.expect("audits");
        assert!(report.ok, "{report:?}");
        store.close().await;
    });
    // The welcome grant and six top-ups, each once.
    let rows = cluster().execute(
        &db.name,
        "DO $$ BEGIN IF (SELECT count(*) FROM entries WHERE user_id = 'u') <> 7
                 OR (SELECT balance FROM accounts WHERE user_id = 'u') <> 180
                 THEN RAISE EXCEPTION 'not exactly once'; END IF; END $$",
    );
    assert!(rows.is_ok(), "{rows:?}");
}

/// The seq of `user`'s newest entry.
async fn newest(store: &PgStore, user: &str) -> u64 {
    let page = store.history(user, 1, None).await.expect("history");
    page.entries.last().expect("an entry").seq
}

/// A refund of entry `entry` (1 token); keyed, its stored reply names the refund's entry.
async fn refund(store: &PgStore, entry: u64, key: Option<&str>) -> String {
    let change = RefundChange {
        entry,
        user: None,
        amount: Some(1),
        keyed: key.map(|key| KeyedAs {
            idem: Idempotency {
                key,
                fingerprint: "refund 1",
            },
            reply: Box::new(|refunded: Refunded| {
                let refund = refunded.refund;
                StoredReply::parse(format!("{{\"refund\":{refund}}}")).unwrap()
            }),
        }),
    };
    match store.refund(change).await {
        Ok((Outcome::Applied(refunded), _)) => format!("applied {}", refunded.refund),
        Ok((Outcome::Replayed(reply), _)) => format!("replayed {}", reply.as_str()),
        Err(error) => format!("error {error}"),
    }
}

/// A refund's reply names its entry, whose seq is drawn only as the batch writes: a COMMIT
/// whose reply was lost is looked up, and the commit row names the refunds it wrote.
#[test]
fn a_refund_cut_after_commit_names_the_entry_it_wrote() {
    let db = TestDatabase::create();
    let cutter = Cutter::start(cluster().socket_dir().join(".s.PGSQL.5432"));
    let url = format!(
        "host={} user=postgres dbname={}",
        cutter.dir().display(),
        db.name
    );
    runtime().block_on(async {
        let store = PgStore::open(PgConfig {
            pool_size: 4,
            ..PgConfig::new(url)
        })
        .await
        .expect("opens");
        let request = ChargeRequest {
            user: "r",
            cost: 5,
            memes: &["m"],
            keyed: None,
        };
        let (_, commit) = store.charge(request).await.expect("charged");
        commit.wait().await.expect("committed");
        let charged = newest(&store, "r").await;
        for key in [None, Some("rk")] {
            cutter.arm(Cut::After);
            let answer = refund(&store, charged, key).await;
            assert_eq!(
                answer,
                format!("applied {}", newest(&store, "r").await),
                "{key:?}"
            );
        }
        let written = newest(&store, "r").await;
        assert_eq!(
            refund(&store, charged, Some("rk")).await,
            format!(r#"replayed {{"refund":{written}}}"#)
        );
        assert_eq!(cutter.cuts.load(Ordering::SeqCst), 2, "the cuts happened");
        let report = store.audit().await.expect("audits");
        assert!(report.ok, "{report:?}");
        store.close().await;
    });
}

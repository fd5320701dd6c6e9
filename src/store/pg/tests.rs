//! The PostgreSQL store's own tests (the contract suite in `store::contract` runs the shared
//! ones): the constraints as a second line, migrations, several stores on one database, and
//! keys repeated within one batch.

use super::testing::TestDatabase;
use super::*;
use crate::domain::{ErrorCode, LotTerms};
use crate::store::{Keyed, TopupChange};

const WELCOME: u64 = 150;

/// A runtime for one test (shared by the store's test modules).
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn open(db: &TestDatabase) -> Arc<PgStore> {
    let config = PgConfig {
        welcome_tokens: WELCOME,
        pool_size: 4,
        ..PgConfig::new(db.url.clone())
    };
    Arc::new(PgStore::open(config).await.expect("opens"))
}

/// An unkeyed top-up: the balance after.
pub(super) async fn topup(store: &PgStore, user: &str, amount: i64) -> Result<u64, StoreError> {
    let change = TopupChange {
        user,
        amount,
        terms: Default::default(),
        reason: None,
        keyed: None,
    };
    match store.topup(change).await?.0 {
        Outcome::Applied(changed) => Ok(changed.balance),
        Outcome::Replayed(_) => panic!("replayed"),
    }
}

async fn charge(store: &PgStore, user: &str, cost: u64) -> Result<u64, StoreError> {
    let request = ChargeRequest {
        user,
        cost,
        memes: &["m"],
        keyed: None,
    };
    match store.charge(request).await?.0 {
        Outcome::Applied(balance) => Ok(balance),
        Outcome::Replayed(_) => panic!("replayed"),
    }
}

/// Runs SQL as the owner and returns the server's message if it is refused.
fn sql(db: &TestDatabase, statement: &str) -> Result<(), String> {
    testing::cluster().execute(&db.name, statement)
}

#[test]
fn the_database_refuses_wrong_states_even_if_the_code_were_wrong() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let store = open(&db).await;
        topup(&store, "u", 5).await.unwrap();
        store.close().await;
    });
    let refused = [
        // As memesd's connections say, the schema they know (0004_holds).
        (
            "SET memes.schema = 4; UPDATE accounts SET balance = -1, version = version + 1 WHERE user_id = 'u'",
            "accounts_balance_check",
        ),
        (
            "SET memes.schema = 4; UPDATE accounts SET balance = 9007199254740992, version = version + 1 WHERE user_id = 'u'",
            "accounts_balance_check1",
        ),
        // A memesd from before lots changes balances without the version: refused.
        (
            "SET memes.schema = 4; UPDATE accounts SET balance = 7 WHERE user_id = 'u'",
            "a memesd from before lots",
        ),
        // A memesd from before holds does not say it knows them: refused.
        (
            "UPDATE accounts SET balance = 7, version = version + 1 WHERE user_id = 'u'",
            "a memesd from before holds",
        ),
        (
            "INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES (0, 'u', 'hold', -5, 150)",
            "entries_hold_check",
        ),
        (
            "INSERT INTO entries (time_ms, user_id, kind, delta, balance, hold_id) VALUES (0, 'u', 'charge', -5, 150, 1)",
            "entries_hold_check",
        ),
        (
            "INSERT INTO accounts (user_id, balance) VALUES ('old', 150)",
            "a memesd from before lots",
        ),
        (
            "UPDATE lots SET remaining = 0 WHERE user_id = 'u'",
            "lots_check",
        ),
        (
            "INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES (0, 'u', 'expire', -5, 150)",
            "entries_expire_check",
        ),
        ("DELETE FROM lot_takes", ""),
        (
            "INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES (0, 'u', 'welcome', 150, 150)",
            "entries_one_welcome",
        ),
        (
            "UPDATE entries SET delta = 1000 WHERE user_id = 'u'",
            "append-only",
        ),
        ("DELETE FROM entries", "append-only"),
        ("DELETE FROM idempotency_keys", ""),
        (
            "INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES (0, 'u', 'charge', 5, 160)",
            "entries_check",
        ),
        (
            "INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES (0, 'nobody', 'topup', 5, 5)",
            "foreign key",
        ),
    ];
    for (statement, why) in refused {
        match sql(&db, statement) {
            Err(message) => assert!(message.contains(why), "{statement}: {message}"),
            Ok(()) if statement.starts_with("DELETE FROM idempotency_keys") => {}
            Ok(()) if statement.starts_with("DELETE FROM lot_takes") => {}
            Ok(()) => panic!("accepted: {statement}"),
        }
    }
    let keyed = "INSERT INTO entries (time_ms, user_id, kind, delta, balance, key) VALUES (0, 'u', 'topup', 0, 155, 'k')";
    sql(&db, keyed).expect("a first use of a key");
    let again = sql(&db, keyed).expect_err("a key names one entry");
    assert!(again.contains("entries_one_key"), "{again}");
    sql(
        &db,
        "INSERT INTO idempotency_keys (key, fingerprint, reply) VALUES ('k', 'f', '1')",
    )
    .unwrap();
    sql(
        &db,
        "INSERT INTO idempotency_keys (key, fingerprint, reply) VALUES ('k', 'g', '2')",
    )
    .expect_err("a key is stored once");
}

#[test]
fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        // Hosts starting together: one migrates, the others wait and find nothing to do.
        let opened = futures_util::future::join_all((0..3).map(|_| open(&db))).await;
        for store in opened {
            store.close().await;
        }
    });
    sql(
        &db,
        "INSERT INTO memes_schema (version, name) VALUES (999, '0999_future')",
    )
    .unwrap();
    runtime().block_on(async {
        let refused = PgStore::open(PgConfig::new(db.url.clone())).await;
        let message = refused.err().expect("refused").to_string();
        assert!(
            message.contains("version 999") && message.contains("upgrade memesd"),
            "{message}"
        );
    });
}

/// A ledger kept before lots (schema version 2): hosts starting together migrate it once,
/// each balance becomes one never-expiring paid lot id 0, and it goes on by the lot rules.
#[test]
fn a_ledger_from_before_lots_migrates_each_balance_to_one_lot() {
    let db = TestDatabase::create();
    for (version, name, migration) in &migrate::MIGRATIONS[..2] {
        if *version == 1 {
            sql(
                &db,
                "CREATE TABLE memes_schema (version integer PRIMARY KEY, name text NOT NULL,
                                            applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .unwrap();
        }
        sql(&db, migration).unwrap();
        sql(
            &db,
            &format!("INSERT INTO memes_schema (version, name) VALUES ({version}, '{name}')"),
        )
        .unwrap();
    }
    sql(
        &db,
        "INSERT INTO accounts (user_id, balance) VALUES ('a', 149), ('empty', 0);
         INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES
             (10, 'a', 'welcome', 150, 150), (10, 'a', 'charge', -1, 149),
             (11, 'empty', 'welcome', 0, 0)",
    )
    .unwrap();
    runtime().block_on(async {
        let opened = futures_util::future::join_all((0..3).map(|_| open(&db))).await;
        let store = &opened[0];
        let (lots, _, _) = store.lots("a").await.unwrap();
        assert_eq!(
            lots,
            rules::carried_over(149).into_iter().collect::<Vec<_>>()
        );
        assert!(store.lots("empty").await.unwrap().0.is_empty());
        assert!(store.audit().await.unwrap().ok);
        assert_eq!(charge(store, "a", 9).await, Ok(140));
        assert_eq!(topup(&opened[1], "a", 5).await, Ok(145));
        let (lots, _, _) = store.lots("a").await.unwrap();
        let held: Vec<(u64, u64)> = lots.iter().map(|l| (l.id, l.remaining)).collect();
        assert_eq!(
            held,
            [(0, 140), (5, 5)],
            "the new lot's id is its entry's seq"
        );
        assert!(store.audit().await.unwrap().ok);
        for store in opened {
            store.close().await;
        }
    });
}

#[test]
fn racers_across_three_stores_on_one_database_get_exactly_what_it_pays_for() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let hosts = [open(&db).await, open(&db).await, open(&db).await];
        charge(&hosts[0], "racy", WELCOME - 10).await.unwrap();
        let racers: Vec<_> = (0..128)
            .map(|i| {
                let host = hosts[i % 3].clone();
                tokio::spawn(async move { charge(&host, "racy", 1).await })
            })
            .collect();
        let mut delivered = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => delivered += 1,
                Err(e) => assert_eq!(e.code(), ErrorCode::InsufficientTokens),
            }
        }
        assert_eq!(delivered, 10);
        // A new user hitting every host at once is welcomed once.
        let first: Vec<_> = (0..30)
            .map(|i| {
                let host = hosts[i % 3].clone();
                tokio::spawn(async move { topup(&host, "newcomer", 1).await })
            })
            .collect();
        for one in first {
            one.await.unwrap().unwrap();
        }
        let (account, _) = hosts[1].account("newcomer").await.unwrap();
        assert_eq!(account.balance, WELCOME + 30);
        let report = hosts[2].audit().await.unwrap();
        assert!(report.ok, "{:?}", report.discrepancy);
        assert_eq!(report.welcomes, 2);
        for host in hosts {
            host.close().await;
        }
    });
}

#[test]
fn a_key_repeated_within_one_batch_behaves_as_serial_execution() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let store = open(&db).await;
        topup(&store, "k", 1).await.unwrap();
        let keyed = |amount: i64| {
            let store = store.clone();
            tokio::spawn(async move {
                let fingerprint = format!("topup k {amount}");
                let change = TopupChange {
                    user: "k",
                    amount,
                    terms: Default::default(),
                    reason: None,
                    keyed: Some(Keyed {
                        idem: crate::store::Idempotency {
                            key: "same",
                            fingerprint: &fingerprint,
                        },
                        reply: Box::new(|changed| {
                            let balance = changed.balance;
                            StoredReply::parse(format!("{{\"b\":{balance}}}")).unwrap()
                        }),
                    }),
                };
                store
                    .topup(change)
                    .await
                    .map(|(outcome, _)| match outcome {
                        Outcome::Applied(c) => format!("applied {}", c.balance),
                        Outcome::Replayed(r) => format!("replayed {}", r.as_str()),
                    })
                    .map_err(|e| e.code())
            })
        };
        let tasks: Vec<_> = (0..20)
            .map(|i| keyed(if i % 2 == 0 { 5 } else { 6 }))
            .collect();
        let mut applied = 0;
        let mut fives = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(text) if text.starts_with("applied") => {
                    applied += 1;
                    fives.push(text);
                }
                Ok(text) => fives.push(text),
                Err(code) => assert_eq!(code, ErrorCode::IdempotencyConflict),
            }
        }
        assert_eq!(applied, 1, "one request applies the key: {fives:?}");
        let (account, _) = store.account("k").await.unwrap();
        assert!([WELCOME + 6, WELCOME + 7].contains(&account.balance));
        assert!(store.audit().await.unwrap().ok);
        store.close().await;
    });
}

#[test]
fn connection_strings_take_a_unix_socket_host_and_a_password_from_outside() {
    let config = PgConfig {
        password: Some("from-file".into()),
        ..PgConfig::new("postgres:///memes?host=/run/postgresql")
    };
    let pg = config.pg_config().unwrap();
    assert_eq!(pg.get_dbname(), Some("memes"));
    assert_eq!(pg.get_password(), Some(&b"from-file"[..]));
    assert!(matches!(
        pg.get_hosts(),
        [tokio_postgres::config::Host::Unix(path)] if path == std::path::Path::new("/run/postgresql")
    ));
    let inline = PgConfig {
        password: Some("ignored".into()),
        ..PgConfig::new("postgres://app:secret@db.example:5433/memes")
    };
    assert_eq!(
        inline.pg_config().unwrap().get_password(),
        Some(&b"secret"[..])
    );
    assert!(
        PgConfig::new("host=db password=secret dbname=x")
            .pg_config()
            .is_ok()
    );
}

/// The three places a connection string can hold a password: none reaches a message.
#[test]
fn no_password_reaches_a_message() {
    let forms = [
        (
            "postgres://app:secret@db.example:5433/memes",
            "postgres://app@db.example:5433/memes",
            "postgres://app:***@db.example:5433/memes",
        ),
        (
            "host=db.example port=5433 user=app password=secret dbname=memes",
            "postgres://app@db.example:5433/memes",
            "host=db.example port=5433 user=app password=*** dbname=memes",
        ),
        (
            "host=/run/pg password='se cr\\'et' dbname=memes",
            "postgres:///memes (host /run/pg:5432)",
            "host=/run/pg password=*** dbname=memes",
        ),
        (
            "postgres://app@h1:1,h2:2/memes?password=secret&target_session_attrs=read-write",
            "postgres://app@h1:1,h2:2/memes",
            "postgres://app@h1:1,h2:2/memes?password=***&target_session_attrs=read-write",
        ),
        (
            "postgres:///memes?host=/run/pg&password=secret",
            "postgres:///memes (host /run/pg:5432)",
            "postgres:///memes?host=/run/pg&password=***",
        ),
    ];
    for (url, described, redacted) in forms {
        assert_eq!(describe(url), described, "{url}");
        assert_eq!(redact(url), redacted, "{url}");
        assert!(
            PgConfig::new(url)
                .pg_config()
                .unwrap()
                .get_password()
                .is_some(),
            "{url}"
        );
    }
    assert_eq!(
        describe("postgres://app:secret@[bad"),
        "a connection string that does not parse"
    );
    let error = PgConfig::new("postgres://app:secret@h:notaport/x")
        .pg_config()
        .unwrap_err();
    assert!(!error.contains("secret"), "{error}");
    assert!(PgConfig::new("nonsense://").pg_config().is_err());
}

#[test]
fn memes_with_any_characters_read_back_from_history() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let store = open(&db).await;
        let odd = ["a\"b", "c\\d", "NULL", "{x,y}", "é ü", ""];
        let request = ChargeRequest {
            user: "odd",
            cost: 1,
            memes: &odd,
            keyed: None,
        };
        let (_, commit) = store.charge(request).await.unwrap();
        commit.wait().await.unwrap();
        let page = store.history("odd", 10, None).await.unwrap();
        assert_eq!(page.entries[1].memes, odd);
        assert!(
            page.entries[0].memes.is_empty(),
            "the welcome grant names none"
        );
        store.close().await;
    });
}

#[test]
fn a_role_granted_by_the_migration_can_add_to_the_ledger_but_never_change_it() {
    let db = TestDatabase::create();
    // Roles are the cluster's: create it once for every test that wants it.
    let _ = sql(
        &db,
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'memes_app') THEN
             CREATE ROLE memes_app LOGIN; END IF; END $$",
    );
    runtime().block_on(async {
        // The owner migrates; the migration grants memes_app what memesd needs.
        open(&db).await.close().await;
        let app = PgConfig {
            welcome_tokens: WELCOME,
            pool_size: 4,
            ..PgConfig::new(db.url.replacen("postgres@", "memes_app@", 1))
        };
        let store = PgStore::open(app).await.expect("memes_app runs memesd");
        assert_eq!(topup(&store, "u", 5).await, Ok(WELCOME + 5));
        assert_eq!(charge(&store, "u", 1).await, Ok(WELCOME + 4));
        // A charge that empties every lot, refunded: the lots re-open (`reopened_lots`).
        assert_eq!(charge(&store, "u", WELCOME + 4).await, Ok(0));
        let charged = store.history("u", 1, None).await.unwrap().entries[0].seq;
        let change = crate::store::RefundChange {
            entry: charged,
            user: None,
            amount: None,
            keyed: None,
        };
        let (refunded, _) = store.refund(change).await.expect("memes_app refunds");
        assert!(matches!(refunded, Outcome::Applied(r) if r.balance == WELCOME + 4));
        assert!(store.audit().await.unwrap().ok);
        store.close().await;
    });
    let as_app = |statement: &str| {
        let wrapped = format!("SET ROLE memes_app; {statement}");
        sql(&db, &wrapped).expect_err(statement)
    };
    for statement in [
        "UPDATE entries SET delta = 0",
        "DELETE FROM entries",
        "TRUNCATE entries",
        "DELETE FROM idempotency_keys",
        "DELETE FROM reopened_lots",
        "DROP TABLE entries",
    ] {
        let refused = as_app(statement);
        assert!(
            refused.contains("permission denied") || refused.contains("must be owner"),
            "{statement}: {refused}"
        );
    }
}

/// Readiness probes and metric scrapes ask for `health` often; on a long ledger, counting the
/// entries would take seconds and, past the read deadline, report a working store as not
/// writable. So `health` must not read the entries table at all: while another session holds
/// it locked, `health` still answers (and `stats`, which counts it, cannot).
#[test]
fn health_does_not_read_the_entries() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let config = PgConfig {
            welcome_tokens: WELCOME,
            pool_size: 4,
            read_deadline: Duration::from_secs(1),
            ..PgConfig::new(db.url.clone())
        };
        let store = PgStore::open(config).await.expect("opens");
        topup(&store, "u", 5).await.unwrap();

        let (locker, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .expect("connects");
        let driver = tokio::spawn(connection);
        locker
            .batch_execute("BEGIN; LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("locks the entries");

        let asked = std::time::Instant::now();
        let health = store.health().await;
        assert_eq!((health.accounts, health.writable), (1, true));
        assert!(
            asked.elapsed() < Duration::from_millis(900),
            "{:?}",
            asked.elapsed()
        );
        let stats = store.stats().await.unwrap();
        assert!(
            !stats.writable,
            "stats counts the locked entries: {stats:?}"
        );

        locker.batch_execute("ROLLBACK").await.expect("unlocks");
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (stats.accounts, stats.entries, stats.writable),
            (1, 2, true)
        );
        drop(locker);
        let _ = driver.await;
        store.close().await;
    });
}

/// A host decides a batch on its own copies of the accounts when it has them (no lock round
/// trip), and must notice when another host changed an account since: a refusal decided on a
/// stale copy, or a change written over another host's, would break the rules of the money.
#[test]
fn a_host_deciding_on_its_copy_notices_another_host_changed_the_account() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let (a, b) = (open(&db).await, open(&db).await);
        let cooled =
            || tokio::time::sleep(batch::LOCKING_AFTER_A_MISS + Duration::from_millis(100));
        assert_eq!(charge(&a, "shared", WELCOME).await, Ok(0));
        assert_eq!(topup(&b, "shared", 5).await, Ok(5));
        // a's copy says 0 tokens: it must not refuse for want of them.
        let tally = |store: &PgStore| {
            let t = store.tally();
            (
                t.on_copies.load(Ordering::Relaxed),
                t.decided_again.load(Ordering::Relaxed),
            )
        };
        assert_eq!(tally(&a), (0, 0));
        assert_eq!(charge(&a, "shared", 2).await, Ok(3));
        assert_eq!(
            tally(&a),
            (1, 1),
            "decided on the copy, then again on the locked row"
        );
        cooled().await;
        // a's copy says 3; b makes it 13; a's top-up must not write 4 over it.
        assert_eq!(topup(&b, "shared", 10).await, Ok(13));
        assert_eq!(topup(&a, "shared", 1).await, Ok(14));
        assert_eq!(tally(&a), (2, 2));
        cooled().await;
        // Nobody else changed it: decided and written on the copy, refusals too.
        assert_eq!(charge(&a, "shared", 1).await, Ok(13));
        let refused = charge(&a, "shared", 100).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::InsufficientTokens);
        assert_eq!(tally(&a), (4, 2));

        let page = a.history("shared", 100, None).await.unwrap();
        let mut balances: Vec<(u64, u64)> =
            page.entries.iter().map(|e| (e.seq, e.balance)).collect();
        balances.sort();
        let balances: Vec<u64> = balances.into_iter().map(|(_, balance)| balance).collect();
        assert_eq!(balances, [WELCOME, 0, 5, 3, 13, 14, 13]);
        let report = b.audit().await.unwrap();
        assert!(report.ok, "{:?}", report.discrepancy);
        a.close().await;
        b.close().await;
    });
}

/// The audit replays each account's entries in burn order, as the file store's does: a
/// charge recorded as taken from the wrong lot, with the lots table edited to match (so
/// every sum still adds up), is named; so is a lot the ledger never opened.
#[test]
fn the_audit_replays_the_burn_order_and_names_a_charge_from_the_wrong_lot() {
    let db = TestDatabase::create();
    runtime().block_on(async {
        let store = open(&db).await;
        assert_eq!(topup(&store, "a", 10).await, Ok(160));
        let first = TopupChange {
            user: "a",
            amount: 50,
            terms: LotTerms {
                priority: 10,
                ..LotTerms::default()
            },
            reason: None,
            keyed: None,
        };
        let Outcome::Applied(changed) = store.topup(first).await.unwrap().0 else {
            panic!("replayed")
        };
        assert_eq!(changed.balance, 210);
        assert_eq!(charge(&store, "a", 1).await, Ok(209));
        assert!(store.audit().await.unwrap().ok);
        store.close().await;
    });
    // seq 1 welcome (lot 1), 2 top-up (lot 2), 3 top-up at priority 10 (lot 3), 4 the charge
    // (from lot 3). Move the charge to lot 1, and the lots with it.
    sql(
        &db,
        "ALTER TABLE lot_takes DISABLE TRIGGER lot_takes_append_only;
         UPDATE lot_takes SET lot = 1 WHERE seq = 4;
         UPDATE lots SET remaining = 149 WHERE user_id = 'a' AND id = 1;
         UPDATE lots SET remaining = 50 WHERE user_id = 'a' AND id = 3;",
    )
    .unwrap();
    runtime().block_on(async {
        let store = open(&db).await;
        let report = store.audit().await.unwrap();
        assert!(!report.ok);
        let found = report.discrepancy.unwrap();
        assert!(
            found.starts_with("seq 4: user \"a\"") && found.contains("burn order"),
            "{found}"
        );
        store.close().await;
    });
    // Put the charge back, then give the account a lot no entry opened (and its balance the
    // tokens, so the sums agree).
    sql(
        &db,
        "UPDATE lot_takes SET lot = 3 WHERE seq = 4;
         UPDATE lots SET remaining = 150 WHERE user_id = 'a' AND id = 1;
         UPDATE lots SET remaining = 49 WHERE user_id = 'a' AND id = 3;",
    )
    .unwrap();
    runtime().block_on(async {
        let store = open(&db).await;
        assert!(store.audit().await.unwrap().ok, "as it was");
        store.close().await;
    });
    sql(
        &db,
        "ALTER TABLE lots DROP CONSTRAINT lots_user_id_fkey;
         INSERT INTO lots VALUES ('ghost', 9, 5, 5, 0, NULL, 50, 'paid');",
    )
    .unwrap();
    runtime().block_on(async {
        let store = open(&db).await;
        let report = store.audit().await.unwrap();
        let found = report.discrepancy.unwrap_or_default();
        assert!(found.contains("ghost"), "{found}");
        store.close().await;
    });
}

/// An account with more lots than the locking path reads whole: its charges and deductions
/// read only the lots they may touch, and still take exactly what the burn order over all of
/// them takes (the audit replays every entry against every lot), expire what expired, and
/// are refused only when the balance is short. Charges sent together share batches.
#[test]
fn an_account_with_many_lots_is_charged_in_burn_order_from_the_lots_read() {
    let db = TestDatabase::create();
    let now = Arc::new(std::sync::atomic::AtomicI64::new(1_000_000));
    let clock_now = now.clone();
    runtime().block_on(async {
        let config = PgConfig {
            welcome_tokens: WELCOME,
            pool_size: 4,
            clock: crate::store::Clock::from_fn(move || clock_now.load(Ordering::SeqCst)),
            ..PgConfig::new(db.url.clone())
        };
        let store = Arc::new(PgStore::open(config).await.expect("opens"));
        // 150 lots besides the welcome grant: priorities, expiries and kinds mixed.
        let mut balance = WELCOME;
        for i in 0..150u64 {
            let terms = LotTerms {
                priority: ((i * 37) % 101) as u8,
                expires_at: (i % 3 == 0).then_some(1_000_000 + 1_000 * (i as i64 % 7 + 1)),
                kind: match i % 2 {
                    0 => crate::domain::LotKind::Promo,
                    _ => crate::domain::LotKind::Paid,
                },
            };
            let change = TopupChange {
                user: "many",
                amount: (i % 5 + 1) as i64,
                terms,
                reason: None,
                keyed: None,
            };
            let Outcome::Applied(changed) = store.topup(change).await.unwrap().0 else {
                panic!("replayed")
            };
            balance += i % 5 + 1;
            assert_eq!(changed.balance, balance);
        }
        assert!(store.audit().await.unwrap().ok);
        // Past ALL_LOTS lots the account is never decided on a copy (which would carry, clone
        // and sort every lot in each batch): only on locked rows, reading what it may touch.
        let on_copies = || store.tally().on_copies.load(Ordering::Relaxed);
        for step in 0..8i64 {
            // Time moves on: some lots expire between the steps.
            now.store(1_000_000 + 1_000 * step + 500, Ordering::SeqCst);
            let (view, _) = store.account("many").await.unwrap();
            let (lots, _, _) = store.lots("many").await.unwrap();
            assert_eq!(view.balance, lots.iter().map(|l| l.remaining).sum::<u64>());
            // A step spends far fewer lots than this: it stays past ALL_LOTS throughout.
            let many = lots.len() > 2 * batch::ALL_LOTS as usize;
            let copied = on_copies();
            // Eight charges at once (they share batches), and a deduction.
            let charges = (0..8u64).map(|k| {
                let store = store.clone();
                async move { charge(&store, "many", k % 4 + 3).await }
            });
            let results = futures_util::future::join_all(charges).await;
            let spent: u64 = (0..8u64)
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(k, _)| k % 4 + 3)
                .sum();
            if view.balance >= 36 {
                assert!(
                    results.iter().all(Result::is_ok),
                    "step {step}: {results:?}"
                );
            }
            for result in &results {
                match result {
                    Ok(_) | Err(StoreError::InsufficientTokens { .. }) => {}
                    Err(other) => panic!("{other:?}"),
                }
            }
            let (after, _) = store.account("many").await.unwrap();
            assert_eq!(after.balance, view.balance - spent, "step {step}");
            if after.balance >= 2 {
                assert_eq!(topup(&store, "many", -2).await, Ok(after.balance - 2));
            }
            let report = store.audit().await.unwrap();
            assert!(report.ok, "step {step}: {:?}", report.discrepancy);
            if many {
                assert_eq!(on_copies(), copied, "step {step}: decided on a copy");
            }
        }
        // Spend all that is left; then one more token is refused.
        let (left, _) = store.account("many").await.unwrap();
        if left.balance > 0 {
            assert_eq!(charge(&store, "many", left.balance).await, Ok(0));
        }
        assert!(matches!(
            charge(&store, "many", 1).await,
            Err(StoreError::InsufficientTokens { .. })
        ));
        assert!(store.lots("many").await.unwrap().0.is_empty());
        assert!(store.audit().await.unwrap().ok);
        store.close().await;
    });
}

/// Refunds of one charge under one key, asked at once and decided in one batch: one applies,
/// the others replay its reply, whose refund seq (drawn in the write) is the entry's, though
/// they were decided before it was drawn.
#[test]
fn a_refund_key_repeated_within_one_batch_replays_the_entry_it_wrote() {
    use crate::store::{KeyedAs, RefundChange, Refunded};
    let db = TestDatabase::create();
    runtime().block_on(async {
        // One writer, held up by a row lock while the refunds queue: they make one batch.
        let config = PgConfig {
            welcome_tokens: WELCOME,
            pool_size: 4,
            writers: 1,
            ..PgConfig::new(db.url.clone())
        };
        let store = Arc::new(PgStore::open(config).await.expect("opens"));
        charge(&store, "k", 6).await.unwrap();
        topup(&store, "blocker", 1).await.unwrap();
        let charged = store.history("k", 1, None).await.unwrap().entries[0].seq;
        let holder = store.pool().get().await.unwrap();
        holder
            .batch_execute("BEGIN; SELECT 1 FROM accounts WHERE user_id = 'blocker' FOR UPDATE")
            .await
            .unwrap();
        let blocked = {
            let store = store.clone();
            tokio::spawn(async move { topup(&store, "blocker", 1).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let change = RefundChange {
                        entry: charged,
                        user: Some("k"),
                        amount: Some(2),
                        keyed: Some(KeyedAs {
                            idem: crate::store::Idempotency {
                                key: "refund once",
                                fingerprint: "refund 2",
                            },
                            reply: Box::new(|refunded: Refunded| {
                                let refund = refunded.refund;
                                StoredReply::parse(format!("{{\"refund\":{refund}}}")).unwrap()
                            }),
                        }),
                    };
                    match store.refund(change).await.unwrap().0 {
                        Outcome::Applied(refunded) => {
                            (true, format!("{{\"refund\":{}}}", refunded.refund))
                        }
                        Outcome::Replayed(reply) => (false, reply.as_str().to_string()),
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.batch_execute("COMMIT").await.unwrap();
        assert_eq!(blocked.await.unwrap(), Ok(WELCOME + 2));
        let mut replies = Vec::new();
        for task in tasks {
            replies.push(task.await.unwrap());
        }
        let written = store.history("k", 1, None).await.unwrap().entries[0].clone();
        assert_eq!(written.kind, EntryKind::Refund);
        assert_eq!(replies.iter().filter(|(applied, _)| *applied).count(), 1);
        let expected = format!("{{\"refund\":{}}}", written.seq);
        assert!(
            replies.iter().all(|(_, reply)| *reply == expected),
            "{replies:?}"
        );
        assert_eq!(store.account("k").await.unwrap().0.balance, WELCOME - 4);
        assert!(store.audit().await.unwrap().ok);
        store.close().await;
    });
}

/// A charge from lot 0 (the balance carried over from before lots, which no entry opened)
/// is refunded after lot 0 was emptied: it re-opens as it was, the refund keeps its terms,
/// and the export imports into a fresh database that audits it. A charge from before lots
/// names no lot to give back to: refused.
#[test]
fn a_refund_re_opens_lot_zero_as_it_was_carried_over() {
    let db = TestDatabase::create();
    for (version, name, migration) in &migrate::MIGRATIONS[..2] {
        if *version == 1 {
            sql(
                &db,
                "CREATE TABLE memes_schema (version integer PRIMARY KEY, name text NOT NULL,
                                            applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .unwrap();
        }
        sql(&db, migration).unwrap();
        sql(
            &db,
            &format!("INSERT INTO memes_schema (version, name) VALUES ({version}, '{name}')"),
        )
        .unwrap();
    }
    sql(
        &db,
        "INSERT INTO accounts (user_id, balance) VALUES ('a', 149);
         INSERT INTO entries (time_ms, user_id, kind, delta, balance) VALUES
             (10, 'a', 'welcome', 150, 150), (10, 'a', 'charge', -1, 149)",
    )
    .unwrap();
    runtime().block_on(async {
        let store = open(&db).await;
        let refund = |entry: u64, amount: Option<u64>| {
            let store = store.clone();
            async move {
                let change = crate::store::RefundChange {
                    entry,
                    user: None,
                    amount,
                    keyed: None,
                };
                match store.refund(change).await?.0 {
                    Outcome::Applied(refunded) => Ok::<_, StoreError>(refunded),
                    Outcome::Replayed(_) => panic!("unkeyed"),
                }
            }
        };
        let refused = refund(2, None).await.unwrap_err();
        assert!(refused.to_string().contains("before lots"), "{refused}");
        // A top-up (lot 3), then a charge that empties lot 0 and takes 1 of lot 3.
        topup(&store, "a", 5).await.unwrap();
        assert_eq!(charge(&store, "a", 150).await, Ok(4));
        let charged = store.history("a", 1, None).await.unwrap().entries[0].seq;
        let (lots, _, _) = store.lots("a").await.unwrap();
        assert!(lots.iter().all(|lot| lot.id != 0), "lot 0 is emptied");
        // 1 to lot 3, then 9 to lot 0, re-opened as it was carried over.
        let done = refund(charged, Some(10)).await.unwrap();
        assert_eq!((done.balance, done.returned, done.left), (14, 10, 140));
        let (lots, _, _) = store.lots("a").await.unwrap();
        let was = rules::carried_over(149).expect("a lot 0");
        assert!(
            lots.contains(&Lot {
                remaining: 9,
                ..was
            }),
            "{lots:?}"
        );
        assert!(store.audit().await.unwrap().ok);
        // The refund keeps lot 0's terms; an export of it imports whole.
        let mut dump = Vec::new();
        export::export(&store, &mut dump).await.unwrap();
        let text = String::from_utf8(dump.clone()).unwrap();
        assert!(
            text.contains(r#""reopened":[{"id":0,"amount":149"#),
            "{text}"
        );
        let fresh = TestDatabase::create();
        let copy = open(&fresh).await;
        let imported = import::import(&copy, &mut &dump[..], false).await.unwrap();
        assert!(imported.audit.ok, "{:?}", imported.audit);
        assert_eq!(copy.lots("a").await.unwrap().0, lots);
        assert_eq!(refund(charged, None).await.unwrap().left, 0);
        store.close().await;
        copy.close().await;
    });
}

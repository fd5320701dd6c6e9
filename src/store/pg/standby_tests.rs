//! Reads without a primary, on a real server: one that turns read-only (as a standby looks to
//! `target_session_attrs=read-write`, made so by `default_transaction_read_only`) still
//! serves `read_account` and `history`, marked stale, while changes are refused; with no
//! server at all both reads say why, the primary's reason first; and once the server
//! accepts writes again, reads are the primary's, unmarked.

use super::testing::Cluster;
use super::tests::{runtime, topup};
use super::*;

/// Makes database `db` of `server` read-only for new sessions (or writable again) and ends
/// the sessions memesd holds, which keep what they started with.
fn read_only(server: &Cluster, db: &str, on: bool) {
    let setting = match on {
        true => "SET default_transaction_read_only = on",
        false => "RESET default_transaction_read_only",
    };
    server
        .execute(
            "postgres",
            &format!(
                "ALTER DATABASE {db} {setting};
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = '{db}' AND pid <> pg_backend_pid();"
            ),
        )
        .unwrap();
}

#[test]
fn without_a_primary_reads_come_from_a_standby_and_say_how_fresh() {
    let server = Cluster::private();
    server.create_database("memes");
    let url = format!(
        "host={} user=postgres dbname=memes target_session_attrs=read-write",
        server.socket_dir().display()
    );
    let host = format!("{}:5432", server.socket_dir().display());
    runtime().block_on(async {
        let store = PgStore::open(PgConfig {
            pool_size: 4,
            connect_timeout: Duration::from_millis(800),
            ..PgConfig::new(url)
        })
        .await
        .expect("opens");
        assert_eq!(topup(&store, "u", 5).await.unwrap(), 155);
        let (account, stale, _) = store.read_account("u").await.unwrap();
        assert_eq!((account.balance, stale), (155, None), "the primary's");
        assert_eq!(store.history("u", 10, None).await.unwrap().stale, None);

        read_only(&server, "memes", true);
        let error = topup(&store, "u", 1).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert!(store.without_primary().is_some());

        let (account, stale, _) = store.read_account("u").await.unwrap();
        assert_eq!(account.balance, 155);
        let stale = stale.expect("marked as a standby's");
        assert_eq!(stale.from, host);
        // A server replaying nothing holds all it committed: fresh as of the read.
        let as_of: jiff::Timestamp = stale.as_of.expect("as of").parse().unwrap();
        let now = jiff::Timestamp::now();
        assert!(
            as_of <= now && as_of > now - jiff::SignedDuration::from_secs(5),
            "{as_of}"
        );
        assert_eq!(stale.age_secs, Some(0.0));
        let page = store.history("u", 10, None).await.unwrap();
        assert_eq!(page.entries.len(), 2, "welcome and top-up");
        assert_eq!(page.stale.map(|s| s.from), Some(host.clone()));
        assert!(matches!(
            store.account("u").await,
            Err(StoreError::Unreachable(_))
        ));
        assert!(matches!(
            store.read_account("nobody").await,
            Err(StoreError::UnknownUser(_))
        ));

        server.stop();
        let error = store.read_account("u").await.unwrap_err().to_string();
        assert!(error.contains("no PostgreSQL primary answers"), "{error}");
        assert!(
            error.contains("nor could a standby serve the read: "),
            "{error}"
        );
        assert!(error.contains(&host), "{error}");

        server.start_again();
        read_only(&server, "memes", false);
        let back = Instant::now();
        while topup(&store, "u", 1).await.is_err() {
            assert!(back.elapsed() < Duration::from_secs(5), "no primary again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (account, stale, _) = store.read_account("u").await.unwrap();
        assert_eq!((account.balance, stale), (156, None));
        assert_eq!(store.history("u", 10, None).await.unwrap().stale, None);
        store.close().await;
    });
}

/// The connection kept for standby reads may be to a server that dies while a read is on it
/// (a failover drill's next fault): the read is tried again on a new connection, not failed.
/// Here the read waits on a lock another session holds, and its server process is ended
/// meanwhile; the retry waits too, until the lock is let go.
#[test]
fn a_standby_read_whose_connection_breaks_is_tried_again() {
    let server = Cluster::private();
    server.create_database("memes");
    let url = format!(
        "host={} user=postgres dbname=memes target_session_attrs=read-write",
        server.socket_dir().display()
    );
    runtime().block_on(async {
        let store = Arc::new(
            PgStore::open(PgConfig {
                pool_size: 2,
                connect_timeout: Duration::from_millis(800),
                read_deadline: Duration::from_secs(20),
                ..PgConfig::new(url)
            })
            .await
            .expect("opens"),
        );
        assert_eq!(topup(&store, "u", 5).await.unwrap(), 155);
        read_only(&server, "memes", true);
        assert!(
            store.read_account("u").await.unwrap().1.is_some(),
            "a standby's"
        );

        // Sessions of the test's own, writable whatever the database's default: one holds
        // the lock, one watches (a transaction sees pg_stat_activity as it was at its start).
        let (locker, watcher) = (session(&server).await, session(&server).await);
        locker
            .batch_execute("BEGIN READ WRITE; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let waiting = "SELECT pid FROM pg_stat_activity
                       WHERE wait_event_type = 'Lock' AND datname = 'memes'";
        let read = tokio::spawn({
            let store = store.clone();
            async move { store.read_account("u").await }
        });
        let first = wait_for_one(&watcher, waiting, None).await;
        watcher
            .execute("SELECT pg_terminate_backend($1)", &[&first])
            .await
            .unwrap();
        // The ended process may show a moment longer: the retry is the one that is not it.
        wait_for_one(&watcher, waiting, Some(first)).await;
        locker.batch_execute("COMMIT").await.unwrap();

        let (account, stale, _) = read.await.unwrap().expect("the read tried again");
        assert_eq!(account.balance, 155);
        assert!(stale.is_some(), "still a standby's");
        store.close().await;
    });
}

/// The one pid `query` finds other than `not`, once it finds exactly one (within 10 s).
async fn wait_for_one(client: &tokio_postgres::Client, query: &str, not: Option<i32>) -> i32 {
    let started = Instant::now();
    loop {
        let pids: Vec<i32> = (client.query(query, &[]).await.unwrap().iter())
            .map(|row| row.get(0))
            .filter(|&pid| Some(pid) != not)
            .collect();
        if let [pid] = pids.as_slice() {
            return *pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "found {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn session(server: &Cluster) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server.url("memes"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

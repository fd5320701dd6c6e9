//! Following the primary, on real servers: a host that accepts and never answers in front of
//! the connection string, a read-only host (a standby, as `default_transaction_read_only`
//! makes one look), and no primary at all (the server stopped, then started again).

use super::testing::{Cluster, TestDatabase, cluster};
use super::tests::{runtime, topup};
use super::*;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// A "server" in `dir` that accepts connections and never says a word: a frozen postmaster,
/// as its clients see it. Lives as long as the test process (its thread holds the sockets).
fn hung_server(dir: &Path) {
    let listener = UnixListener::bind(dir.join(".s.PGSQL.5432")).expect("binding");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
}

/// A connection string naming several Unix-socket hosts for database `db` (libpq's
/// `key=value` form: the URL form takes one socket directory only).
fn hosts_url(db: &str, hosts: &[&Path]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| h.display().to_string()).collect();
    format!(
        "host={} user=postgres dbname={db} target_session_attrs=read-write",
        hosts.join(",")
    )
}

fn config(url: String) -> PgConfig {
    PgConfig {
        pool_size: 4,
        connect_timeout: Duration::from_millis(800),
        ..PgConfig::new(url)
    }
}

/// Tops `u` up by 1 until it is written, failing after `within`: the balance then.
async fn written_again(store: &PgStore, within: Duration) -> u64 {
    let back = Instant::now();
    loop {
        match topup(store, "u", 1).await {
            Ok(balance) => return balance,
            Err(error) => assert!(
                back.elapsed() < within,
                "no write {:?} after the server came back: {error}",
                back.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_hung_host_in_front_of_the_url_costs_its_own_timeout_and_the_next_host_serves() {
    let db = TestDatabase::create();
    let hung = tempfile::tempdir().unwrap();
    hung_server(hung.path());
    let url = hosts_url(&db.name, &[hung.path(), cluster().socket_dir()]);
    runtime().block_on(async {
        let began = Instant::now();
        // One budget for all hosts (the driver's way) was spent on the hung one, and the
        // store did not open.
        let store = PgStore::open(config(url)).await.expect("opens on host 2");
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(topup(&store, "u", 5).await.unwrap(), 155);
        assert!(store.without_primary().is_none());
        assert!(store.health().await.writable);
        // The hung host is now tried last: new connections do not wait for it (the pool
        // holds 4, the writer one of them).
        let began = Instant::now();
        let mut more = Vec::new();
        for _ in 0..3 {
            more.push(store.pool().get().await.expect("a connection"));
        }
        assert!(
            began.elapsed() < Duration::from_millis(700),
            "{:?}",
            began.elapsed()
        );
        drop(more);
        store.close().await;
    });
}

#[test]
fn a_read_only_host_is_passed_over_and_named_when_it_is_the_only_one() {
    let db = TestDatabase::create();
    let standby = Cluster::private();
    standby.create_database(&db.name);
    standby
        .execute(
            "postgres",
            &format!(
                "ALTER DATABASE {} SET default_transaction_read_only = on",
                db.name
            ),
        )
        .unwrap();
    runtime().block_on(async {
        let url = hosts_url(&db.name, &[standby.socket_dir(), cluster().socket_dir()]);
        let store = PgStore::open(config(url)).await.expect("opens on host 2");
        assert_eq!(topup(&store, "u", 5).await.unwrap(), 155);
        store.close().await;

        let alone = hosts_url(&db.name, &[standby.socket_dir()]);
        let refused = match PgStore::open(config(alone)).await {
            Ok(_) => panic!("a read-only server opened for writes"),
            Err(error) => error.to_string(),
        };
        let named = format!("{}:5432: read-only", standby.socket_dir().display());
        assert!(refused.contains(&named), "{refused}");
    });
}

#[test]
fn without_a_primary_changes_fail_fast_and_writes_resume_by_themselves() {
    let server = Cluster::private();
    server.create_database("memes");
    runtime().block_on(async {
        let store = PgStore::open(PgConfig {
            change_deadline: Duration::from_secs(5),
            ..config(hosts_url("memes", &[server.socket_dir()]))
        })
        .await
        .expect("opens");
        assert_eq!(topup(&store, "u", 5).await.unwrap(), 155);
        server.stop();
        // The first change finds the connection gone and no host to go to; the next ones
        // do not wait at all.
        let began = Instant::now();
        let error = topup(&store, "u", 1).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        let began = Instant::now();
        let error = topup(&store, "u", 1).await.unwrap_err();
        assert!(
            began.elapsed() < Duration::from_millis(300),
            "{:?}",
            began.elapsed()
        );
        let message = error.to_string();
        assert!(message.contains("no PostgreSQL primary"), "{message}");
        assert!(
            message.contains(&server.socket_dir().display().to_string()),
            "{message}"
        );
        assert!(!store.health().await.writable);
        assert!(store.without_primary().is_some());

        server.start_again();
        assert_eq!(written_again(&store, Duration::from_secs(3)).await, 156);
        assert!(store.health().await.writable);
        assert!(store.without_primary().is_none());
        store.close().await;
    });
}

#[test]
fn a_hung_host_does_not_hold_back_the_primary_that_comes_back() {
    let server = Cluster::private();
    server.create_database("memes");
    let hung = tempfile::tempdir().unwrap();
    hung_server(hung.path());
    let per_host = Duration::from_secs(3);
    runtime().block_on(async {
        let store = PgStore::open(PgConfig {
            connect_timeout: per_host,
            ..config(hosts_url("memes", &[hung.path(), server.socket_dir()]))
        })
        .await
        .expect("opens on host 2");
        assert_eq!(topup(&store, "u", 5).await.unwrap(), 155);
        server.stop();
        assert!(topup(&store, "u", 1).await.is_err());
        assert!(store.without_primary().is_some());
        // Long enough for both hosts to have failed lately (neither is preferred), and for
        // the prober to be waiting on the hung host when the server comes back.
        tokio::time::sleep(per_host + Duration::from_millis(500)).await;
        server.start_again();
        // Asked in turn, the hung host in front would cost up to its 3 s each round.
        assert_eq!(
            written_again(&store, Duration::from_millis(1500)).await,
            156
        );
        store.close().await;
    });
}

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

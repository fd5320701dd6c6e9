//! The PostgreSQL schema, versioned: numbered SQL files under `migrations/`, embedded in the
//! binary, applied in order at start-up.
//!
//! Plain SQL files and `include_str!` rather than a migration crate: the schema is small, the
//! files are what a DBA reads and reviews, and applying them takes a dozen lines. The
//! version table `memes_schema` records each one applied. Hosts that start together take a
//! session advisory lock first, so exactly one applies the pending migrations while the
//! others wait and then find nothing to do. A database whose schema is newer than this
//! binary knows is refused, by name: an old binary must not write a ledger whose rules it
//! does not know.

use tokio_postgres::Client;

/// The migrations this binary knows, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "0001_init", include_str!("migrations/0001_init.sql")),
    (
        2,
        "0002_commits",
        include_str!("migrations/0002_commits.sql"),
    ),
    (3, "0003_lots", include_str!("migrations/0003_lots.sql")),
    (4, "0004_holds", include_str!("migrations/0004_holds.sql")),
    (
        5,
        "0005_lots_read_in_part",
        include_str!("migrations/0005_lots_read_in_part.sql"),
    ),
    (
        6,
        "0006_refunds",
        include_str!("migrations/0006_refunds.sql"),
    ),
    (
        7,
        "0007_expiries_due",
        include_str!("migrations/0007_expiries_due.sql"),
    ),
];

/// The key of the advisory lock held while migrating ("memes" in ASCII).
const LOCK_KEY: i64 = 0x6d_656d_6573;

/// The newest schema version this binary knows.
pub fn known_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database's ledger schema is version {found}, newer than version {known} that this memesd knows; upgrade memesd (it refuses to write a ledger whose rules it does not know)"
    )]
    TooNew { found: i32, known: i32 },
    #[error("migrating the ledger schema: {0}")]
    Database(#[from] tokio_postgres::Error),
}

/// Applies every migration the database lacks, under the advisory lock; returns the
/// versions applied (empty if it was up to date).
pub async fn migrate(client: &Client) -> Result<Vec<i32>, MigrateError> {
    // Waiting for another host's migration, or migrating a large table, may take longer
    // than a request may: no statement timeout until this session goes back to the pool.
    client.batch_execute("SET statement_timeout = 0").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_pending(client).await;
    // A failure to unlock leaves the lock to the session's end, which is soon.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    // Back to the timeout the connection was opened with.
    client.batch_execute("RESET statement_timeout").await?;
    result
}

async fn apply_pending(client: &Client) -> Result<Vec<i32>, MigrateError> {
    // Looked up first: a role without CREATE on the schema (memes_app) may run memesd on a
    // database that is up to date, and CREATE … IF NOT EXISTS would need that privilege.
    let exists: bool = client
        .query_one("SELECT to_regclass('memes_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS memes_schema (
                     version    integer PRIMARY KEY,
                     name       text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await?;
    }
    let found = current_version(client).await?;
    let known = known_version();
    if found > known {
        return Err(MigrateError::TooNew { found, known });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        // Each migration and its record in one transaction: all of it or none.
        client.batch_execute("BEGIN").await?;
        let done = async {
            client.batch_execute(sql).await?;
            client
                .execute(
                    "INSERT INTO memes_schema (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
            client.batch_execute("COMMIT").await
        }
        .await;
        if let Err(error) = done {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error.into());
        }
        tracing::info!("ledger schema migrated to version {version} ({name})");
        applied.push(*version);
    }
    Ok(applied)
}

/// The schema version the database is at (0 if none).
pub async fn current_version(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM memes_schema", &[])
        .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_in_order_and_named_after_their_files() {
        for (i, (version, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
            assert!(!sql.trim().is_empty());
        }
    }
}

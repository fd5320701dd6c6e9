//! From `--store` (or `MEMES_STORE`) to an open store: the file store in the data directory
//! by default, or PostgreSQL, which several hosts can share. [`parse`] reads the spec into a
//! [`Spec`], [`open`] opens the store it names (one arm per store) and hands it back as a
//! [`TokenStore`], which the daemon serves and closes without knowing its kind. A new store
//! adds its module, its form of spec here and its arm in [`open`]; the daemon does not
//! change. (`memesd export` and `import` move a ledger between two particular stores, so
//! they read the [`Spec`] themselves.)

use crate::store::file::moved;
use crate::store::pg::{self, PgConfig, PgStore};
use crate::store::{FileStore, StoreConfig, TokenStore};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store a spec names.
#[derive(Debug, Clone)]
pub enum Spec {
    /// The journal store in this directory.
    File(PathBuf),
    Postgres(Box<PgConfig>),
}

/// What opening a store may use besides its spec: memesd's settings for stores.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Tokens a new account is granted.
    pub welcome_tokens: u64,
    /// How long the welcome grant's lot lasts; `None`: it never expires.
    pub welcome_expires: Option<std::time::Duration>,
    /// The file store writes a checkpoint after this many bytes of journal.
    pub checkpoint_bytes: u64,
    /// Connections a database store keeps from this host.
    pub pool_size: usize,
}

/// An open store, and where it keeps its ledger.
pub struct Opened {
    pub store: Arc<dyn TokenStore>,
    /// The directory on this host the ledger is in, locked for the store's life; `None`
    /// for a database that several hosts may share.
    pub dir: Option<PathBuf>,
    /// Whether opening created `dir` (a start that fails later removes it again).
    pub created_dir: bool,
}

/// Opens the store `spec` names (blocking work, such as the file store's recovery, runs on
/// a blocking thread). Refuses a file ledger that was moved elsewhere.
pub async fn open(spec: Spec, options: &OpenOptions) -> anyhow::Result<Opened> {
    match spec {
        Spec::File(dir) => open_file(dir, options).await,
        Spec::Postgres(config) => open_postgres(*config, options).await,
    }
}

async fn open_file(dir: PathBuf, options: &OpenOptions) -> anyhow::Result<Opened> {
    let moved = moved::read(&dir)
        .with_context(|| format!("checking whether {} was moved", dir.display()))?;
    if let Some(moved) = moved {
        bail!(moved.refusal(&dir));
    }
    let created_dir = !dir.exists();
    let config = StoreConfig {
        welcome_tokens: options.welcome_tokens,
        welcome_expires: options.welcome_expires,
        checkpoint_bytes: options.checkpoint_bytes,
        ..StoreConfig::default()
    };
    let store = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || FileStore::open(&dir, config)
    })
    .await?
    .context("opening the ledger")?;
    let recovery = store.recovery_stats();
    tracing::info!(
        "ledger in {}: {} accounts from the checkpoint, {} journal transactions replayed, {} entries",
        dir.display(),
        recovery.checkpoint_accounts,
        recovery.replayed_lines,
        store.stats_now().entries
    );
    Ok(Opened {
        store: Arc::new(store),
        dir: Some(dir),
        created_dir,
    })
}

async fn open_postgres(config: PgConfig, options: &OpenOptions) -> anyhow::Result<Opened> {
    let config = PgConfig {
        welcome_tokens: options.welcome_tokens,
        welcome_expires: options.welcome_expires,
        pool_size: options.pool_size,
        // One writer per 16 connections: on two cores one writer per host made the
        // biggest batches and the most throughput (BENCHMARKS.md, run C).
        writers: (options.pool_size / 16).max(1),
        ..config
    };
    let url = pg::describe(&config.url);
    let store = PgStore::open(config)
        .await
        .context("opening the ledger in PostgreSQL")?;
    tracing::info!("ledger in PostgreSQL at {url}, shared with any other memesd there");
    Ok(Opened {
        store: Arc::new(store),
        dir: None,
        created_dir: false,
    })
}

/// Reads `--store`: nothing, `file` or `file:` for the data directory; `file:DIR` or a plain
/// path for another directory; `postgres://…`, `postgresql://…` or libpq's `key=value` form
/// for PostgreSQL. The password comes from the URL, else `password_file`, else `PGPASSWORD`.
pub fn parse(
    store: Option<&str>,
    password_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Spec, String> {
    let Some(store) = store.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Spec::File(data_dir.to_path_buf()));
    };
    if store.starts_with("postgres://")
        || store.starts_with("postgresql://")
        || (store.contains('=') && !store.contains('/') && !store.starts_with("file:"))
        || (store.contains('=') && store.contains("host="))
    {
        let mut config = PgConfig::new(store);
        config.password = match password_file {
            Some(file) => Some(read_password(file)?),
            None => std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
        };
        return Ok(Spec::Postgres(Box::new(config)));
    }
    if password_file.is_some() {
        return Err("--store-password-file is for a PostgreSQL --store".into());
    }
    match store.strip_prefix("file:").unwrap_or(store) {
        "" | "file" => Ok(Spec::File(data_dir.to_path_buf())),
        dir if dir.contains("://") => Err(format!(
            "--store {dir:?}: not a store memesd knows (postgres://… or file:DIR)"
        )),
        dir => Ok(Spec::File(PathBuf::from(dir))),
    }
}

/// The first line of a password file (a trailing newline is not part of the password).
fn read_password(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("reading the password file {}: {e}", file.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_store_is_the_default_and_postgres_is_chosen_by_url() {
        let data = Path::new("/data");
        let file = |s: Option<&str>| match parse(s, None, data).unwrap() {
            Spec::File(dir) => dir,
            other => panic!("{other:?}"),
        };
        assert_eq!(file(None), data);
        assert_eq!(file(Some("file")), data);
        assert_eq!(file(Some("file:")), data);
        assert_eq!(file(Some("file:/srv/ledger")), Path::new("/srv/ledger"));
        assert_eq!(file(Some("/srv/ledger")), Path::new("/srv/ledger"));
        for url in [
            "postgres://memes@db/memes",
            "postgresql:///memes?host=/run/postgresql",
            "host=/run/postgresql dbname=memes",
        ] {
            assert!(
                matches!(parse(Some(url), None, data), Ok(Spec::Postgres(_))),
                "{url}"
            );
        }
        assert!(parse(Some("mysql://x"), None, data).is_err());
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        match parse(Some("postgres://u@h/d"), Some(&file), Path::new("/d")).unwrap() {
            Spec::Postgres(config) => assert_eq!(config.password.as_deref(), Some("s3cret")),
            other => panic!("{other:?}"),
        }
    }
}

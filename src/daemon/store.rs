//! Which store memesd runs on, from `--store` (or `MEMES_STORE`): the file store in the data
//! directory by default, or PostgreSQL, which several hosts can share.

use crate::store::pg::PgConfig;
use std::path::{Path, PathBuf};

/// The store memesd is pointed at.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// The journal store in this directory.
    File(PathBuf),
    Postgres(Box<PgConfig>),
}

/// Reads `--store`: nothing, `file` or `file:` for the data directory; `file:DIR` or a plain
/// path for another directory; `postgres://…`, `postgresql://…` or libpq's `key=value` form
/// for PostgreSQL. The password comes from the URL, else `password_file`, else `PGPASSWORD`.
pub fn choose(
    store: Option<&str>,
    password_file: Option<&Path>,
    data_dir: &Path,
) -> Result<StoreChoice, String> {
    let Some(store) = store.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(StoreChoice::File(data_dir.to_path_buf()));
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
        return Ok(StoreChoice::Postgres(Box::new(config)));
    }
    if password_file.is_some() {
        return Err("--store-password-file is for a PostgreSQL --store".into());
    }
    match store.strip_prefix("file:").unwrap_or(store) {
        "" | "file" => Ok(StoreChoice::File(data_dir.to_path_buf())),
        dir if dir.contains("://") => Err(format!(
            "--store {dir:?}: not a store memesd knows (postgres://… or file:DIR)"
        )),
        dir => Ok(StoreChoice::File(PathBuf::from(dir))),
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
        let file = |s: Option<&str>| match choose(s, None, data).unwrap() {
            StoreChoice::File(dir) => dir,
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
                matches!(choose(Some(url), None, data), Ok(StoreChoice::Postgres(_))),
                "{url}"
            );
        }
        assert!(choose(Some("mysql://x"), None, data).is_err());
    }

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        match choose(Some("postgres://u@h/d"), Some(&file), Path::new("/d")).unwrap() {
            StoreChoice::Postgres(config) => assert_eq!(config.password.as_deref(), Some("s3cret")),
            other => panic!("{other:?}"),
        }
    }
}

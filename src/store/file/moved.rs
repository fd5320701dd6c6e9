//! A file ledger that was moved elsewhere (`memesd import` into PostgreSQL) and must not be
//! served any more: `moved.json` in its data directory says where it went and when. A memesd
//! refuses to start on such a directory, so that a user's balance is only ever decided in
//! one place; removing the file is the deliberate way to serve this copy again.
//!
//! It only reads and writes that one file; the daemon decides what to do with it.

use crate::atomic_file;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The marker's file name in the data directory.
pub const MOVED_FILE: &str = "moved.json";

/// Where a ledger went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// The ledger's new place, without a password (e.g. `postgres://app@db:5432/memes`).
    pub to: String,
    /// When it was moved, RFC 3339.
    pub at: String,
    /// What moved it.
    pub by: String,
}

/// The marker's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(MOVED_FILE)
}

/// The marker in `dir`, if the ledger there was moved.
pub fn read(dir: &Path) -> io::Result<Option<Moved>> {
    let path = path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a moved-ledger marker: {e}", path.display()),
            )
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Marks the ledger in `dir` as moved (atomically, durably).
pub fn mark(dir: &Path, moved: &Moved) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(moved).expect("a marker serialises");
    json.push(b'\n');
    atomic_file::write(&dir.join("moved.json.tmp"), &path(dir), &json)
}

impl Moved {
    /// Why a memesd refuses to serve the ledger in `dir`, and how to serve it anyway.
    pub fn refusal(&self, dir: &Path) -> String {
        format!(
            "the ledger in {} was moved to {} on {} ({}): serve it there (memesd --store …); \
             to serve this old copy anyway, deliberately giving its users a second balance, \
             remove {}",
            dir.display(),
            self.to,
            self.at,
            self.by,
            path(dir).display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_and_an_absent_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let moved = Moved {
            to: "postgres://app@db:5432/memes".into(),
            at: "2026-12-07T05:00:00Z".into(),
            by: "memesd import".into(),
        };
        mark(dir.path(), &moved).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(moved.clone()));
        let refusal = moved.refusal(dir.path());
        assert!(refusal.contains("postgres://app@db:5432/memes") && refusal.contains("remove"));
        std::fs::write(path(dir.path()), "junk").unwrap();
        assert!(
            read(dir.path()).is_err(),
            "a damaged marker is an error, not absent"
        );
    }
}

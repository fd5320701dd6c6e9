//! Exclusive lock files: the way one daemon claims a data directory or a socket name. The
//! lock lives as long as the returned file; the kernel releases it when its holder exits or
//! dies, so a crash never leaves a stale lock behind.
//!
//! The data directory's lock file also says who holds it ([`record_owner`]): a client whose
//! daemon was refused the directory can then name the socket the running one serves. The
//! record is advice for error messages, never a lock itself: it outlives its daemon.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file a daemon holds in its data directory.
pub const DATA_DIR_LOCK: &str = "memesd.lock";

/// Opens `path` (creating it, mode 0600) and locks it exclusively without waiting.
/// `Ok(None)` when another process holds the lock.
pub fn try_acquire(path: &Path) -> io::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// The daemon that holds (or last held) a data directory, as it recorded itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub socket: PathBuf,
}

/// Writes this process and the socket it serves into `data_dir`'s lock file. Call it once
/// the lock is held (the store is open). A failure is logged and otherwise ignored: it only
/// costs a later error message its detail.
pub fn record_owner(data_dir: &Path, socket: &Path) {
    let path = data_dir.join(DATA_DIR_LOCK);
    let write = || -> io::Result<()> {
        // The lock is held through another descriptor; the content is ours to replace.
        let mut file = OpenOptions::new().write(true).truncate(true).open(&path)?;
        let mut record = format!("pid {}\nsocket ", std::process::id()).into_bytes();
        record.extend_from_slice(socket.as_os_str().as_bytes());
        record.push(b'\n');
        file.write_all(&record)
    };
    if let Err(error) = write() {
        tracing::warn!("cannot record the socket in {}: {error}", path.display());
    }
}

/// What [`record_owner`] wrote in `data_dir`'s lock file, if anything readable. The daemon
/// it names may be gone: check that the socket answers before relying on it.
pub fn read_owner(data_dir: &Path) -> Option<Owner> {
    let record = std::fs::read(data_dir.join(DATA_DIR_LOCK)).ok()?;
    let mut pid = None;
    let mut socket = None;
    for line in record.split(|&b| b == b'\n') {
        if let Some(value) = line.strip_prefix(b"pid ") {
            pid = std::str::from_utf8(value).ok()?.parse().ok();
        } else if let Some(value) = line.strip_prefix(b"socket ") {
            socket = Some(PathBuf::from(std::ffi::OsStr::from_bytes(value)));
        }
    }
    Some(Owner {
        pid: pid?,
        socket: socket.filter(|path| path.is_absolute())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_recorded_under_the_lock_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_owner(dir.path()), None);
        let lock = try_acquire(&dir.path().join(DATA_DIR_LOCK)).unwrap();
        assert!(lock.is_some());
        record_owner(dir.path(), Path::new("/run/a b/memesd.sock"));
        let owner = Owner {
            pid: std::process::id(),
            socket: PathBuf::from("/run/a b/memesd.sock"),
        };
        assert_eq!(read_owner(dir.path()), Some(owner.clone()));
        // A later daemon replaces the record, never appends to it.
        record_owner(dir.path(), Path::new("/tmp/x.sock"));
        assert_eq!(
            read_owner(dir.path()).unwrap().socket,
            Path::new("/tmp/x.sock")
        );
        // Still locked: recording does not release or break the lock.
        assert!(
            try_acquire(&dir.path().join(DATA_DIR_LOCK))
                .unwrap()
                .is_none()
        );
    }
}

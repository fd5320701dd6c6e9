//! Exclusive lock files: the way one daemon claims a data directory or a socket name. The
//! lock lives as long as the returned file; the kernel releases it when its holder exits or
//! dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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

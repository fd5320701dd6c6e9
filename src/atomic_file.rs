//! Replacing a file atomically and durably: write a temporary file beside it, fsync that,
//! rename it over the target, fsync the directory. A reader, or the system after a crash,
//! sees the old file or the new one, whole, never a mixture.
//!
//! Used for ledger checkpoints and generated images. Errors name the file they concern (the
//! bare OS message, "Operation not permitted", tells an operator nothing), and a temporary
//! file is removed when publishing it fails: left behind, a big one can fill the disk that
//! the rest of the daemon needs. This module does not decide names or when to write.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `tmp` (mode 0600) and publishes it as `target` (see [`publish`]).
/// `tmp` must be in the same directory as `target`.
pub fn write(tmp: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let written = create(tmp).and_then(|mut file| {
        file.write_all(bytes)
            .map_err(|e| context("writing", tmp, e))
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(error);
    }
    publish(tmp, target)
}

/// Creates (or truncates) a temporary file, mode 0600, for [`publish`].
pub fn create(tmp: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| context("creating", tmp, e))
}

/// Makes the fully written file `tmp` the file `target`, atomically and durably: fsync
/// `tmp`, rename it over `target`, fsync their directory. If that fails, `tmp` is removed.
pub fn publish(tmp: &Path, target: &Path) -> io::Result<()> {
    let published = File::open(tmp)
        .and_then(|file| file.sync_all())
        .map_err(|e| context("flushing", tmp, e))
        .and_then(|()| {
            std::fs::rename(tmp, target).map_err(|e| {
                let what = format!("replacing {} with", target.display());
                context(&what, tmp, e)
            })
        });
    if let Err(error) = published {
        let _ = std::fs::remove_file(tmp);
        return Err(error);
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| context("flushing the directory", dir, e))
}

/// The error `error`, its message prefixed with what was being done to which file.
pub fn context(doing: &str, path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{doing} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_target_whole_with_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, target) = (dir.path().join("f.tmp"), dir.path().join("f"));
        std::fs::write(&target, b"old").unwrap();
        write(&tmp, &target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!tmp.exists());
    }

    #[test]
    fn a_failed_publish_removes_the_temporary_file_and_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, target) = (dir.path().join("f.tmp"), dir.path().join("f"));
        // A non-empty directory cannot be replaced by a file, even by root.
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"").unwrap();
        let error = write(&tmp, &target, b"new").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&*tmp.to_string_lossy())
                && message.contains(&*target.to_string_lossy()),
            "{message}"
        );
        assert!(!tmp.exists(), "the temporary file is removed");
        assert!(target.join("inside").exists(), "the target is untouched");
    }
}

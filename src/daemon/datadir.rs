//! The data directory's permissions, checked before the store opens it. The ledger is
//! private (0700): an existing directory that others may enter is tightened, and the
//! operator is told, naming the old and the new mode. (PostgreSQL refuses to start on such a
//! directory; memesd warns and tightens, since nothing else belongs in it.)
//!
//! It must not create the directory (the store does, with mode 0700) nor touch its files.

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The mode of a data directory.
pub const PRIVATE: u32 = 0o700;

/// A mode change made by [`secure_existing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tightened {
    pub from: u32,
    pub to: u32,
}

/// Call before the store opens `dir`: if `dir` exists with any permission for group or
/// others, sets it to 0700 and logs a warning naming both modes. Returns the change made, if
/// any; an absent directory is left for the store to create.
pub fn secure_existing(dir: &Path) -> io::Result<Option<Tightened>> {
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let from = metadata.permissions().mode() & 0o7777;
    if !metadata.is_dir() || from & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE))?;
    tracing::warn!(
        "data directory {} was mode {from:04o}, open to other users; changed it to {PRIVATE:04o}",
        dir.display()
    );
    Ok(Some(Tightened { from, to: PRIVATE }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_open_data_directory_is_tightened_and_reported() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            secure_existing(&dir).unwrap(),
            Some(Tightened {
                from: 0o755,
                to: 0o700
            })
        );
        assert_eq!(mode(&dir), 0o700);
        // Private already: nothing to do, nothing said.
        assert_eq!(secure_existing(&dir).unwrap(), None);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o500)).unwrap();
        assert_eq!(secure_existing(&dir).unwrap(), None);
        assert_eq!(mode(&dir), 0o500, "a stricter mode is not loosened");
        // Absent: left for the store to create.
        assert_eq!(
            secure_existing(&parent.path().join("absent")).unwrap(),
            None
        );
        assert!(!parent.path().join("absent").exists());
    }
}

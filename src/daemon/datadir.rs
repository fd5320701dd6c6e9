//! The data directory's owner and permissions, checked before the store opens it.
//!
//! A data directory belongs to the user who runs its memesd: one owned by anyone else is
//! refused, naming the owner (as PostgreSQL refuses a data directory it does not own). Root
//! is no exception: a root memesd would rewrite another user's ledger as root-owned files
//! that its owner's memesd then cannot open. The ledger is private (0700): an existing
//! directory that others may enter is tightened, and the operator is told, naming the old and
//! the new mode. (PostgreSQL refuses to start on such a directory; memesd warns and
//! tightens, since nothing else belongs in it.)
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

/// Refuses an existing data directory that another user owns, naming its owner and who
/// runs this memesd; an absent directory is left for the store to create.
pub fn check_owner(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            return Err(format!(
                "the data directory {} cannot be reached by {}: a directory on its path is not open to this user ({error}); give memesd a data directory of its own (--data-dir)",
                dir.display(),
                user_name(nix::unistd::geteuid().as_raw())
            ));
        }
        Err(error) => return Err(format!("{}: {error}", dir.display())),
    };
    let me = nix::unistd::geteuid().as_raw();
    match metadata.uid() == me {
        true => Ok(()),
        false => Err(format!(
            "the data directory {} belongs to {}, not to {} who runs this memesd: a ledger is run by its owner only (run memesd as {}, or give it a data directory of its own with --data-dir)",
            dir.display(),
            user_name(metadata.uid()),
            user_name(me),
            user_name(metadata.uid()),
        )),
    }
}

/// A user as `name (uid N)`, or `uid N` for a uid without a name.
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
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

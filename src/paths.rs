//! Where memesd keeps its data and its socket, for both binaries: a flag wins, then the
//! environment (`MEMES_SOCKET`, `MEMES_DATA_DIR`), then these defaults.
//!
//! Data: the platform data directory (`$XDG_DATA_HOME/memes`, usually
//! `~/.local/share/memes`). Socket: `memesd.sock` in the runtime directory
//! (`$XDG_RUNTIME_DIR/memes`); `XDG_RUNTIME_DIR` is often unset (containers, CI, cron), so
//! the fallback is a private directory `/tmp/memes-$UID` that memesd creates with mode 0700.

use directories::ProjectDirs;
use std::path::{Path, PathBuf};

/// Environment variable naming the socket.
pub const SOCKET_ENV: &str = "MEMES_SOCKET";
/// Environment variable naming the data directory.
pub const DATA_DIR_ENV: &str = "MEMES_DATA_DIR";
/// The socket's file name in the default directory.
pub const SOCKET_NAME: &str = "memesd.sock";
/// Longest socket path Linux accepts (`sun_path` is 108 bytes including the final NUL).
/// Here, not with the socket front, because the default path is chosen to fit it.
pub const MAX_SOCKET_PATH: usize = 107;

fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "memes")
}

/// A private per-user directory under /tmp, for when the platform has no better place.
fn private_tmp() -> PathBuf {
    PathBuf::from(format!("/tmp/memes-{}", nix::unistd::Uid::current()))
}

/// The data directory memesd uses: `flag` (its `--data-dir`), else `MEMES_DATA_DIR` (unless
/// empty), else the default. The CLI resolves it the same way (with no flag) to find the log
/// of a daemon it starts.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| {
            std::env::var_os(DATA_DIR_ENV)
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(default_data_dir)
}

/// The default data directory.
pub fn default_data_dir() -> PathBuf {
    project()
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| private_tmp().join("data"))
}

/// The default socket path.
pub fn default_socket() -> PathBuf {
    project()
        .and_then(|dirs| dirs.runtime_dir().map(|dir| dir.join(SOCKET_NAME)))
        .filter(|path| path.as_os_str().len() <= MAX_SOCKET_PATH)
        .unwrap_or_else(|| private_tmp().join(SOCKET_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_absolute_and_the_socket_fits_sun_path() {
        assert!(default_data_dir().is_absolute());
        let socket = default_socket();
        assert!(socket.is_absolute());
        assert!(socket.ends_with(SOCKET_NAME));
        assert!(socket.as_os_str().len() <= MAX_SOCKET_PATH);
    }

    #[test]
    fn a_data_dir_flag_wins() {
        let flag = Path::new("/srv/memes");
        assert_eq!(data_dir(Some(flag)), flag);
    }
}

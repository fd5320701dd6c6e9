//! The listening socket: created with the right permissions, never stealing a live daemon's
//! name, reclaiming a name left behind by a crashed one, and removed on clean shutdown.
//!
//! A lock file next to the socket (`<socket>.lock`) is held for the daemon's life. Whoever
//! holds it owns the name; with it held, an existing socket file is stale and may be removed.
//! A live daemon is never displaced (interprocess's `try_overwrite` would unlink it).
//!
//! Or the socket is inherited ([`inherit`]: systemd's socket activation). Then systemd owns
//! the name: it created the file, keeps listening on it while memesd restarts, and may hand it
//! to the next memesd, so memesd neither takes `<socket>.lock` nor removes the file. Nothing
//! is lost by skipping the lock: its job is to keep two daemons from binding, and later
//! unlinking, the same name, and an inherited socket is never bound or unlinked by memesd.
//! A memesd started by hand on the same path still refuses, because the path answers
//! (systemd's listener queues the connection), and the data directory's own lock keeps two
//! daemons off one ledger whatever their sockets.

use crate::lockfile;
use crate::paths::MAX_SOCKET_PATH;
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use nix::sys::socket::{UnixAddr, getsockname};
use nix::unistd::Gid;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Who may connect.
#[derive(Debug, Clone, Copy)]
pub struct SocketAccess {
    /// Permission bits of the socket file (0600 by default: owner only).
    pub mode: u32,
    /// Group that owns the socket file, for modes like 0660.
    pub group: Option<Gid>,
}

impl Default for SocketAccess {
    fn default() -> Self {
        SocketAccess {
            mode: 0o600,
            group: None,
        }
    }
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another memesd is already listening on {0} (stop it first, or pick another --socket)")]
    InUse(PathBuf),
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --socket")]
    TooLong(PathBuf),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A bound socket and the lock that makes it ours, or a socket inherited from systemd (no
/// lock: systemd owns the name).
pub struct BoundSocket {
    pub listener: Listener,
    path: PathBuf,
    _lock: Option<File>,
}

impl BoundSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the socket came from systemd rather than being bound here.
    pub fn is_inherited(&self) -> bool {
        self._lock.is_none()
    }

    /// Stops listening and removes the socket file (clean shutdown); an inherited socket's
    /// file stays, for systemd.
    pub fn remove(self) {
        let inherited = self.is_inherited();
        let BoundSocket {
            listener,
            path,
            _lock,
        } = self;
        drop(listener);
        if inherited {
            return;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
        }
        drop(_lock);
    }
}

/// Binds `path`, creating its directory if needed (0700, or 0710 when a group may connect,
/// so the group can reach the socket but not list the directory).
pub fn bind(path: &Path, access: SocketAccess) -> Result<BoundSocket, BindError> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(BindError::TooLong(path.into()));
    }
    let io_error = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| BindError::Io { what, path, source }
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let dir_mode = if access.group.is_some() { 0o710 } else { 0o700 };
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(parent)
                .map_err(io_error("creating socket directory", parent))?;
            if let Some(group) = access.group {
                std::os::unix::fs::chown(parent, None, Some(group.as_raw()))
                    .map_err(io_error("setting the group of", parent))?;
            }
        }
    }
    let lock_path = lock_path(path);
    let lock = lockfile::try_acquire(&lock_path)
        .map_err(io_error("locking", &lock_path))?
        .ok_or_else(|| BindError::InUse(path.into()))?;
    if path.exists() {
        // We hold the name's lock, so no daemon that follows these rules is using it. Still,
        // refuse to remove a socket that answers: that is a daemon we must not displace.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.into()));
        }
        tracing::info!(
            "removing stale socket {} left by a previous daemon",
            path.display()
        );
        std::fs::remove_file(path).map_err(io_error("removing stale socket", path))?;
    }
    let name = path
        .to_fs_name::<GenericFilePath>()
        .map_err(io_error("naming socket", path))?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(access.mode)
        // We remove the file ourselves, after the store is flushed (see `remove`).
        .reclaim_name(false)
        .create_tokio()
        .map_err(io_error("listening on", path))?;
    if let Some(group) = access.group {
        std::os::unix::fs::chown(path, None, Some(group.as_raw()))
            .map_err(io_error("setting the group of", path))?;
    }
    // Belt and braces: the mode was applied before bind; make sure nothing widened it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
        .map_err(io_error("setting permissions of", path))?;
    Ok(BoundSocket {
        listener,
        path: path.into(),
        _lock: Some(lock),
    })
}

/// Serves a listening Unix stream socket passed by systemd (socket activation). Its path,
/// owner and mode are systemd's (`ListenStream=`, `SocketMode=`, `SocketGroup=`).
pub fn inherit(fd: OwnedFd) -> Result<BoundSocket, BindError> {
    let path = match getsockname::<UnixAddr>(fd.as_raw_fd()) {
        Ok(address) => address.path().map(Path::to_path_buf),
        Err(_) => None,
    }
    .unwrap_or_else(|| PathBuf::from("(inherited socket)"));
    let listener = interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(fd)
        .map_err(|source| BindError::Io {
            what: "serving the inherited socket",
            path: path.clone(),
            source,
        })?;
    Ok(BoundSocket {
        listener: Listener::from(listener),
        path,
        _lock: None,
    })
}

fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

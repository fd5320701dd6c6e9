//! memesd under systemd: readiness notifications and socket activation. Both are inert
//! outside systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`), so nothing here changes a daemon
//! started by hand, by `memes`, or by a test.
//!
//! Notifications (`Type=notify`, sd_notify(3)): `READY=1` once every front listens (after
//! the ledger is recovered), `STOPPING=1` as shutdown starts, `RELOADING=1` then `READY=1`
//! around a SIGHUP reload. The `sd-notify` crate writes the datagram; a failure to notify is
//! logged and otherwise ignored (the daemon serves either way).
//!
//! Socket activation (sd_listen_fds(3)): systemd passes listening sockets from descriptor 3
//! on, with `LISTEN_PID` (which must be this process), `LISTEN_FDS` (how many) and
//! `LISTEN_FDNAMES` (`FileDescriptorName=` of each: `unix` and `http` in
//! deploy/systemd/*.socket). A descriptor with another name is told by its address family.
//! The variables are removed once read, so processes memesd starts (`--generator-cmd`) do not
//! see them, and the descriptors are close-on-exec.

use anyhow::{Context, Result, bail};
use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname};
use nix::sys::socket::{getsockopt, sockopt};
use sd_notify::NotifyState;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The listening sockets systemd passed, by front.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The NDJSON front's Unix socket (`FileDescriptorName=unix`).
    pub unix: Option<OwnedFd>,
    /// The HTTP front's TCP listener (`FileDescriptorName=http`).
    pub http: Option<OwnedFd>,
}

impl Inherited {
    /// Takes the sockets systemd passed to this process, if any, and removes `LISTEN_PID`,
    /// `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment.
    ///
    /// Call it before the process starts any thread (first thing in [`super::run`], before
    /// the runtime): changing the environment is only sound while nothing else can read it.
    pub fn take() -> Result<Inherited> {
        // SAFETY: memesd's main thread is the only thread at this point (see above).
        let passed = unsafe { sd_notify::listen_fds_with_names_and_unset_env() }
            .context("reading the sockets passed by systemd (LISTEN_FDS, LISTEN_FDNAMES)")?;
        let passed: Vec<(RawFd, String)> = passed.collect();
        let owned = passed
            .into_iter()
            // SAFETY: systemd passed these descriptors to this process (LISTEN_PID matched),
            // and nothing else in memesd takes them.
            .map(|(fd, name)| (unsafe { OwnedFd::from_raw_fd(fd) }, name))
            .collect();
        classify(owned)
    }

    /// The path of the inherited Unix socket, when it has one.
    pub fn unix_path(&self) -> Option<std::path::PathBuf> {
        let fd = self.unix.as_ref()?;
        let address = getsockname::<nix::sys::socket::UnixAddr>(fd.as_raw_fd()).ok()?;
        address.path().map(std::path::Path::to_path_buf)
    }

    /// The inherited HTTP listener, ready for tokio (non-blocking), and its address.
    pub fn take_http(&mut self) -> Result<Option<(std::net::TcpListener, std::net::SocketAddr)>> {
        let Some(fd) = self.http.take() else {
            return Ok(None);
        };
        let listener = std::net::TcpListener::from(fd);
        listener
            .set_nonblocking(true)
            .context("setting up the HTTP socket passed by systemd")?;
        let address = listener
            .local_addr()
            .context("reading the address of the HTTP socket passed by systemd")?;
        Ok(Some((listener, address)))
    }
}

/// Sorts passed descriptors into fronts: by name, else by address family; each must be a
/// listening stream socket of the right family, and each front takes at most one.
pub fn classify(passed: Vec<(OwnedFd, String)>) -> Result<Inherited> {
    let mut inherited = Inherited::default();
    for (fd, name) in passed {
        let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())
            .ok()
            .and_then(|address| address.family());
        let front = match (name.as_str(), family) {
            ("unix", _) => "unix",
            ("http", _) => "http",
            (_, Some(AddressFamily::Unix)) => "unix",
            (_, Some(AddressFamily::Inet | AddressFamily::Inet6)) => "http",
            _ => bail!("systemd passed a socket named {name:?} that memesd cannot serve"),
        };
        let expected_family = matches!(
            (front, family),
            ("unix", Some(AddressFamily::Unix))
                | ("http", Some(AddressFamily::Inet | AddressFamily::Inet6))
        );
        let stream = getsockopt(&fd, sockopt::SockType).ok() == Some(SockType::Stream);
        let listening = getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false);
        if !expected_family || !stream || !listening {
            let wanted = match front {
                "unix" => "a listening Unix stream socket (ListenStream=/path)",
                _ => "a listening TCP socket (ListenStream=ADDR:PORT)",
            };
            bail!("the socket systemd passed as {name:?} is not {wanted}");
        }
        let slot = match front {
            "unix" => &mut inherited.unix,
            _ => &mut inherited.http,
        };
        if slot.replace(fd).is_some() {
            bail!("systemd passed more than one {front} socket; memesd serves one of each");
        }
    }
    Ok(inherited)
}

/// Tells systemd memesd serves (`READY=1`), with a status line for `systemctl status`.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd memesd is shutting down (`STOPPING=1`).
pub fn notify_stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing requests in flight"),
    ]);
}

/// Tells systemd a reload began (`RELOADING=1`, with the time systemd 253 and later want).
pub fn notify_reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!("could not notify systemd (NOTIFY_SOCKET): {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixListener};

    fn dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("memes-sd-")
            .tempdir_in("/tmp")
            .unwrap()
    }

    #[test]
    fn passed_sockets_go_to_their_fronts_by_name_or_family() {
        let dir = dir();
        let unix = UnixListener::bind(dir.path().join("s")).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inherited = classify(vec![
            (OwnedFd::from(tcp), "http".into()),
            (OwnedFd::from(unix), "unix".into()),
        ])
        .unwrap();
        assert!(inherited.unix.is_some() && inherited.http.is_some());

        // Unnamed (systemd's default name is the unit's): told apart by family.
        let unix = UnixListener::bind(dir.path().join("t")).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inherited = classify(vec![
            (OwnedFd::from(unix), "memesd.socket".into()),
            (OwnedFd::from(tcp), "memesd-http.socket".into()),
        ])
        .unwrap();
        assert!(inherited.unix.is_some() && inherited.http.is_some());
    }

    #[test]
    fn a_socket_of_the_wrong_kind_is_refused_by_name() {
        let dir = dir();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let error = classify(vec![(OwnedFd::from(tcp), "unix".into())]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"unix\" is not a listening Unix"),
            "{error}"
        );

        let datagram = UnixDatagram::bind(dir.path().join("d")).unwrap();
        let error = classify(vec![(OwnedFd::from(datagram), "unix".into())]).unwrap_err();
        assert!(
            error.to_string().contains("not a listening Unix"),
            "{error}"
        );

        let (one, two) = (
            UnixListener::bind(dir.path().join("a")).unwrap(),
            UnixListener::bind(dir.path().join("b")).unwrap(),
        );
        let error = classify(vec![
            (OwnedFd::from(one), "unix".into()),
            (OwnedFd::from(two), "unix".into()),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("more than one unix"), "{error}");
    }
}

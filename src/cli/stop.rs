//! `memes stop`: stops the memesd that serves the socket (`--socket`, or the default one) and
//! no other, then waits for it to finish: SIGTERM, so it answers the requests in flight,
//! flushes the ledger and removes its socket, as when a service manager stops it.
//!
//! The daemon is found through the socket itself: the kernel tells a client the pid of the
//! process that listens on a Unix socket (SO_PEERCRED). So neither a name (`pkill memesd`
//! would stop every user's daemons) nor a pid file that may outlive its daemon is trusted.
//! Whether memes may stop it is the kernel's rule for signals: the same user, or root.
//! It never starts a daemon.

use super::exit::Exit;
use super::{Ctx, Failure};
use crate::paths;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Pid;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long a clean stop may take (a checkpoint of a large ledger is written at shutdown).
const PATIENCE: Duration = Duration::from_secs(120);

pub fn run(ctx: &Ctx) -> Result<Exit, Failure> {
    if ctx.url.is_some() {
        return Err(Failure::new(
            Exit::Invalid,
            "memes stop stops a memesd on this machine, through its socket; stop a remote one on its own host",
        ));
    }
    let socket = ctx.socket.clone().unwrap_or_else(paths::default_socket);
    let stream = UnixStream::connect(&socket).map_err(|error| {
        Failure::new(
            Exit::Unreachable,
            format!("no memesd answers on {}: {error}", socket.display()),
        )
    })?;
    let peer = getsockopt(&stream, PeerCredentials).map_err(|error| {
        Failure::new(
            Exit::Failure,
            format!("cannot tell who serves {}: {error}", socket.display()),
        )
    })?;
    drop(stream);
    let pid = Pid::from_raw(peer.pid());
    // A socket systemd passed was created by systemd: the listener's pid is systemd's.
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if name.trim_end() != "memesd" {
        return Err(Failure::new(
            Exit::NotAllowed,
            format!(
                "{} is held by {} (pid {pid}), not by memesd itself",
                socket.display(),
                match name.trim_end() {
                    "" => "another process",
                    name => name,
                }
            ),
        )
        .with_hint(
            "a socket systemd passes is systemd's: stop memesd with `systemctl stop memesd`",
        ));
    }
    match kill(pid, Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::EPERM) => {
            return Err(Failure::new(
                Exit::NotAllowed,
                format!(
                    "not allowed to stop memesd (pid {pid}) on {}: it runs as another user",
                    socket.display()
                ),
            ));
        }
        Err(error) => {
            return Err(Failure::new(
                Exit::Failure,
                format!("cannot stop memesd (pid {pid}): {error}"),
            ));
        }
    }
    let deadline = Instant::now() + PATIENCE;
    while !gone(pid) {
        if Instant::now() > deadline {
            return Err(Failure::new(
                Exit::Failure,
                format!(
                    "memesd (pid {pid}) was asked to stop {} s ago and is still running",
                    PATIENCE.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"stopped": pid.as_raw(), "socket": socket})
        );
    } else {
        println!("Stopped memesd (pid {pid}) on {}.", socket.display());
    }
    Ok(Exit::Success)
}

/// The process has exited (a zombie waiting for its parent counts as exited).
fn gone(pid: Pid) -> bool {
    if kill(pid, None) == Err(Errno::ESRCH) {
        return true;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

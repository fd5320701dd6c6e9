//! A connection proxy of the tests' own between memesd and PostgreSQL (Unix sockets both
//! sides), for faults no real network gives on loopback: cut every connection at once (a
//! server crash or a network cut, as the client sees it), refuse new ones for a while, and a
//! slow link (each chunk held back a fixed delay in each direction: the kernel here has no
//! netem).
//!
//! [`SlowLink`] is the same over TCP for a link with latency (20-50 ms each way, say).
//!
//! Neither knows anything of PostgreSQL's protocol; they copy bytes.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A proxy listening as a PostgreSQL socket directory (`.s.PGSQL.5432` in [`Proxy::dir`]).
pub struct Proxy {
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: PathBuf,
    /// Both ends of every live connection, to cut them.
    live: Mutex<Vec<(UnixStream, UnixStream)>>,
    /// While true, new connections are closed at once.
    refusing: AtomicBool,
    /// Held back per chunk, each way, in microseconds.
    delay_us: AtomicU64,
}

impl Proxy {
    /// Starts a proxy to the server whose socket file is `upstream`.
    pub fn start(upstream: PathBuf) -> Proxy {
        let dir = crate::harness::short_tempdir();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        let shared = Arc::new(Shared {
            upstream,
            live: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                if accepting.refusing.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = UnixStream::connect(&accepting.upstream) else {
                    continue;
                };
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    accepting.live.lock().unwrap().push((c, s));
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (down, up) = (accepting.clone(), accepting.clone());
                std::thread::spawn(move || pump(server, c2, &down));
                std::thread::spawn(move || pump(client, s2, &up));
            }
        });
        Proxy { dir, shared }
    }

    /// The socket directory to give memesd as `host`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Cuts every live connection (both sides see it closed).
    pub fn cut_all(&self) -> usize {
        let live = std::mem::take(&mut *self.shared.live.lock().unwrap());
        for (client, server) in &live {
            let _ = client.shutdown(std::net::Shutdown::Both);
            let _ = server.shutdown(std::net::Shutdown::Both);
        }
        live.len()
    }

    /// While `refusing`, new connections are closed as soon as they are accepted.
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Holds every chunk back `delay` in each direction (zero: none).
    pub fn delay(&self, delay: Duration) {
        self.shared
            .delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends, holding each chunk back the current delay.
fn pump(mut from: UnixStream, mut to: UnixStream, shared: &Shared) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = shared.delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A slow TCP link of the tests' own: listens on a loopback port and forwards every
/// connection to `upstream`, each chunk delivered `delay` after it arrived, in each direction
/// (a link's latency: chunks are not held back behind each other, unlike [`Proxy::delay`]).
pub struct SlowLink {
    port: u16,
}

impl SlowLink {
    pub fn start(upstream: std::net::SocketAddr, delay: Duration) -> SlowLink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                // (Connecting may hang, to a node cut off: not in the accepting thread.)
                std::thread::spawn(move || {
                    let Ok(server) = std::net::TcpStream::connect(upstream) else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    std::thread::spawn(move || late(server, c2, delay));
                    late(client, s2, delay);
                });
            }
        });
        SlowLink { port }
    }

    /// The address to give memesd for this link.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Copies `from` to `to` until either ends, each chunk written `delay` after it was read.
fn late(mut from: std::net::TcpStream, to: std::net::TcpStream, delay: Duration) {
    let (send, receive) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    let mut writer = to.try_clone().unwrap();
    let writing = std::thread::spawn(move || {
        for (due, chunk) in receive {
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Both);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let due = std::time::Instant::now() + delay;
                if send.send((due, buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(send);
    let _ = writing.join();
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

//! Test support, shared by the store's unit tests and the integration tests: a throwaway
//! PostgreSQL cluster of the test process's own, and a fresh database per test.
//!
//! Not used by memesd itself. The cluster is started lazily, once per process: `initdb` into
//! a new directory under /tmp, a postmaster listening only on a Unix socket in that
//! directory (no TCP port, so parallel test processes never meet), run as the `postgres`
//! system user when the tests run as root (PostgreSQL refuses to run as root). The
//! postmaster is spawned from a thread that lives as long as the process, with
//! `PR_SET_PDEATHSIG` = SIGQUIT (an immediate shutdown) set after the uid change: whenever
//! the test process exits, however it exits, the kernel stops its postmaster too. Directories
//! left by earlier test processes are removed when the next cluster starts.
//!
//! The server binaries come from Debian's `postgresql` package (the newest
//! `/usr/lib/postgresql/*/bin`); without them every test that needs a database fails with a
//! message saying how to install them. Nothing is skipped. The cluster runs with
//! `fsync=off`: the tests check what memesd acknowledges and when, not the disk under
//! PostgreSQL, and a shared two-core machine is slow enough.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the server binaries are looked for.
const BIN_GLOB_PARENT: &str = "/usr/lib/postgresql";
const MISSING: &str = "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; install Debian's postgresql package — scripts/install-test-deps.sh does";
/// The prefix of every cluster directory (so stale ones can be found and removed).
const DIR_PREFIX: &str = "memes-pg-";

/// The test process's PostgreSQL cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    /// (uid, gid) the server runs as, when the tests run as root.
    owner: Option<(u32, u32)>,
    /// Tells the supervising thread to start the postmaster (again); it answers with the
    /// spawn result.
    start: Mutex<mpsc::Sender<mpsc::Sender<Result<u32, String>>>>,
    next_db: AtomicU64,
    /// True for a cluster of one test's own ([`Cluster::private`]), stopped and removed when
    /// dropped; the process's shared one lives as long as the process.
    private: bool,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The process's cluster, started on first use. Panics with a plain message if it cannot
/// start (missing binaries, initdb failure).
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(cluster) => cluster,
        Err(why) => panic!("{why}"),
    }
}

/// A fresh database in the process's cluster, dropped (forcibly) with this value.
pub struct TestDatabase {
    pub name: String,
    /// A connection string for it (`postgres://…?host=/tmp/memes-pg-…`).
    pub url: String,
}

impl TestDatabase {
    /// Creates `t_<n>`, a new empty database.
    pub fn create() -> TestDatabase {
        let cluster = cluster();
        let name = format!("t_{}", cluster.next_db.fetch_add(1, Ordering::Relaxed));
        cluster
            .execute("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        TestDatabase {
            url: cluster.url(&name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: the whole cluster goes away with the process anyway.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = cluster().execute("postgres", &sql);
    }
}

impl Cluster {
    /// A cluster of the caller's own, for a test that stops or restarts the server (which
    /// would disturb every other test on the shared one). Stopped and removed when dropped.
    pub fn private() -> Cluster {
        let mut cluster = Cluster::start().unwrap_or_else(|why| panic!("{why}"));
        cluster.private = true;
        cluster
    }

    /// A fresh database in this cluster (the process's shared one: [`TestDatabase::create`]).
    pub fn create_database(&self, name: &str) -> String {
        self.execute("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        self.url(name)
    }

    fn start() -> Result<Cluster, String> {
        let (bin, dir, owner) = new_dir()?;
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdin(Stdio::null());
        as_owner(&mut initdb, owner);
        run(&mut initdb, "initdb")?;
        Cluster::launch(bin, dir, owner)
    }

    /// A streaming standby of this cluster, on a socket of its own: a base backup
    /// (`pg_basebackup -R`, which also writes how to follow this cluster) into a new
    /// directory, started and replaying this cluster's WAL. Stopped and removed when dropped,
    /// and stopped with the test process whatever happens, as every cluster here is.
    pub fn standby(&self) -> Cluster {
        let standby = (|| {
            let (bin, dir, owner) = new_dir()?;
            let mut backup = Command::new(bin.join("pg_basebackup"));
            backup
                .arg("-h")
                .arg(&self.dir)
                .args([
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-R",
                    "--no-sync",
                ])
                .arg("-D")
                .arg(dir.join("data"))
                .stdin(Stdio::null());
            as_owner(&mut backup, owner);
            run(&mut backup, "pg_basebackup")?;
            Cluster::launch(bin, dir, owner)
        })();
        let mut standby = standby.unwrap_or_else(|why| panic!("starting a standby: {why}"));
        standby.private = true;
        standby
    }

    /// Promotes a standby (`pg_ctl promote`): it stops following and accepts writes.
    pub fn promote(&self) {
        let mut promote = Command::new(self.bin.join("pg_ctl"));
        promote
            .arg("promote")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-w", "-t", "60"])
            .stdin(Stdio::null());
        as_owner(&mut promote, self.owner);
        run(&mut promote, "pg_ctl promote").unwrap_or_else(|why| panic!("{why}\n{}", self.log()));
    }

    /// Starts the postmaster of the cluster in `dir` and waits until it accepts connections.
    fn launch(bin: PathBuf, dir: PathBuf, owner: Option<(u32, u32)>) -> Result<Cluster, String> {
        let start = supervise(bin.clone(), dir.clone(), owner);
        let cluster = Cluster {
            bin,
            dir,
            owner,
            start: Mutex::new(start),
            next_db: AtomicU64::new(0),
            private: false,
        };
        cluster.boot()?;
        Ok(cluster)
    }

    /// The directory holding the server's Unix socket (and its data, and its log).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server binaries in use (`pgbench`, `psql` are there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// A connection string for database `db` as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@/{db}?host={}", self.dir.display())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Starts the postmaster and waits until it accepts connections.
    fn boot(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(tx)
            .map_err(|_| "the postgres supervisor thread is gone".to_string())?;
        rx.recv()
            .map_err(|_| "the postgres supervisor thread is gone".to_string())??;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.execute("postgres", "SELECT 1") {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    return Err(format!(
                        "PostgreSQL did not accept connections within 60 s ({e}):\n{}",
                        self.log()
                    ));
                }
            }
        }
    }

    /// Restarts the server the way `pg_ctl restart -m fast` does (clients are disconnected,
    /// everything committed is kept), and waits until it accepts connections again. The new
    /// postmaster is spawned by the same supervising thread, so it too stops with the process.
    pub fn restart(&self) {
        self.stop();
        self.boot()
            .unwrap_or_else(|e| panic!("restarting PostgreSQL: {e}"));
    }

    /// Stops the server (`pg_ctl stop -m fast`), leaving it down until [`Cluster::restart`].
    pub fn stop(&self) {
        let mut stop = Command::new(self.bin.join("pg_ctl"));
        stop.arg("stop")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "-t", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        as_owner(&mut stop, self.owner);
        let status = stop.status().expect("running pg_ctl stop");
        assert!(status.success(), "pg_ctl stop failed:\n{}", self.log());
    }

    /// Starts the server after [`Cluster::stop`].
    pub fn start_again(&self) {
        self.boot()
            .unwrap_or_else(|e| panic!("starting PostgreSQL again: {e}"));
    }

    /// Runs SQL (simple protocol, several statements allowed) in database `db`. Usable from
    /// any thread, inside an async runtime or not: it runs on a thread of its own.
    pub fn execute(&self, db: &str, sql: &str) -> Result<(), String> {
        let url = self.url(db);
        let sql = sql.to_string();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let (client, connection) =
                            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                                .await
                                .map_err(|e| e.to_string())?;
                        let driver = tokio::spawn(connection);
                        let result = client.batch_execute(&sql).await.map_err(|e| {
                            e.as_db_error()
                                .map_or_else(|| e.to_string(), |db| db.message().to_string())
                        });
                        drop(client);
                        let _ = driver.await;
                        result
                    })
                })
                .join()
                .unwrap_or_else(|_| Err("the SQL thread panicked".into()))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.private {
            return;
        }
        let mut stop = Command::new(self.bin.join("pg_ctl"));
        stop.arg("stop")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_owner(&mut stop, self.owner);
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The supervising thread: spawns the postmaster whenever asked, and lives (waiting) as long
/// as the process, which is what makes `PR_SET_PDEATHSIG` fire only when the process ends.
fn supervise(
    bin: PathBuf,
    dir: PathBuf,
    owner: Option<(u32, u32)>,
) -> mpsc::Sender<mpsc::Sender<Result<u32, String>>> {
    let (tx, rx) = mpsc::channel::<mpsc::Sender<Result<u32, String>>>();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            let mut running: Option<Child> = None;
            // Blocks here between (re)starts; never returns while the process lives,
            // because the Cluster (a static) keeps the sender.
            while let Ok(reply) = rx.recv() {
                if let Some(mut old) = running.take() {
                    let _ = old.wait();
                }
                let spawned = spawn_postmaster(&bin, &dir, owner);
                let _ = reply.send(spawned.as_ref().map(Child::id).map_err(Clone::clone));
                running = spawned.ok();
            }
            if let Some(mut child) = running {
                let _ = child.wait();
            }
        })
        .expect("spawning the postgres supervisor thread");
    tx
}

fn spawn_postmaster(bin: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|e| format!("server log: {e}"))?;
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
    }
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-c", "listen_addresses="])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=400", "-c", "shared_buffers=64MB"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    as_owner(&mut command, owner);
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGQUIT)
                .map_err(std::io::Error::from)?;
            // The process may have died between fork and prctl: then nobody would stop us.
            if nix::unistd::getppid() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.join("postgres").display()))
}

/// The (uid, gid) a server runs as, when the tests run as root.
type Owner = Option<(u32, u32)>;

/// The server binaries, and a new empty directory for a cluster, owned by the user the
/// server will run as (see [`as_owner`]).
fn new_dir() -> Result<(PathBuf, PathBuf, Owner), String> {
    let bin = server_binaries().ok_or_else(|| MISSING.to_string())?;
    remove_stale_clusters();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let owner = match nix::unistd::geteuid().is_root() {
        true => {
            let user = nix::unistd::User::from_name("postgres")
                .map_err(|e| format!("looking up the postgres user: {e}"))?
                .ok_or("the tests run as root, and there is no `postgres` system user to run PostgreSQL as (Debian's postgresql package creates it)")?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        }
        false => None,
    };
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    Ok((bin, dir, owner))
}

/// Runs a server tool to its end; what it printed, if it failed.
fn run(command: &mut Command, name: &str) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("running {name}: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{name} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
        // Programs run as postgres must not start in a directory it cannot enter.
        command.current_dir("/");
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has the server binaries.
pub fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(BIN_GLOB_PARENT)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Removes the cluster directories of test processes that are gone.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

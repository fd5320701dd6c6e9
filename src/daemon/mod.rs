//! memesd as a whole: its command line ([`config`]), the data directory's permissions
//! ([`datadir`]), and the wiring: [`build`] opens the store and builds the service,
//! [`serve`] runs the fronts on the listeners it is given until the shutdown future it is
//! given resolves, and [`run`] does both with memesd's own sockets and signals (and the
//! [`expirer`], which writes expiries as they happen), then shuts down in the order that
//! keeps every acknowledged change (stop the expirer, flush the store, then remove the
//! socket).

pub mod config;
pub mod config_file;
pub mod datadir;
pub mod expirer;
pub mod logging;
pub mod systemd;
#[cfg(test)]
mod tests;
pub mod transfer;

use crate::catalogue::Catalogue;
use crate::fronts::http::auth::{Credentials, WebhookSecret};
use crate::fronts::http::{self, Http, HttpState};
use crate::fronts::unix::{self, socket};
use crate::premium::Premium;
use crate::premium::claims::ClaimsVerifier;
use crate::premium::generate::{Backend, Generator};
use crate::premium::render::Renderer;
use crate::service::{AdminKeys, Service, ServiceConfig};
use crate::store::TokenStore;
use crate::store::spec as store;
use crate::telemetry;
use anyhow::{Context, Result};
use config::DaemonArgs;
use interprocess::local_socket::tokio::Listener;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Runs memesd until SIGTERM or SIGINT: builds it ([`build`]: the store, the catalogue, the
/// service), binds its listeners (or takes systemd's), serves them ([`serve`]), then flushes
/// the store and removes the socket.
pub fn run(args: DaemonArgs) -> Result<()> {
    let started = Instant::now();
    // First, while memesd is one thread: reading systemd's sockets edits the environment.
    let mut inherited = systemd::Inherited::take()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("memesd")
        .build()
        .context("starting the async runtime")?;
    // Before anything slow: the default action of SIGHUP, SIGTERM and SIGINT ends the
    // process, and recovering a large ledger takes seconds. A signal that arrives during
    // start-up waits in its stream and is acted on once memesd serves.
    let signals = {
        let _runtime = runtime.enter();
        Signals::install().context("listening for signals")?
    };
    raise_open_file_limit();
    // Before anything records a metric, so that every handle goes to the exporter.
    let inherited_http = inherited.take_http()?;
    let http_address = inherited_http
        .as_ref()
        .map(|(_, address)| *address)
        .or(args.http);
    let exporter = match http_address.is_some() || args.metrics.is_some() {
        true => Some(telemetry::install().map_err(anyhow::Error::msg)?),
        false => None,
    };
    let socket_path = inherited.unix_path().unwrap_or_else(|| args.socket());
    let Built {
        service,
        store,
        webhook,
        access,
        created,
    } = build(&args, &runtime, http_address, &socket_path)?;

    let Signals {
        terminate,
        interrupt,
        hangup,
    } = signals;
    let served = runtime.block_on(async {
        let bound = match inherited.unix.take() {
            Some(fd) => {
                let bound = socket::inherit(fd)?;
                tracing::info!(
                    "serving the Unix socket passed by systemd, {} (its owner and mode are \
                     systemd's: --socket-mode and --socket-group do not apply)",
                    bound.path().display()
                );
                if let Some(flag) = args.socket.as_ref().filter(|flag| *flag != bound.path()) {
                    tracing::warn!(
                        "not binding --socket {}: systemd passed {}",
                        flag.display(),
                        bound.path().display()
                    );
                }
                bound
            }
            None => socket::bind(&socket_path, access)?,
        };
        // A start that fails from here on removes the socket it bound.
        let listeners = async {
            let http = match (inherited_http, args.http) {
                (Some((listener, addr)), flag) => {
                    tracing::info!("serving HTTP on the socket passed by systemd, {addr}");
                    if let Some(flag) = flag.filter(|flag| *flag != addr) {
                        tracing::warn!("not binding --http {flag}: systemd passed {addr}");
                    }
                    Some((
                        tokio::net::TcpListener::from_std(listener)
                            .context("serving the HTTP socket passed by systemd")?,
                        addr,
                    ))
                }
                (None, Some(addr)) => Some((
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("listening on http://{addr}"))?,
                    addr,
                )),
                (None, None) => None,
            };
            let http = match http {
                Some((listener, addr)) => {
                    let state = HttpState {
                        service: service.clone(),
                        credentials: Credentials::new(),
                        webhook,
                        limits: args.http_limits(),
                        metrics: exporter.clone(),
                        console: !args.no_console,
                    };
                    let address = listener.local_addr().unwrap_or(addr);
                    Some((listener, http::Routes::api(Http::new(state)), address))
                }
                None => None,
            };
            let metrics_only = match (args.metrics, &exporter) {
                (Some(addr), Some(exporter)) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("listening for metrics on http://{addr}"))?;
                    tracing::info!(
                        "metrics on http://{}/metrics",
                        listener.local_addr().unwrap_or(addr)
                    );
                    let state = HttpState {
                        service: service.clone(),
                        credentials: Credentials::new(),
                        webhook: None,
                        limits: args.http_limits(),
                        metrics: Some(exporter.clone()),
                        console: false,
                    };
                    Some((listener, http::Routes::metrics(Http::new(state))))
                }
                _ => None,
            };
            anyhow::Ok((http, metrics_only))
        }
        .await;
        let (http, metrics_only) = match listeners {
            Ok(listeners) => listeners,
            Err(error) => {
                bound.remove();
                return Err(error);
            }
        };
        if let Some(exporter) = exporter.clone() {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
                loop {
                    every.tick().await;
                    exporter.upkeep();
                }
            });
        }
        let listening = format!(
            "listening on {}{} ({} memes)",
            bound.path().display(),
            http.as_ref()
                .map(|(_, _, address)| format!(" and http://{address}"))
                .unwrap_or_default(),
            service.catalogue().len(),
        );
        tracing::info!(
            "memesd {} {listening}, ready in {:.0?}",
            env!("CARGO_PKG_VERSION"),
            started.elapsed()
        );
        systemd::notify_ready(&listening);
        // Signals that came during start-up are acted on from here, after READY=1, so
        // systemd sees them in order.
        let reloader = tokio::spawn(reload_on_sighup(service.clone(), hangup));
        let expiring = CancellationToken::new();
        let expirer = (!args.expire_every.is_zero()).then(|| {
            tokio::spawn(expirer::run(
                store.clone(),
                args.expire_every,
                expiring.clone(),
            ))
        });
        let shutdown = async {
            shutdown_signal(terminate, interrupt).await;
            systemd::notify_stopping();
        };
        let fronts = Fronts {
            unix: &bound.listener,
            unix_limits: args.limits(),
            http: http.map(|(listener, routes, _)| (listener, routes)),
            metrics: metrics_only,
            http_limits: args.http_limits(),
        };
        serve(service.clone(), fronts, shutdown).await;
        reloader.abort();
        // Before the store closes: a round under way finishes (what it wrote is durable).
        expiring.cancel();
        if let Some(expirer) = expirer {
            let _ = expirer.await;
        }
        anyhow::Ok(bound)
    });
    drop(service);
    // Every change already handed to the store is made durable and answered.
    let closed = runtime
        .block_on(store.close())
        .context("flushing the ledger");
    drop(runtime);
    // Remove the socket only once everything is flushed, so a client that finds no socket
    // can start a new daemon that sees every change.
    let bound = match served {
        Ok(bound) => bound,
        Err(error) => {
            // Nothing was served: what this start created holds nothing anyone asked for.
            for dir in &created {
                if let Err(why) = std::fs::remove_dir_all(dir) {
                    tracing::warn!("could not remove {}: {why}", dir.display());
                }
            }
            return Err(error);
        }
    };
    bound.remove();
    closed?;
    tracing::info!("memesd stopped cleanly");
    Ok(())
}

/// memesd built from its configuration, not serving yet: the store open, the service over
/// it, and what the fronts are bound with.
pub struct Built {
    pub service: Arc<Service>,
    pub store: Arc<dyn TokenStore>,
    /// The HTTP front's webhook secret, if it takes webhooks.
    pub webhook: Option<WebhookSecret>,
    /// Who may connect to the socket.
    pub access: socket::SocketAccess,
    /// Directories this start created: a start that fails before serving removes them.
    pub created: Vec<PathBuf>,
}

/// Builds memesd from its configuration (checked in full first, so that a bad flag fails
/// before the store is opened): the store (`--store`, opened in `runtime`), the catalogue,
/// the premium features and the service. Binds nothing; `http_address` is where the HTTP
/// API will be, for the exposure check, and `socket_path` the socket the data directory's
/// lock file names.
pub fn build(
    args: &DaemonArgs,
    runtime: &tokio::runtime::Runtime,
    http_address: Option<std::net::SocketAddr>,
    socket_path: &Path,
) -> Result<Built> {
    let data_dir = args.data_dir();
    let admin = args.admin_policy().map_err(anyhow::Error::msg)?;
    args.check_http_exposure_at(http_address)
        .map_err(anyhow::Error::msg)?;
    let admin_keys = match &args.admin_keys {
        Some(path) => AdminKeys::from_file(path).map_err(anyhow::Error::msg)?,
        None => AdminKeys::none(),
    };
    let webhook = args
        .webhook_secret
        .as_deref()
        .map(WebhookSecret::from_file)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let access = args.socket_access().map_err(anyhow::Error::msg)?;
    let catalogue = match &args.catalogue {
        Some(path) => Catalogue::from_file(path),
        None => Catalogue::embedded(),
    }
    .context("loading the meme catalogue")?;
    let claims = args
        .claims_key
        .as_deref()
        .map(|path| ClaimsVerifier::from_file(path).map(|key| key.with_leeway(args.claims_leeway)))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let backend = match &args.generator_cmd {
        Some(command) => Backend::External {
            command: command.clone(),
            timeout: args.generator_timeout(),
        },
        None => Backend::Builtin,
    };
    let generator = Generator::new(
        Renderer::embedded().context("loading meme templates")?,
        backend,
    );

    datadir::check_owner(&data_dir).map_err(anyhow::Error::msg)?;
    datadir::secure_existing(&data_dir)
        .with_context(|| format!("checking the permissions of {}", data_dir.display()))?;
    let spec = store::parse(
        args.store.as_deref(),
        args.store_password_file.as_deref(),
        &data_dir,
    )
    .map_err(anyhow::Error::msg)?;
    // Directories this start creates: a start that fails before serving removes them again,
    // so a mistyped --socket or a busy port leaves no empty ledger behind.
    let mut created: Vec<PathBuf> = vec![data_dir.clone()];
    created.retain(|dir| !dir.exists());
    let options = store::OpenOptions {
        welcome_tokens: args.welcome_tokens,
        welcome_expires: args.welcome_expires,
        checkpoint_bytes: args.checkpoint_mib.max(1) << 20,
        pool_size: args.store_pool,
    };
    let opened = runtime.block_on(store::open(spec, &options))?;
    if let Some(dir) = opened.dir.as_ref().filter(|_| opened.created_dir) {
        created.push(dir.clone());
        created.dedup();
    }
    match opened.dir {
        // The ledger's directory is this daemon's (locked): say which socket serves it.
        Some(_) => crate::lockfile::record_owner(&data_dir, socket_path),
        // Hosts sharing a database may share a data directory (only generated images are
        // there, each host's own), so nothing there is locked nor names one of them.
        None => {
            private_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?
        }
    }
    let store = opened.store;
    let premium = Premium::new(
        claims,
        generator,
        data_dir.join("generated"),
        args.generate_cost,
    );
    let config = ServiceConfig {
        meme_cost: args.meme_cost,
        catalogue_path: args.catalogue.clone(),
        admin,
        admin_keys: Arc::new(admin_keys),
        rate_limit: args.rate_limit,
    };
    let service = Arc::new(Service::new(store.clone(), catalogue, premium, config));
    Ok(Built {
        service,
        store,
        webhook,
        access,
        created,
    })
}

/// What memesd serves: its Unix socket, and the HTTP API and metrics when it listens for
/// them. The listeners are bound (or inherited) by the caller, so that a test can pass its
/// own.
pub struct Fronts<'a> {
    pub unix: &'a Listener,
    pub unix_limits: unix::connection::Limits,
    pub http: Option<(tokio::net::TcpListener, http::Routes)>,
    /// `GET /metrics` alone, beside a daemon that serves no HTTP API there.
    pub metrics: Option<(tokio::net::TcpListener, http::Routes)>,
    pub http_limits: http::HttpLimits,
}

/// Serves every front until `shutdown` resolves, then lets each finish the requests it
/// already read, and returns once all have stopped. The caller then closes the store and
/// removes the socket, in that order. The binary passes its signals' future; a test passes
/// anything (mini-redis's `server::run(listener, shutdown)`).
pub async fn serve(service: Arc<Service>, fronts: Fronts<'_>, shutdown: impl Future<Output = ()>) {
    // Every front stops on the one signal.
    let stopping = CancellationToken::new();
    let unix_front = unix::run(
        service,
        fronts.unix,
        fronts.unix_limits,
        stopping.clone().cancelled_owned(),
    );
    let http_front = async {
        if let Some((listener, routes)) = fronts.http {
            let limits = fronts.http_limits.clone();
            http::serve(routes, listener, limits, stopping.clone().cancelled_owned()).await;
        }
    };
    let metrics_front = async {
        if let Some((listener, routes)) = fronts.metrics {
            let limits = fronts.http_limits.clone();
            http::serve(routes, listener, limits, stopping.clone().cancelled_owned()).await;
        }
    };
    let served = async {
        tokio::join!(unix_front, http_front, metrics_front);
    };
    tokio::pin!(served, shutdown);
    tokio::select! {
        () = &mut served => return,
        () = &mut shutdown => stopping.cancel(),
    }
    served.await;
}

/// Creates a directory only its owner may enter (0700), if it is not there.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The signals memesd acts on, listened for from the start.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers (inside the runtime's context).
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

async fn shutdown_signal(mut terminate: Signal, mut interrupt: Signal) {
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}

/// Reloads the catalogue and the admin keys on every SIGHUP, including one that arrived
/// during start-up (the files may have changed since they were read).
async fn reload_on_sighup(service: Arc<Service>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        // A rotated log continues in a new file.
        logging::reopen();
        tracing::info!("SIGHUP received: reloading the catalogue and the admin keys");
        systemd::notify_reloading();
        let service = service.clone();
        // A rejected reload is logged by the reload itself; what was in service stays.
        let reloaded = tokio::task::spawn_blocking(move || service.reload_files()).await;
        systemd::notify_ready(match reloaded {
            Ok(Ok(_)) => "serving; catalogue and admin keys reloaded",
            _ => "serving; reload rejected, see the log",
        });
    }
}

/// Many clients at once need many descriptors; the soft limit is often far below the hard one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!("could not raise the open file limit from {soft}: {error}");
    }
}

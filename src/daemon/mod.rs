//! memesd as a whole: its command line ([`config`]), and the wiring that opens the store,
//! builds the service, runs the fronts until a signal says stop, and shuts down in the order
//! that keeps every acknowledged change (flush the store, then remove the socket).

pub mod config;
pub mod store;
pub mod transfer;

use crate::catalogue::Catalogue;
use crate::fronts::unix::{self, socket};
use crate::premium::Premium;
use crate::premium::claims::ClaimsVerifier;
use crate::premium::generate::{Backend, Generator};
use crate::premium::render::Renderer;
use crate::service::{Service, ServiceConfig};
use crate::store::pg::{PgConfig, PgStore};
use crate::store::{FileStore, StoreConfig, TokenStore};
use anyhow::{Context, Result};
use config::DaemonArgs;
use std::sync::Arc;
use std::time::Instant;
use store::StoreChoice;
use tokio::signal::unix::{SignalKind, signal};

/// Runs memesd until SIGTERM or SIGINT: opens the store and the catalogue, serves the
/// socket, then flushes the store and removes the socket.
pub fn run(args: DaemonArgs) -> Result<()> {
    let started = Instant::now();
    raise_open_file_limit();
    let data_dir = args.data_dir();
    let socket_path = args.socket();
    let admin = args.admin_policy().map_err(anyhow::Error::msg)?;
    let access = args.socket_access().map_err(anyhow::Error::msg)?;
    let catalogue = match &args.catalogue {
        Some(path) => Catalogue::from_file(path),
        None => Catalogue::embedded(),
    }
    .context("loading the meme catalogue")?;
    let claims = args
        .claims_key
        .as_deref()
        .map(ClaimsVerifier::from_file)
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("memesd")
        .build()
        .context("starting the async runtime")?;
    let choice = store::choose(
        args.store.as_deref(),
        args.store_password_file.as_deref(),
        &data_dir,
    )
    .map_err(anyhow::Error::msg)?;
    let opened = match choice {
        StoreChoice::File(dir) => {
            let store = FileStore::open(
                &dir,
                StoreConfig {
                    welcome_tokens: args.welcome_tokens,
                    checkpoint_bytes: args.checkpoint_mib.max(1) << 20,
                    ..StoreConfig::default()
                },
            )
            .context("opening the ledger")?;
            let recovery = store.recovery_stats();
            tracing::info!(
                "ledger in {}: {} accounts from the checkpoint, {} journal transactions replayed, {} entries",
                dir.display(),
                recovery.checkpoint_accounts,
                recovery.replayed_lines,
                store.stats_now().entries
            );
            Opened::File(Arc::new(store))
        }
        StoreChoice::Postgres(config) => {
            let config = PgConfig {
                welcome_tokens: args.welcome_tokens,
                pool_size: args.store_pool,
                writers: (args.store_pool / 8).max(1),
                ..*config
            };
            let url = crate::store::pg::redact(&config.url);
            let store = runtime
                .block_on(PgStore::open(config))
                .context("opening the ledger in PostgreSQL")?;
            // Generated images stay on each host, in its data directory.
            private_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            tracing::info!("ledger in PostgreSQL at {url}, shared with any other memesd there");
            Opened::Postgres(Arc::new(store))
        }
    };
    let store: Arc<dyn TokenStore> = match &opened {
        Opened::File(store) => store.clone(),
        Opened::Postgres(store) => store.clone(),
    };
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
        rate_limit: args.rate_limit,
    };
    let service = Arc::new(Service::new(store, catalogue, premium, config));

    let served = runtime.block_on(async {
        let bound = socket::bind(&socket_path, access)?;
        let reloader = tokio::spawn(reload_on_sighup(service.clone()));
        tracing::info!(
            "memesd {} listening on {} ({} memes, ready in {:.0?})",
            env!("CARGO_PKG_VERSION"),
            socket_path.display(),
            service.catalogue().len(),
            started.elapsed()
        );
        unix::run(
            service.clone(),
            &bound.listener,
            args.limits(),
            shutdown_signal(),
        )
        .await;
        reloader.abort();
        anyhow::Ok(bound)
    });
    drop(service);
    let closed = match opened {
        Opened::Postgres(store) => {
            // Every change already handed to the batch writer is committed and answered.
            runtime.block_on(store.close());
            drop(runtime);
            Ok(())
        }
        Opened::File(store) => {
            drop(runtime);
            store.close().context("flushing the ledger")
        }
    };
    // Remove the socket only once everything is flushed, so a client that finds no socket
    // can start a new daemon that sees every change.
    let bound = served?;
    bound.remove();
    closed?;
    tracing::info!("memesd stopped cleanly");
    Ok(())
}

/// The store memesd opened, for its own way of closing.
enum Opened {
    File(Arc<FileStore>),
    Postgres(Arc<PgStore>),
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}

async fn reload_on_sighup(service: Arc<Service>) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; catalogue reload only via `memes reload`");
        return;
    };
    while hangups.recv().await.is_some() {
        let service = service.clone();
        // A rejected catalogue is logged by the reload itself; the old one stays in service.
        let _ = tokio::task::spawn_blocking(move || service.reload_catalogue()).await;
    }
}

/// Creates a directory only its owner may enter (0700), if it is not there.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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

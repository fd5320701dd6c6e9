//! memesd: parse the command line, open the store and the catalogue, bind the socket, serve
//! until SIGTERM/SIGINT, then flush the store and remove the socket.

use anyhow::{Context, Result};
use clap::Parser;
use memes::catalogue::Catalogue;
use memes::daemon::config::DaemonArgs;
use memes::fronts::unix::{self, socket};
use memes::premium::Premium;
use memes::premium::claims::ClaimsVerifier;
use memes::premium::generate::{Backend, Generator};
use memes::premium::render::Renderer;
use memes::service::{Service, ServiceConfig};
use memes::store::{FileStore, StoreConfig, TokenStore};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args = DaemonArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file (the autostart's) or a service
        // manager's journal gets plain text, and NO_COLOR turns it off everywhere.
        .with_ansi(memes::daemon::config::colour_logs(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEMES_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: DaemonArgs) -> Result<()> {
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

    let store = Arc::new(
        FileStore::open(
            &data_dir,
            StoreConfig {
                welcome_tokens: args.welcome_tokens,
                checkpoint_bytes: args.checkpoint_mib.max(1) << 20,
                ..StoreConfig::default()
            },
        )
        .context("opening the ledger")?,
    );
    memes::lockfile::record_owner(&data_dir, &socket_path);
    let recovery = store.recovery_stats();
    tracing::info!(
        "ledger in {}: {} accounts from the checkpoint, {} journal transactions replayed, {} entries",
        data_dir.display(),
        recovery.checkpoint_accounts,
        recovery.replayed_lines,
        store.stats().entries
    );
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
    let service = Arc::new(Service::new(store.clone(), catalogue, premium, config));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("memesd")
        .build()
        .context("starting the async runtime")?;
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
    drop(runtime);
    let closed = store.close().context("flushing the ledger");
    // Remove the socket only once everything is flushed, so a client that finds no socket
    // can start a new daemon that sees every change.
    let bound = served?;
    bound.remove();
    closed?;
    tracing::info!("memesd stopped cleanly");
    Ok(())
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

//! `memesd export` and `memesd import`: moving a ledger from the file store into PostgreSQL
//! through a store-neutral [`dump`], which the file store writes
//! ([`crate::store::file::export`]) and PostgreSQL reads ([`crate::store::pg::import`]).
//! PostgreSQL writes one too ([`crate::store::pg::export`]): a verifiable copy of its
//! ledger, which `memes audit --export` checks and an import loads.
//! Both run once and exit; `memesd` without a subcommand runs the daemon. Their arguments
//! are part of memesd's command line, so they are declared with it, in [`super::config`].

use super::config::{Command, DaemonArgs, ExportArgs, ImportArgs};
use crate::store::dump;
use crate::store::file;
use crate::store::pg::{self, PgConfig, PgStore};
use crate::store::spec::{self as store, Spec};
use crate::store::{FileStore, StoreConfig, TokenStore};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;

/// Runs a subcommand; what it did goes to stderr.
pub fn run(command: &Command, args: &DaemonArgs) -> Result<()> {
    match command {
        Command::Export(export) => run_export(export, args),
        Command::Import(import) => run_import(import, args),
    }
}

fn run_export(export: &ExportArgs, args: &DaemonArgs) -> Result<()> {
    if export.data_dir.is_none() {
        let url = export.store.as_deref().or(args.store.as_deref());
        let password_file = export
            .store_password_file
            .as_deref()
            .or(args.store_password_file.as_deref());
        match store::parse(url, password_file, &args.data_dir()) {
            Ok(Spec::Postgres(config)) => return run_pg_export(*config, export, args),
            Err(why) if export.store.is_some() => bail!(why),
            _ => {}
        }
    }
    let dir = match &export.data_dir {
        Some(dir) => dir.clone(),
        None => match store::parse(args.store.as_deref(), None, &args.data_dir()) {
            Ok(Spec::File(dir)) => dir,
            _ => args.data_dir(),
        },
    };
    super::datadir::check_owner(&dir).map_err(anyhow::Error::msg)?;
    if !dir
        .join(crate::store::file::recovery::JOURNAL_FILE)
        .exists()
    {
        bail!("{} holds no ledger (no journal.ndjson)", dir.display());
    }
    let config = StoreConfig {
        welcome_tokens: args.welcome_tokens,
        ..StoreConfig::default()
    };
    let store = FileStore::open(&dir, config)
        .with_context(|| format!("opening the ledger in {}", dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(store.audit())
        .context("auditing the ledger")?;
    let mut out = export_output(export)?;
    let counts = file::export::export(&store, &report, &mut out).map_err(anyhow::Error::msg)?;
    drop(out);
    sync_output(export)?;
    store.close().context("closing the ledger")?;
    eprintln!(
        "memesd: exported {} transactions ({} entries, {} accounts, {} idempotency keys) from {}",
        counts.transactions,
        counts.entries,
        counts.accounts,
        counts.keys,
        dir.display()
    );
    Ok(())
}

/// Where an export goes: `--out` (created 0600) or stdout.
fn export_output(export: &ExportArgs) -> Result<Box<dyn Write>> {
    Ok(match &export.out {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 20,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    })
}

/// Makes an export written to `--out` durable.
fn sync_output(export: &ExportArgs) -> Result<()> {
    if let Some(path) = &export.out {
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {}", path.display()))?;
    }
    Ok(())
}

/// `memesd export` of a PostgreSQL database's ledger: from one snapshot, while hosts serve it.
fn run_pg_export(config: PgConfig, export: &ExportArgs, args: &DaemonArgs) -> Result<()> {
    let config = PgConfig {
        welcome_tokens: args.welcome_tokens,
        pool_size: 1,
        writers: 1,
        application_name: "memesd export",
        ..config
    };
    let target = pg::describe(&config.url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut out = export_output(export)?;
    let counts = runtime.block_on(async {
        let store = PgStore::open(config)
            .await
            .context("opening the ledger in PostgreSQL")?;
        let exported = pg::export::export(&store, &mut out).await;
        store.close().await;
        exported.map_err(anyhow::Error::msg)
    })?;
    drop(out);
    sync_output(export)?;
    eprintln!(
        "memesd: exported {} transactions ({} entries, {} accounts, {} idempotency keys) from {target}",
        counts.transactions, counts.entries, counts.accounts, counts.keys
    );
    Ok(())
}

fn run_import(import: &ImportArgs, args: &DaemonArgs) -> Result<()> {
    let url = import.store.as_deref().or(args.store.as_deref());
    let password_file = import
        .store_password_file
        .as_deref()
        .or(args.store_password_file.as_deref());
    let config = match store::parse(url, password_file, &args.data_dir()) {
        Ok(Spec::Postgres(config)) => PgConfig {
            welcome_tokens: args.welcome_tokens,
            pool_size: 2,
            writers: 1,
            application_name: "memesd import",
            ..*config
        },
        Ok(Spec::File(_)) => {
            bail!("memesd import loads into PostgreSQL: pass --store postgres://…")
        }
        Err(why) => bail!(why),
    };
    let target = pg::describe(&config.url);
    let mut input: Box<dyn BufRead> = match &import.input {
        Some(path) => Box::new(BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(BufReader::with_capacity(1 << 20, std::io::stdin().lock())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let imported = runtime.block_on(async {
        let store = PgStore::open(config)
            .await
            .context("opening the ledger in PostgreSQL")?;
        let imported = pg::import::import(&store, &mut input, import.replace).await;
        store.close().await;
        imported.map_err(anyhow::Error::msg)
    })?;
    let audit = &imported.audit;
    eprintln!(
        "memesd: imported {} transactions ({} entries, {} accounts, {} idempotency keys) into {target}; audit passed ({} entries, {} accounts, {} keys, {} welcomes)",
        imported.counts.transactions,
        imported.counts.entries,
        imported.counts.accounts,
        imported.counts.keys,
        audit.entries,
        audit.accounts,
        audit.keys,
        audit.welcomes
    );
    if let Some(source) = &imported.source {
        mark_moved(source, &target)?;
    }
    Ok(())
}

/// Marks the file ledger an import came from as moved, so that no memesd serves it again
/// (the CLI's autostart included). A ledger on another machine is left to its operator.
fn mark_moved(source: &dump::Source, target: &str) -> Result<()> {
    let here = dump::host_name();
    let journal = source.dir.join(crate::store::file::recovery::JOURNAL_FILE);
    if source.host != here || !journal.exists() {
        eprintln!(
            "memesd: warning: the ledger came from {} on {}; stop every memesd serving it there, as it is now in {target}",
            source.dir.display(),
            source.host
        );
        return Ok(());
    }
    let moved = crate::store::file::moved::Moved {
        to: target.to_string(),
        at: crate::domain::format_instant(crate::domain::now_ms()),
        by: "memesd import".to_string(),
    };
    crate::store::file::moved::mark(&source.dir, &moved)
        .with_context(|| format!("marking {} as moved", source.dir.display()))?;
    eprintln!(
        "memesd: marked the ledger in {} as moved: memesd refuses to serve it there now (remove {} to serve that copy anyway)",
        source.dir.display(),
        crate::store::file::moved::path(&source.dir).display()
    );
    Ok(())
}

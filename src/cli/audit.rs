//! `memes audit`: the daemon replays the whole ledger and checks every invariant; or, with
//! `--export FILE`, an export is checked here, without a daemon (its chain of line hashes
//! and every sum: [`crate::store::dump::audit`]). Exit 0 when all hold, 1 otherwise (naming
//! the first discrepancy; in an export, by its line number).

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::progress::Progress;
use crate::protocol::{AuditReport, AuditRequest, Request};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Check this export (`memesd export`) instead, offline: its chain of line hashes and
    /// every sum; no daemon needed
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

pub fn run(args: &AuditArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    if let Some(path) = &args.export {
        return audit_export(path, ctx);
    }
    // On a large ledger the replay takes a while: a spinner meanwhile, on a terminal only.
    let waiting = Progress::spinner(ctx.json, "auditing the ledger");
    let (report, raw): (AuditReport, _) = ctx.call_as(&Request::Audit(AuditRequest {}))?;
    drop(waiting);
    if ctx.json {
        output::print_json(&raw);
    } else {
        let mut table = output::table();
        table.set_header(vec!["Checked", "Count"]);
        let transactions = match report.store.as_deref() {
            Some("postgres") => "transactions (changes other than welcome grants)",
            _ => "transactions (journal lines, batch ends aside)",
        };
        table.add_row(vec![
            transactions.to_string(),
            report.transactions.to_string(),
        ]);
        table.add_row(vec![
            "entries (balances = running sums, never negative)".to_string(),
            report.entries.to_string(),
        ]);
        table.add_row(vec![
            "accounts (ledger = daemon)".to_string(),
            report.accounts.to_string(),
        ]);
        table.add_row(vec![
            "welcome grants (at most one per user)".to_string(),
            report.welcomes.to_string(),
        ]);
        table.add_row(vec![
            "idempotency keys (each used once)".to_string(),
            report.keys.to_string(),
        ]);
        println!("{table}");
        match &report.discrepancy {
            None => println!("Audit passed: every balance equals the sum of its entries."),
            Some(problem) => println!("Audit FAILED: {problem}"),
        }
    }
    Ok(if report.ok {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Checks an export file offline.
fn audit_export(path: &std::path::Path, ctx: &Ctx) -> Result<Exit, Failure> {
    let file = std::fs::File::open(path).map_err(|e| {
        let exit = match e.kind() {
            std::io::ErrorKind::NotFound => Exit::NotFound,
            _ => Exit::Failure,
        };
        Failure::new(exit, format!("{}: {e}", path.display()))
    })?;
    let waiting = Progress::spinner(ctx.json, "auditing the export");
    let checked =
        crate::store::dump::audit::audit(std::io::BufReader::with_capacity(1 << 20, file));
    drop(waiting);
    let file = path.display();
    if ctx.json {
        let report = match &checked {
            Ok(audited) => serde_json::json!({
                "ok": true,
                "version": audited.version,
                "transactions": audited.counts.transactions,
                "entries": audited.counts.entries,
                "accounts": audited.counts.accounts,
                "keys": audited.counts.keys,
            }),
            Err(problem) => serde_json::json!({"ok": false, "discrepancy": problem}),
        };
        println!("{report}");
    } else {
        match &checked {
            Ok(audited) => {
                let counts = audited.counts;
                let chain = match audited.version >= crate::store::dump::CHAINED_VERSION {
                    true => "its chain of line hashes and every sum hold",
                    false => "every sum holds (a version without a chain of line hashes)",
                };
                println!(
                    "Export {file} (version {}): {chain}: {} transactions, {} entries, {} accounts, {} idempotency keys.",
                    audited.version,
                    counts.transactions,
                    counts.entries,
                    counts.accounts,
                    counts.keys
                );
            }
            Err(problem) => println!("Audit FAILED: {file}: {problem}"),
        }
    }
    Ok(match checked {
        Ok(_) => Exit::Success,
        Err(_) => Exit::Failure,
    })
}

/// `memes --url`: the route is the whole call.
impl ToCall for AuditRequest {
    fn fill(&self, _call: &mut Call) {}
}

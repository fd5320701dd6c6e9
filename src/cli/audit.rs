//! `memes audit`: the daemon replays the whole ledger and checks every invariant. Exit 0 when
//! all hold, 1 otherwise (naming the first discrepancy).

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::progress::Progress;
use crate::protocol::{AuditReport, AuditRequest, Request};

pub fn run(ctx: &mut Ctx) -> Result<Exit, Failure> {
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

/// `memes --url`: the route is the whole call.
impl ToCall for AuditRequest {
    fn fill(&self, _call: &mut Call) {}
}

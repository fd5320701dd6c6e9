//! `memes status`: the daemon's version, uptime and counts. Exit 9 (degraded) while the
//! daemon cannot write its ledger, so that a health check notices without parsing output.

use super::exit::Exit;
use super::output;
use super::{Ctx, Failure};
use crate::protocol::{PROTOCOL_VERSION, Request, StatusData, StatusRequest};

pub fn run(ctx: &mut Ctx) -> Result<Exit, Failure> {
    let (data, raw): (StatusData, _) = ctx.call_as(&Request::Status(StatusRequest {}))?;
    if data.protocol != PROTOCOL_VERSION {
        output::warn(
            &format!(
                "memesd speaks protocol {}, this memes speaks {PROTOCOL_VERSION}",
                data.protocol
            ),
            ctx.color,
        );
    }
    let exit = if data.writable {
        Exit::Success
    } else {
        output::warn(
            "the ledger is not writable (disk full or failing): memesd refuses changes until it is",
            ctx.color,
        );
        Exit::Degraded
    };
    if ctx.json {
        output::print_json(&raw);
        return Ok(exit);
    }
    let mut table = output::table();
    table.add_row(vec!["memesd", &data.version]);
    table.add_row(vec!["Protocol".to_string(), data.protocol.to_string()]);
    table.add_row(vec![
        "Uptime".to_string(),
        format!("{:.0} s", data.uptime_secs),
    ]);
    table.add_row(vec!["Accounts".to_string(), data.accounts.to_string()]);
    table.add_row(vec!["Ledger entries".to_string(), data.entries.to_string()]);
    table.add_row(vec!["Memes".to_string(), data.memes.to_string()]);
    let ledger = if data.writable {
        "writable"
    } else {
        "NOT writable (disk problem; changes refused)"
    };
    table.add_row(vec!["Ledger", ledger]);
    println!("{table}");
    Ok(exit)
}

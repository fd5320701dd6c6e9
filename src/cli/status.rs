//! `memes status`: the daemon's version, uptime and counts. Exit 9 (degraded) while the
//! daemon cannot write its ledger, so that a health check notices without parsing output.
//! While the ledger's database cannot be reached it says so (where, since when, why) and
//! shows the last known counts as such, never a disk problem or a count of 0.

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall};
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
    let exit = match (&data.unreachable, data.writable) {
        (Some(lost), _) => {
            output::warn(
                &format!(
                    "the ledger's database at {} is unreachable since {} ({:.0} s): {}; memesd refuses changes until it is back",
                    lost.store, lost.since, lost.for_secs, lost.reason
                ),
                ctx.color,
            );
            Exit::Degraded
        }
        (None, true) => Exit::Success,
        (None, false) => {
            output::warn(
                "the ledger is not writable (disk full or failing): memesd refuses changes until it is",
                ctx.color,
            );
            Exit::Degraded
        }
    };
    if ctx.json {
        output::print_json(&raw);
        return Ok(exit);
    }
    // While the database is out of reach the counts are the last ones read, and say so.
    let count = |n: u64| match &data.unreachable {
        None => n.to_string(),
        Some(lost) => match &lost.counted_at {
            Some(at) => format!("{n} (last known, counted {at})"),
            None => "not known (not counted since memesd started)".to_string(),
        },
    };
    let mut table = output::table();
    table.add_row(vec!["memesd", &data.version]);
    table.add_row(vec!["Protocol".to_string(), data.protocol.to_string()]);
    table.add_row(vec![
        "Uptime".to_string(),
        format!("{:.0} s", data.uptime_secs),
    ]);
    table.add_row(vec!["Accounts".to_string(), count(data.accounts)]);
    table.add_row(vec!["Ledger entries".to_string(), count(data.entries)]);
    table.add_row(vec!["Memes".to_string(), data.memes.to_string()]);
    let ledger = match (&data.unreachable, data.writable) {
        (Some(lost), _) => format!(
            "database UNREACHABLE since {} ({:.0} s); changes refused",
            lost.since, lost.for_secs
        ),
        (None, true) => "writable".to_string(),
        (None, false) => "NOT writable (disk problem; changes refused)".to_string(),
    };
    table.add_row(vec!["Ledger".to_string(), ledger]);
    if let Some(lost) = &data.unreachable {
        table.add_row(vec!["Database".to_string(), lost.store.clone()]);
    }
    println!("{table}");
    Ok(exit)
}

/// `memes --url`: the route is the whole call.
impl ToCall for StatusRequest {
    fn fill(&self, _call: &mut Call) {}
}

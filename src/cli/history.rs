//! `memes history`: a user's ledger entries, oldest first.

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall, encode};
use super::{Ctx, Failure};
use crate::protocol::{
    HistoryData, HistoryEntry, HistoryRequest, MAX_HISTORY_PAGE, Request, Stale,
};
use clap::Args;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The user whose ledger entries to show
    #[arg(long)]
    pub user: String,
    /// Only the newest N entries (still oldest first; 1 or more)
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = super::parse_count)]
    pub limit: Option<u64>,
}

pub fn run(args: &HistoryArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let (entries, stale) = fetch(args, ctx)?;
    // `--json` prints the entries alone (an array, as scripts have it): the note is on
    // stderr either way.
    if let Some(stale) = &stale {
        output::warn_stale(stale, ctx.color);
    }
    if ctx.json {
        // Scripts get the entries themselves: an array, oldest first.
        println!(
            "{}",
            serde_json::to_string(&entries).expect("entries serialise")
        );
        return Ok(Exit::Success);
    }
    let mut table = output::table();
    table.set_header(vec![
        "Seq", "Time", "Kind", "Delta", "Balance", "Key", "Details",
    ]);
    for entry in &entries {
        let details = match (&entry.reason, entry.memes.is_empty(), entry.tier) {
            _ if entry.reverses.is_some() => refund_details(entry),
            (Some(reason), _, _) => reason.clone(),
            (None, false, _) => entry.memes.join(", "),
            (None, true, Some(tier)) => match &entry.until {
                Some(until) => format!("{} until {until}", tier.as_str()),
                None => tier.as_str().to_string(),
            },
            _ => String::new(),
        };
        table.add_row(vec![
            entry.seq.to_string(),
            display_time(&entry.time),
            entry.kind.as_str().to_string(),
            format!("{:+}", entry.delta),
            entry.balance.to_string(),
            entry.key.clone().unwrap_or_default(),
            details,
        ]);
    }
    println!("{table}");
    Ok(Exit::Success)
}

/// What a refund entry's row says: the entry it reverses, and what of it expired at once.
fn refund_details(entry: &HistoryEntry) -> String {
    let reverses = entry.reverses.unwrap_or_default();
    let refunded = entry.refunded.unwrap_or_default();
    let back = entry.delta.unsigned_abs();
    match refunded.saturating_sub(back) {
        0 => format!("reverses {reverses}"),
        expired => format!(
            "reverses {reverses}: {refunded} refunded, {expired} expired at once (their lot had expired)"
        ),
    }
}

/// A ledger time as the table shows it: always three digits of milliseconds, so that a
/// column of times lines up (the wire format drops trailing zeros: `39.54Z`). Anything that
/// does not read as RFC 3339 is shown as it came.
fn display_time(time: &str) -> String {
    match time.parse::<jiff::Timestamp>() {
        Ok(instant) => format!("{instant:.3}"),
        Err(_) => time.to_string(),
    }
}

/// The whole history (or the newest `--limit` entries), oldest first, page by page: the
/// daemon answers at most [`MAX_HISTORY_PAGE`] entries per request. With it, the note of a
/// page a standby served, if any was (the last one's: the most recent word on freshness).
fn fetch(args: &HistoryArgs, ctx: &mut Ctx) -> Result<(Vec<HistoryEntry>, Option<Stale>), Failure> {
    let mut pages: Vec<Vec<HistoryEntry>> = Vec::new();
    let mut stale = None;
    let mut wanted = args.limit.unwrap_or(u64::MAX);
    let mut before = None;
    loop {
        let request = Request::History(HistoryRequest {
            user: args.user.clone(),
            limit: Some(wanted.min(MAX_HISTORY_PAGE)),
            before: before.take(),
        });
        let (page, _): (HistoryData, _) = ctx.call_as(&request)?;
        wanted = wanted.saturating_sub(page.entries.len() as u64);
        stale = page.stale.or(stale);
        pages.push(page.entries);
        match page.next {
            Some(next) if wanted > 0 => before = Some(next),
            _ => break,
        }
    }
    // Pages come newest first; each is oldest first within.
    Ok((pages.into_iter().rev().flatten().collect(), stale))
}

/// `memes --url`: the user in the path, the page in the query, and the user's id as the bearer
/// when `MEMES_TOKEN` is not set.
impl ToCall for HistoryRequest {
    fn fill(&self, call: &mut Call) {
        call.at(&self.user);
        call.query([
            ("limit", self.limit.map(|limit| limit.to_string())),
            ("before", self.before.as_deref().map(encode)),
        ]);
        call.fallback_bearer = Some(self.user.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_exactly_three_digits_of_milliseconds() {
        for (wire, shown) in [
            ("2026-11-24T02:16:39.54Z", "2026-11-24T02:16:39.540Z"),
            ("2026-11-24T02:16:39.535Z", "2026-11-24T02:16:39.535Z"),
            ("2026-11-24T02:16:39.5Z", "2026-11-24T02:16:39.500Z"),
            ("2026-11-24T02:16:39Z", "2026-11-24T02:16:39.000Z"),
        ] {
            assert_eq!(display_time(wire), shown, "{wire}");
        }
        assert_eq!(display_time("yesterday"), "yesterday", "shown as sent");
    }
}

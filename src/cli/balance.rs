//! `memes balance`: a user's balance and tier, now or at an instant (`--at`, with the lots
//! spendable then).

use super::exit::Exit;
use super::output::{self, tokens};
use super::remote::{Call, ToCall, encode};
use super::{Ctx, Failure};
use crate::protocol::{BalanceData, BalanceRequest, Request};
use clap::Args;

#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// The user whose balance and tier to show
    #[arg(long)]
    pub user: String,
    /// The balance as it was at this instant (RFC 3339, e.g. 2027-01-31T00:00:00Z), with
    /// the lots spendable then; after now, what expiry alone would leave by then
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
}

pub fn run(args: &BalanceArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Balance(BalanceRequest {
        user: args.user.clone(),
        at: args.at.clone(),
    });
    let (data, raw): (BalanceData, _) = ctx.call_as(&request)?;
    if let Some(stale) = &data.stale {
        output::warn_stale(stale, ctx.color);
    }
    if ctx.json {
        output::print_json(&raw);
        return Ok(Exit::Success);
    }
    let tier = match &data.tier_until {
        Some(until) => format!("{} until {until}", data.tier.as_str()),
        None => data.tier.as_str().to_string(),
    };
    let mut table = output::table();
    table.add_row(vec!["User", &data.user_id]);
    table.add_row(vec!["Balance".to_string(), tokens(data.balance)]);
    table.add_row(vec!["Tier".to_string(), tier]);
    if let Some(at) = &data.at {
        let at = match data.projected {
            true => format!("{at} (projected: expiry only)"),
            false => at.clone(),
        };
        table.add_row(vec!["At".to_string(), at]);
    }
    println!("{table}");
    if let Some(lots) = data.lots.as_deref().filter(|lots| !lots.is_empty()) {
        super::lots::print_lots(lots);
    }
    Ok(Exit::Success)
}

/// `memes --url`: the user in the path, and their id as the bearer when `MEMES_TOKEN` is not
/// set.
impl ToCall for BalanceRequest {
    fn fill(&self, call: &mut Call) {
        call.at(&self.user);
        call.query([("at", self.at.as_deref().map(encode))]);
        call.fallback_bearer = Some(self.user.clone());
    }
}

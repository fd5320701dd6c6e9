//! `memes lots`: the lots a user's balance is made of, in the order they are spent, and the
//! holds that set tokens aside from them.

use super::exit::Exit;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{LotView, LotsData, LotsRequest, OpenHoldView, Request};
use clap::Args;

#[derive(Debug, Args)]
pub struct LotsArgs {
    /// The user whose lots to list
    #[arg(long)]
    pub user: String,
}

pub fn run(args: &LotsArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Lots(LotsRequest {
        user: args.user.clone(),
    });
    let (data, raw): (LotsData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
        return Ok(Exit::Success);
    }
    match data.lots.is_empty() {
        true => println!("{} has no tokens to spend.", data.user_id),
        false => print_lots(&data.lots),
    }
    if !data.holds.is_empty() {
        print_holds(&data.holds);
    }
    Ok(Exit::Success)
}

/// Open holds as a table: their tokens are in no lot until they end.
fn print_holds(holds: &[OpenHoldView]) {
    let mut table = output::table();
    table.set_header(vec!["Hold", "Held", "Expires", "Since"]);
    for hold in holds {
        table.add_row(vec![
            hold.hold.to_string(),
            tokens(hold.amount),
            hold.expires_at.clone(),
            hold.created_at.clone(),
        ]);
    }
    println!("Held until captured, voided or expired:\n{table}");
}

/// Lots as a table, one row each, in the order given.
pub(super) fn print_lots(lots: &[LotView]) {
    let mut table = output::table();
    table.set_header(vec![
        "Lot", "Left", "Of", "Expires", "Priority", "Kind", "Since",
    ]);
    for lot in lots {
        table.add_row(vec![
            lot.id.to_string(),
            tokens(lot.remaining),
            tokens(lot.amount),
            lot.expires_at.clone().unwrap_or_else(|| "never".into()),
            lot.priority.to_string(),
            lot.kind.as_str().to_string(),
            lot.effective_at.clone(),
        ]);
    }
    println!("{table}");
}

impl ToCall for LotsRequest {
    fn fill(&self, call: &mut Call) {
        call.at(&self.user);
        call.fallback_bearer = Some(self.user.clone());
    }
}

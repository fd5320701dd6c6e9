//! `memes void`: end a hold by giving all of it back (admins).

use super::exit::Exit;
use super::hold::replayed;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{HoldData, Request, VoidRequest};
use clap::Args;

#[derive(Debug, Args)]
pub struct VoidArgs {
    /// The hold's id, as `memes hold` printed it
    pub hold: u64,
    /// Refuse unless the hold is this user's
    #[arg(long)]
    pub user: Option<String>,
    /// Makes retries safe: the same key with the same void voids once
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

pub fn run(args: &VoidArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Void(VoidRequest {
        hold: args.hold,
        user: args.user.clone(),
        idempotency_key: args.idempotency_key.clone(),
    });
    let (data, raw): (HoldData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        println!(
            "Voided hold {}: {} of its {} went back; balance {}.{}",
            data.hold,
            tokens(data.returned),
            tokens(data.amount),
            tokens(data.new_balance),
            replayed(&data)
        );
    }
    Ok(Exit::Success)
}

/// `memes --url`: the hold in the path, the user in the body, the key as the
/// `Idempotency-Key` header.
impl ToCall for VoidRequest {
    fn fill(&self, call: &mut Call) {
        call.change_of(
            self.hold,
            None,
            self.user.as_deref(),
            self.idempotency_key.clone(),
        );
    }
}

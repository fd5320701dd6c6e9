//! `memes hold`: set tokens of a balance aside for work in progress (admins).

use super::exit::Exit;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{HoldData, HoldRequest, Request};
use clap::Args;

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The user whose tokens are set aside
    #[arg(long)]
    pub user: String,
    /// Tokens to set aside (taken from the lots in the order they are spent)
    #[arg(long)]
    pub amount: u64,
    /// How long the hold lasts (e.g. 5m, 30s; at most 7d); then its tokens go back
    #[arg(long, value_name = "DURATION")]
    pub ttl: String,
    /// Makes retries safe: the same key with the same hold holds once
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

pub fn run(args: &HoldArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Hold(HoldRequest {
        user: args.user.clone(),
        amount: args.amount,
        ttl: args.ttl.clone(),
        idempotency_key: args.idempotency_key.clone(),
    });
    let (data, raw): (HoldData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        println!(
            "Hold {} sets {} of {}'s aside until {}; balance {}.{}",
            data.hold,
            tokens(data.amount),
            args.user,
            data.expires_at,
            tokens(data.new_balance),
            replayed(&data)
        );
    }
    Ok(Exit::Success)
}

/// What a replayed hold reply adds to its line.
pub fn replayed(data: &HoldData) -> &'static str {
    match data.replayed {
        true => " (replayed; not applied again)",
        false => "",
    }
}

/// `memes --url`: the user in the path, the amount and ttl in the body, the key as the
/// `Idempotency-Key` header.
impl ToCall for HoldRequest {
    fn fill(&self, call: &mut Call) {
        call.at(&self.user);
        call.body = Some(serde_json::json!({ "amount": self.amount, "ttl": self.ttl }));
        call.idempotency_key = self.idempotency_key.clone();
    }
}

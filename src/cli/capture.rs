//! `memes capture`: end a hold by spending (part of) it; the rest goes back (admins).

use super::exit::Exit;
use super::hold::replayed;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{CaptureRequest, HoldData, Request};
use clap::Args;

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The hold's id, as `memes hold` printed it
    pub hold: u64,
    /// Tokens to spend (at most what it holds; the rest goes back); default: all
    #[arg(long)]
    pub amount: Option<u64>,
    /// Refuse unless the hold is this user's
    #[arg(long)]
    pub user: Option<String>,
    /// Makes retries safe: the same key with the same capture captures once
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

pub fn run(args: &CaptureArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Capture(CaptureRequest {
        hold: args.hold,
        amount: args.amount,
        user: args.user.clone(),
        idempotency_key: args.idempotency_key.clone(),
    });
    let (data, raw): (HoldData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        println!(
            "Captured {} of hold {}'s {}; {} went back; balance {}.{}",
            tokens(data.captured),
            data.hold,
            tokens(data.amount),
            tokens(data.returned),
            tokens(data.new_balance),
            replayed(&data)
        );
    }
    Ok(Exit::Success)
}

/// `memes --url`: the hold in the path, the amount and user in the body, the key as the
/// `Idempotency-Key` header.
impl ToCall for CaptureRequest {
    fn fill(&self, call: &mut Call) {
        call.change_of(
            self.hold,
            self.amount,
            self.user.as_deref(),
            self.idempotency_key.clone(),
        );
    }
}

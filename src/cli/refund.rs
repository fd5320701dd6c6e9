//! `memes refund`: give back (part of) a charge, to the lots it came from (admins).

use super::exit::Exit;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{RefundData, RefundRequest, Request};
use clap::Args;

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// The charge's (or a hold's capture's) entry, its seq as `memes history` shows it
    #[arg(long, value_name = "ID")]
    pub entry: u64,
    /// Tokens to give back (at most what is left of the charge); default: all that is left
    #[arg(long)]
    pub amount: Option<u64>,
    /// Refuse unless the entry is this user's
    #[arg(long)]
    pub user: Option<String>,
    /// Makes retries safe: the same key with the same refund refunds once
    #[arg(long, value_name = "KEY", visible_alias = "key")]
    pub idempotency_key: Option<String>,
}

pub fn run(args: &RefundArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Refund(RefundRequest {
        entry: args.entry,
        amount: args.amount,
        user: args.user.clone(),
        idempotency_key: args.idempotency_key.clone(),
    });
    let (data, raw): (RefundData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        let expired = data.refunded - data.returned.min(data.refunded);
        let expired = match expired {
            0 => String::new(),
            n => format!(" ({} expired at once: their lot had expired)", tokens(n)),
        };
        println!(
            "Refunded {} of entry {} as entry {}; {} went back{expired}; {} left to refund; balance {}.{}",
            tokens(data.refunded),
            data.reverses,
            data.refund,
            tokens(data.returned),
            tokens(data.left),
            tokens(data.new_balance),
            match data.replayed {
                true => " (replayed; not applied again)",
                false => "",
            }
        );
    }
    Ok(Exit::Success)
}

/// `memes --url`: the entry in the path, the amount and user in the body, the key as the
/// `Idempotency-Key` header.
impl ToCall for RefundRequest {
    fn fill(&self, call: &mut Call) {
        call.change_of(
            self.entry,
            self.amount,
            self.user.as_deref(),
            self.idempotency_key.clone(),
        );
    }
}

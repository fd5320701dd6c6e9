//! `memes topup`: add tokens to a balance, or deduct them with a negative amount (admins).

use super::exit::Exit;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{Request, TopupData, TopupRequest};
use clap::Args;

#[derive(Debug, Args)]
pub struct TopupArgs {
    /// The user whose balance changes
    #[arg(long)]
    pub user: String,
    /// Tokens to add; a negative amount deducts (never below zero)
    #[arg(long, allow_negative_numbers = true)]
    pub amount: i64,
    /// Free text kept with the ledger entry, e.g. a payment provider's event id
    #[arg(long)]
    pub reason: Option<String>,
    /// Makes retries safe: the same key with the same top-up credits once
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// When the tokens added expire (RFC 3339, e.g. 2027-01-31T00:00:00Z)
    #[arg(long, value_name = "TIME", conflicts_with = "expires_in")]
    pub expires_at: Option<String>,
    /// How long after now the tokens added expire (e.g. 30d, 12h)
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// 0-100, default 50: lots of a lower priority are spent first
    #[arg(long, value_name = "N")]
    pub priority: Option<u64>,
    /// The tokens added are promotional (given, not paid for): spent before paid ones
    #[arg(long)]
    pub promo: bool,
}

pub fn run(args: &TopupArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Topup(TopupRequest {
        user: args.user.clone(),
        amount: args.amount,
        idempotency_key: args.idempotency_key.clone(),
        reason: args.reason.clone(),
        expires_at: args.expires_at.clone(),
        expires_in: args.expires_in.clone(),
        priority: args.priority,
        promo: args.promo,
    });
    let (data, raw): (TopupData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        let replayed = match data.replayed {
            true => " (replayed; not applied again)",
            false => "",
        };
        // Without this a new user topped up by 10 reads "balance 160" and wonders why.
        let welcome = match data.welcome_grant {
            Some(grant) => format!(
                " This opened {}'s account: the balance includes its welcome grant of {}.",
                data.user_id,
                tokens(grant)
            ),
            None => String::new(),
        };
        match data.amount >= 0 {
            true => println!(
                "Topped up {} by {}; balance {}.{welcome}{replayed}",
                data.user_id,
                tokens(data.amount),
                tokens(data.new_balance)
            ),
            false => println!(
                "Deducted {} from {}; balance {}.{replayed}",
                tokens(data.amount.unsigned_abs()),
                data.user_id,
                tokens(data.new_balance)
            ),
        }
    }
    Ok(Exit::Success)
}

/// `memes --url`: the user in the path, the amount and reason in the body, the key as the
/// `Idempotency-Key` header.
impl ToCall for TopupRequest {
    fn fill(&self, call: &mut Call) {
        let mut body = serde_json::json!({ "amount": self.amount });
        if let Some(reason) = &self.reason {
            body["reason"] = reason.as_str().into();
        }
        if let Some(at) = &self.expires_at {
            body["expires_at"] = at.as_str().into();
        }
        if let Some(within) = &self.expires_in {
            body["expires_in"] = within.as_str().into();
        }
        if let Some(priority) = self.priority {
            body["priority"] = priority.into();
        }
        if self.promo {
            body["promo"] = true.into();
        }
        call.at(&self.user);
        call.body = Some(body);
        call.idempotency_key = self.idempotency_key.clone();
    }
}

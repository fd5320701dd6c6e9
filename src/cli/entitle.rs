//! `memes entitle`: set a user's tier, optionally until a time (admins).

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{EntitleData, EntitleRequest, Request, Tier};
use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct EntitleArgs {
    /// The user whose tier to set
    #[arg(long)]
    pub user: String,
    /// The tier from now on
    #[arg(long, value_enum)]
    pub tier: TierArg,
    /// When the entitlement ends, RFC 3339 (e.g. 2027-01-31T00:00:00Z); open-ended if absent
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TierArg {
    /// Memes from the catalogue
    Free,
    /// Also generated meme images (`memes get --generate`)
    Premium,
}

pub fn run(args: &EntitleArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let tier = match args.tier {
        TierArg::Free => Tier::Free,
        TierArg::Premium => Tier::Premium,
    };
    let request = Request::Entitle(EntitleRequest {
        user: args.user.clone(),
        tier,
        until: args.until.clone(),
    });
    let (data, raw): (EntitleData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        match &data.until {
            Some(until) => println!(
                "{} is now {} until {until}.",
                data.user_id,
                data.tier.as_str()
            ),
            None => println!("{} is now {}.", data.user_id, data.tier.as_str()),
        }
    }
    Ok(Exit::Success)
}

/// `memes --url`: the user in the path, the tier and its end in the body.
impl ToCall for EntitleRequest {
    fn fill(&self, call: &mut Call) {
        let mut body = serde_json::json!({ "tier": self.tier });
        if let Some(until) = &self.until {
            body["until"] = until.as_str().into();
        }
        call.at(&self.user);
        call.body = Some(body);
    }
}

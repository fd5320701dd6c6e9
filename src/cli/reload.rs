//! `memes reload`: reload the catalogue and the admin keys from their files (admins); same
//! as SIGHUP.

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{ReloadData, ReloadRequest, Request};

pub fn run(ctx: &mut Ctx) -> Result<Exit, Failure> {
    let (data, raw): (ReloadData, _) = ctx.call_as(&Request::Reload(ReloadRequest {}))?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        match data.admin_keys {
            Some(keys) => println!(
                "Reloaded {} memes from {} and {keys} admin keys.",
                data.memes, data.source
            ),
            None => println!("Reloaded {} memes from {}.", data.memes, data.source),
        }
    }
    Ok(Exit::Success)
}

/// `memes --url`: the route is the whole call.
impl ToCall for ReloadRequest {
    fn fill(&self, _call: &mut Call) {}
}

//! `memes reload`: reload the catalogue from its file (admins); same as SIGHUP.

use super::exit::Exit;
use super::output;
use super::{Ctx, Failure};
use crate::protocol::{ReloadData, ReloadRequest, Request};

pub fn run(ctx: &mut Ctx) -> Result<Exit, Failure> {
    let (data, raw): (ReloadData, _) = ctx.call_as(&Request::Reload(ReloadRequest {}))?;
    if ctx.json {
        output::print_json(&raw);
    } else {
        println!("Reloaded {} memes from {}.", data.memes, data.source);
    }
    Ok(Exit::Success)
}

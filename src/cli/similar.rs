//! `memes similar`: the memes nearest in meaning to one meme, free of charge.

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall};
use super::search::hits_table;
use super::{Ctx, Failure};
use crate::protocol::{MAX_SEARCH_LIMIT, Request, SimilarData, SimilarRequest};
use clap::{Args, value_parser};

#[derive(Debug, Args)]
pub struct SimilarArgs {
    /// The meme's id (as `get` and `search` show it), e.g. this-is-fine
    pub id: String,
    /// At most this many results (1-100)
    #[arg(long, default_value_t = 10, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u32).range(1..=i64::from(MAX_SEARCH_LIMIT)))]
    pub limit: u32,
    /// Include memes flagged not safe for work
    #[arg(long)]
    pub nsfw: bool,
}

pub fn run(args: &SimilarArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Similar(SimilarRequest {
        meme: args.id.clone(),
        limit: Some(args.limit),
        nsfw: args.nsfw,
    });
    let (data, raw): (SimilarData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
        return Ok(Exit::Success);
    }
    if data.hits.is_empty() {
        println!("No other meme to compare {:?} with.", data.meme_id);
        return Ok(Exit::Success);
    }
    println!("{}", hits_table(&data.hits, false));
    Ok(Exit::Success)
}

/// `memes --url`: the meme's id in the path, the options in the query string.
impl ToCall for SimilarRequest {
    fn fill(&self, call: &mut Call) {
        call.at(&self.meme);
        call.query([
            ("limit", self.limit.map(|limit| limit.to_string())),
            ("nsfw", self.nsfw.then(|| "true".to_string())),
        ]);
    }
}

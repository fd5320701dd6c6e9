//! `memes search`: ranked matches for a query with their scores, free of charge.

use super::exit::Exit;
use super::output;
use super::{Ctx, Failure};
use crate::protocol::{MAX_SEARCH_LIMIT, Request, SearchData, SearchRequest};
use clap::{Args, value_parser};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for (typos forgiven)
    pub query: String,
    /// At most this many results (1-100)
    #[arg(long, default_value_t = 10, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u32).range(1..=i64::from(MAX_SEARCH_LIMIT)))]
    pub limit: u32,
    /// Include memes flagged not safe for work
    #[arg(long)]
    pub nsfw: bool,
}

pub fn run(args: &SearchArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Search(SearchRequest {
        query: args.query.clone(),
        limit: Some(args.limit),
        nsfw: args.nsfw,
    });
    let (data, raw): (SearchData, _) = ctx.call_as(&request)?;
    if ctx.json {
        output::print_json(&raw);
        return Ok(Exit::Success);
    }
    if data.hits.is_empty() {
        println!("No meme matches {:?}.", data.query);
        return Ok(Exit::Success);
    }
    let mut table = output::table();
    table.set_header(vec!["Score", "Id", "Meme", "Image"]);
    for hit in &data.hits {
        table.add_row(vec![
            format!("{:.2}", hit.score),
            hit.meme.id.clone(),
            hit.meme.title.clone(),
            hit.meme.image.clone(),
        ]);
    }
    println!("{table}");
    Ok(Exit::Success)
}

//! `memes search`: ranked matches for a query with their scores, free of charge.

use super::exit::Exit;
use super::output;
use super::remote::{Call, ToCall, encode};
use super::{Ctx, Failure};
use crate::protocol::{MAX_SEARCH_LIMIT, Request, SearchData, SearchHit, SearchRequest};
use clap::{Args, value_parser};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for: a title, words, or a description in your own words (typos forgiven)
    pub query: String,
    /// At most this many results (1-100)
    #[arg(long, default_value_t = 10, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u32).range(1..=i64::from(MAX_SEARCH_LIMIT)))]
    pub limit: u32,
    /// Include memes flagged not safe for work
    #[arg(long)]
    pub nsfw: bool,
    /// Also show what each score is made of: the words' BM25F score and the closeness in
    /// meaning (cosine)
    #[arg(long)]
    pub explain: bool,
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
    println!("{}", hits_table(&data.hits, args.explain));
    Ok(Exit::Success)
}

/// The table of ranked hits (`search` and `similar`); with `explain`, the score's parts.
pub fn hits_table(hits: &[SearchHit], explain: bool) -> comfy_table::Table {
    let mut table = output::table();
    let mut header = vec!["Score"];
    if explain {
        header.extend(["Words", "Meaning"]);
    }
    header.extend(["Id", "Meme", "Image"]);
    table.set_header(header);
    let part = |value: Option<f32>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    for hit in hits {
        let mut row = vec![format!("{:.2}", hit.score)];
        if explain {
            // A daemon ranking by words alone sends no parts: its score is the words' score.
            let words = hit.bm25.or(hit.meaning.is_none().then_some(hit.score));
            row.extend([part(words), part(hit.meaning)]);
        }
        row.extend([
            hit.meme.id.clone(),
            hit.meme.title.clone(),
            hit.meme.image.clone(),
        ]);
        table.add_row(row);
    }
    table
}

/// `memes --url`: the query (`q`) and its options in the query string.
impl ToCall for SearchRequest {
    fn fill(&self, call: &mut Call) {
        call.query([
            ("q", Some(encode(&self.query))),
            ("limit", self.limit.map(|limit| limit.to_string())),
            ("nsfw", self.nsfw.then(|| "true".to_string())),
        ]);
    }
}

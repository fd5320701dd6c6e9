//! `memes get`: a meme (or several, or a generated image), charged only when delivered.

use super::exit::Exit;
use super::output::{self, tokens};
use super::{Ctx, Failure};
use crate::protocol::{GetData, GetRequest, MemeView, Request};
use base64::Engine;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The user to charge
    #[arg(long)]
    pub user: String,
    /// Latitude in decimal degrees (-90 to 90), with --long
    #[arg(long, allow_negative_numbers = true, requires = "long")]
    pub lat: Option<f64>,
    /// Longitude in decimal degrees (-180 to 180), with --lat
    #[arg(
        long,
        visible_alias = "lon",
        allow_negative_numbers = true,
        requires = "lat"
    )]
    pub long: Option<f64>,
    /// What the meme should be about (typos forgiven)
    #[arg(long)]
    pub query: Option<String>,
    /// Deliver this many distinct memes (1-10), charged together, all or nothing
    #[arg(long)]
    pub count: Option<u32>,
    /// Allow memes flagged not safe for work
    #[arg(long)]
    pub nsfw: bool,
    /// Render a new meme image (premium users only)
    #[arg(long, conflicts_with = "count")]
    pub generate: bool,
    /// With --generate: write the PNG here
    #[arg(long, requires = "generate", value_name = "FILE.png")]
    pub out: Option<PathBuf>,
    /// A signed claim (JWT) for this user, e.g. one that makes the request premium
    #[arg(long, value_name = "JWT")]
    pub token: Option<String>,
    /// Makes retries safe: the same key with the same request is answered with the first
    /// reply and charged once
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
}

pub fn run(args: &GetArgs, ctx: &mut Ctx) -> Result<Exit, Failure> {
    let request = Request::Get(GetRequest {
        user: args.user.clone(),
        lat: args.lat,
        long: args.long,
        query: args.query.clone(),
        count: args.count,
        nsfw: args.nsfw,
        generate: args.generate,
        inline: args.out.is_some(),
        token: args.token.clone(),
        idempotency_key: args.idempotency_key.clone(),
    });
    let (mut data, raw): (GetData, _) = ctx.call_as(&request)?;
    if let (Some(out), Some(image)) = (&args.out, &mut data.generated) {
        let png = image.png_base64.take().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png)
            .map_err(|e| {
                Failure::new(
                    Exit::Failure,
                    format!("memesd sent an undecodable image: {e}"),
                )
            })?;
        std::fs::write(out, bytes)
            .map_err(|e| Failure::new(Exit::Failure, format!("writing {}: {e}", out.display())))?;
    }
    if ctx.json {
        match args.out {
            // The image went to the file; keep stdout one small document.
            Some(_) => println!("{}", serde_json::to_string(&data).expect("data serialises")),
            None => output::print_json(&raw),
        }
        return Ok(Exit::Success);
    }
    print_human(&data, args);
    Ok(Exit::Success)
}

fn print_human(data: &GetData, args: &GetArgs) {
    if let Some(meme) = &data.meme {
        let mut table = output::table();
        table.add_row(vec!["Meme", &meme.title]);
        table.add_row(vec!["Image", &meme.image]);
        table.add_row(vec!["Source", &meme.source]);
        table.add_row(vec!["Charged".to_string(), tokens(data.charged)]);
        table.add_row(vec!["Balance".to_string(), tokens(data.balance)]);
        println!("{table}");
    }
    if let Some(memes) = &data.memes {
        print_list(memes);
        println!(
            "Charged {}; balance {}.",
            tokens(data.charged),
            tokens(data.balance)
        );
    }
    if let Some(image) = &data.generated {
        let mut table = output::table();
        table.add_row(vec![
            "Generated".to_string(),
            format!("{} ({})", image.template, image.path),
        ]);
        table.add_row(vec![
            "Caption".to_string(),
            format!("{} / {}", image.top, image.bottom),
        ]);
        table.add_row(vec![
            "Size".to_string(),
            format!("{}×{}, {} bytes", image.width, image.height, image.bytes),
        ]);
        table.add_row(vec!["SHA-256", &image.sha256]);
        if let Some(out) = &args.out {
            table.add_row(vec!["Saved to".to_string(), out.display().to_string()]);
        }
        table.add_row(vec!["Charged".to_string(), tokens(data.charged)]);
        table.add_row(vec!["Balance".to_string(), tokens(data.balance)]);
        println!("{table}");
    }
    if let Some(place) = &data.location {
        println!("Place: {}", place.describe());
    }
}

fn print_list(memes: &[MemeView]) {
    let mut table = output::table();
    table.set_header(vec!["#", "Meme", "Image"]);
    for (i, meme) in memes.iter().enumerate() {
        table.add_row(vec![
            (i + 1).to_string(),
            meme.title.clone(),
            meme.image.clone(),
        ]);
    }
    println!("{table}");
}

//! `memes get`: a meme (or several, or a generated image), charged only when delivered.
//!
//! `--generate --out FILE` is paid for before the file is written, so the CLI makes the write
//! as safe as it can: it creates a temporary file beside FILE first (a path it cannot write
//! is refused before anything is charged), renames it into place once complete, and always
//! sends an idempotency key (the user's, or one it makes up), so that if the write still
//! fails it can print the exact command that fetches the same image again without paying.

use super::exit::Exit;
use super::output::{self, tokens};
use super::remote::{Call, ToCall};
use super::{Ctx, Failure};
use crate::protocol::{GeneratedImage, GetData, GetRequest, MAX_COUNT, MemeView, Request};
use base64::Engine;
use clap::{Args, value_parser};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The user to charge
    #[arg(long)]
    pub user: String,
    /// Latitude in decimal degrees (-90 to 90), with --long
    // Hyphen values, not only negative numbers: a mistyped `-73.5.5` then gets the number
    // parser's refusal, not clap's "unexpected argument '-7'".
    #[arg(long, allow_hyphen_values = true, requires = "long")]
    pub lat: Option<f64>,
    /// Longitude in decimal degrees (-180 to 180), with --lat
    #[arg(
        long,
        visible_alias = "lon",
        allow_hyphen_values = true,
        requires = "lat"
    )]
    pub long: Option<f64>,
    /// What the meme should be about (typos forgiven)
    #[arg(long)]
    pub query: Option<String>,
    /// Deliver this many distinct memes (1-10), charged together, all or nothing
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = value_parser!(u32).range(1..=i64::from(MAX_COUNT)))]
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
    // Before anything is charged: can the image be written where it should go?
    let pending = args.out.as_deref().map(PendingFile::create).transpose()?;
    let idempotency_key = match (&args.idempotency_key, &pending) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(_)) => Some(format!("memes-out-{}", uuid::Uuid::new_v4())),
        (None, None) => None,
    };
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
        idempotency_key: idempotency_key.clone(),
    });
    let (mut data, raw): (GetData, _) = ctx.call_as(&request)?;
    if let (Some(pending), Some(image)) = (pending, &mut data.generated) {
        let png = image.png_base64.take().unwrap_or_default();
        let written = base64::engine::general_purpose::STANDARD
            .decode(png)
            .map_err(|e| format!("memesd sent an undecodable image: {e}"))
            .and_then(|bytes| pending.publish(&bytes));
        if let Err(message) = written {
            let key = idempotency_key.as_deref().unwrap_or_default();
            return Err(Failure::new(
                Exit::Failure,
                format!(
                    "{message}; the image was charged ({})",
                    tokens(data.charged)
                ),
            )
            .with_code("write_failed")
            .with_hint(format!(
                "get the same image again without paying: `{}`",
                replay_command(args, key, ctx)
            )));
        }
    }
    if ctx.json {
        match args.out {
            // The image went to the file; keep stdout one small document.
            Some(_) => println!("{}", serde_json::to_string(&data).expect("data serialises")),
            None => output::print_json(&raw),
        }
        return Ok(Exit::Success);
    }
    print_human(&data, args, ctx.url.as_deref());
    Ok(Exit::Success)
}

/// A temporary file beside the output file, renamed into place once the image is in it;
/// removed if it never is. Created here rather than by `tempfile::Builder`, whose errors
/// append the temporary name (which the user never chose) to the system's message.
struct PendingFile {
    file: File,
    part: tempfile::TempPath,
    out: PathBuf,
}

impl PendingFile {
    /// Refuses (exit 2, nothing charged yet) an output path this process cannot create.
    fn create(out: &Path) -> Result<PendingFile, Failure> {
        let refuse = |why: String| {
            Failure::new(
                Exit::Invalid,
                format!("cannot write {}: {why}; nothing was charged", out.display()),
            )
        };
        if out.is_dir() {
            return Err(refuse("it is a directory".into()));
        }
        let dir = match out.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = format!(".memes-{}.png.part", uuid::Uuid::new_v4().simple());
        // Removes the file when dropped; a unique name, so never someone else's.
        let part = tempfile::TempPath::try_from_path(dir.join(name))
            .map_err(|e| refuse(format!("{}: {e}", dir.display())))?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            // What `File::create` gives (before the umask).
            .mode(0o666)
            .open(&part)
            .map_err(|e| refuse(format!("{}: {e}", dir.display())))?;
        Ok(PendingFile {
            file,
            part,
            out: out.to_path_buf(),
        })
    }

    /// Writes `bytes` and renames the file into place.
    fn publish(mut self, bytes: &[u8]) -> Result<(), String> {
        let writing = |e| format!("writing {}: {e}", self.out.display());
        self.file.write_all(bytes).map_err(writing)?;
        self.file.sync_all().map_err(writing)?;
        self.part
            .persist(&self.out)
            .map_err(|e| format!("writing {}: {}", self.out.display(), e.error))
    }
}

/// The command that asks for the same generated image again with `key`, into another file:
/// memesd answers a repeated key with its first reply, charging nothing.
fn replay_command(args: &GetArgs, key: &str, ctx: &Ctx) -> String {
    let mut words: Vec<String> = vec!["memes".into()];
    match (&ctx.url, &ctx.socket) {
        (Some(url), _) => words.extend(["--url".into(), url.clone()]),
        (None, Some(socket)) => words.extend(["--socket".into(), socket.display().to_string()]),
        (None, None) => {}
    }
    words.extend(["get".into(), "--user".into(), args.user.clone()]);
    if let (Some(lat), Some(long)) = (args.lat, args.long) {
        words.extend([
            "--lat".into(),
            lat.to_string(),
            "--long".into(),
            long.to_string(),
        ]);
    }
    if let Some(query) = &args.query {
        words.extend(["--query".into(), query.clone()]);
    }
    if args.nsfw {
        words.push("--nsfw".into());
    }
    words.extend([
        "--generate".into(),
        "--idempotency-key".into(),
        key.into(),
        "--out".into(),
        "OTHER.png".into(),
    ]);
    output::shell_command(words.iter().map(String::as_str))
}

/// Where a generated image is, for the person reading: the path on this host when memesd
/// runs here (the socket), its URL when memesd is remote (`--url`), whose paths mean nothing
/// on this host.
fn image_location(image: &GeneratedImage, remote: Option<&str>) -> String {
    match remote {
        None => image.path.clone(),
        Some(base) => {
            let url = match image.url.is_empty() {
                true => GeneratedImage::url_of(&image.sha256),
                false => image.url.clone(),
            };
            format!("{}{url}", base.trim_end_matches('/'))
        }
    }
}

fn print_human(data: &GetData, args: &GetArgs, remote: Option<&str>) {
    let charged = match data.replayed {
        true => format!("{} (replayed; not charged again)", tokens(data.charged)),
        false => tokens(data.charged),
    };
    if let Some(meme) = &data.meme {
        let mut table = output::table();
        table.add_row(vec!["Meme", &meme.title]);
        table.add_row(vec!["Image", &meme.image]);
        table.add_row(vec!["Source", &meme.source]);
        table.add_row(vec!["Charged".to_string(), charged.clone()]);
        table.add_row(vec!["Balance".to_string(), tokens(data.balance)]);
        println!("{table}");
    }
    if let Some(memes) = &data.memes {
        print_list(memes);
        println!("Charged {charged}; balance {}.", tokens(data.balance));
    }
    if let Some(image) = &data.generated {
        let mut table = output::table();
        table.add_row(vec![
            "Generated".to_string(),
            format!("{} ({})", image.template, image_location(image, remote)),
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
        table.add_row(vec!["Charged".to_string(), charged.clone()]);
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

/// `memes --url`: the request in the body of `POST /v1/memes`; the user's signed claim, or
/// else their id, is the bearer when `MEMES_TOKEN` is not set.
impl ToCall for GetRequest {
    fn fill(&self, call: &mut Call) {
        let mut body = serde_json::json!({ "user": self.user });
        let fields = [
            ("lat", self.lat.map(serde_json::Value::from)),
            ("long", self.long.map(serde_json::Value::from)),
            ("query", self.query.clone().map(serde_json::Value::from)),
            ("count", self.count.map(serde_json::Value::from)),
            ("nsfw", self.nsfw.then_some(true.into())),
            ("generate", self.generate.then_some(true.into())),
            ("inline", self.inline.then_some(true.into())),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                body[name] = value;
            }
        }
        call.body = Some(body);
        call.idempotency_key = self.idempotency_key.clone();
        // A signed claim for the user is their credential over HTTP.
        call.fallback_bearer = Some(self.token.clone().unwrap_or_else(|| self.user.clone()));
    }
}

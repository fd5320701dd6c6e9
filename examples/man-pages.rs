//! Writes the manual pages (`memes(1)` and its subcommands, `memesd(8)`) into a directory,
//! `man/` by default: `cargo run --example man-pages [DIR]`. The committed pages are checked
//! against these by a test (tests/it/cli.rs), so run this after changing any flag or help text.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man"));
    std::fs::create_dir_all(&dir)?;
    for (name, roff) in memes::man_pages::pages() {
        std::fs::write(dir.join(&name), roff)?;
        println!("{}", dir.join(&name).display());
    }
    Ok(())
}

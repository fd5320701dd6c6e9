//! The manual pages, generated from the same clap definitions as `--help` (clap_mangen), so
//! they cannot say something else: `memes(1)`, a page per subcommand (`memes-get(1)`, ...,
//! as `git` has), and `memesd(8)`. Committed under `man/`, regenerated with
//! `cargo run --example man-pages` and checked by a test that fails when they are stale, like
//! the shell completions.

use crate::cli::Cli;
use clap::CommandFactory;
use clap_mangen::Man;

/// Every page: its file name (`memes.1`, `memes-get.1`, `memesd.8`) and its roff source.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut pages = Vec::new();
    let mut memes = Cli::command().disable_help_subcommand(true);
    memes.build();
    add_with_subcommands(&mut pages, memes, "1");
    let memesd = crate::daemon::config_file::command();
    add_with_subcommands(&mut pages, memesd, "8");
    pages
}

fn add_with_subcommands(pages: &mut Vec<(String, Vec<u8>)>, command: clap::Command, section: &str) {
    let man = Man::new(command.clone()).section(section).manual("memes");
    let mut roff = Vec::new();
    man.render(&mut roff).expect("rendering to memory");
    pages.push((man.get_filename(), roff));
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        add_with_subcommands(pages, sub.clone(), section);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_a_page_per_command_and_subcommand() {
        let names: Vec<String> = pages().into_iter().map(|(name, _)| name).collect();
        for name in ["memes.1", "memes-get.1", "memes-audit.1", "memesd.8"] {
            assert!(names.contains(&name.to_string()), "{names:?}");
        }
        assert!(
            !names.iter().any(|name| name.starts_with("memes-help")),
            "{names:?}"
        );
    }
}

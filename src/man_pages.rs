//! The manual pages, generated from the same clap definitions as `--help` (clap_mangen), so
//! they cannot say something else: `memes(1)`, a page per subcommand (`memes-get(1)`, ...,
//! as `git` has), `memesd(8)` and its subcommands (`memesd-export(8)`, `memesd-import(8)`).
//! Committed under `man/`, regenerated with `cargo run --example man-pages` and checked by a
//! test that fails when they are stale, when a page names another that does not exist, or
//! when `man --warnings` finds fault with one, like the shell completions.
//!
//! clap_mangen writes the sections clap knows (NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
//! SUBCOMMANDS); this module adds the ones `man` readers look for and clap has no notion of:
//! EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO, in the order man-pages(7) gives.

use crate::cli::Cli;
use clap::CommandFactory;
use clap_mangen::Man;
use std::fmt::Write as _;

/// The manual every page belongs to, and its source line (the page footer).
const MANUAL: &str = "memes";
const SOURCE: &str = concat!("memes ", env!("CARGO_PKG_VERSION"));
/// The date in the page footer: when this version's pages last changed in substance. Fixed
/// rather than today's, so regenerating them changes nothing; an empty date would shift the
/// source into its place.
const DATE: &str = "2026-12-07";

/// Every page: its file name (`memes.1`, `memes-get.1`, `memesd.8`) and its roff source.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut memes = Cli::command().disable_help_subcommand(true);
    memes.build();
    // Built as well, so that its subcommands are named `memesd-export`, not `export`.
    let mut memesd = crate::daemon::config_file::command().disable_help_subcommand(true);
    memesd.build();
    let mut all = Vec::new();
    collect(&mut all, &memes, "1", None);
    collect(&mut all, &memesd, "8", None);
    all.iter().map(Page::render).collect()
}

/// A command with its place among the pages.
struct Page {
    command: clap::Command,
    section: &'static str,
    /// The page of the command this one is a subcommand of.
    parent: Option<String>,
}

fn collect(
    pages: &mut Vec<Page>,
    command: &clap::Command,
    section: &'static str,
    parent: Option<String>,
) {
    let page = Page {
        command: command.clone(),
        section,
        parent,
    };
    let reference = page.reference();
    pages.push(page);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        collect(pages, sub, section, Some(reference.clone()));
    }
}

impl Page {
    /// The page's name as other pages refer to it: `memes-get(1)`.
    fn reference(&self) -> String {
        format!("{}({})", self.name(), self.section)
    }

    fn name(&self) -> &str {
        self.command
            .get_display_name()
            .unwrap_or_else(|| self.command.get_name())
    }

    fn daemon(&self) -> bool {
        self.name().starts_with("memesd")
    }

    fn render(&self) -> (String, Vec<u8>) {
        let man = Man::new(self.command.clone())
            .title(self.name().to_ascii_uppercase())
            .section(self.section)
            .date(DATE)
            .source(SOURCE)
            .manual(MANUAL);
        let mut roff = Vec::new();
        let write = |result: std::io::Result<()>| result.expect("rendering to memory");
        write(man.render_title(&mut roff));
        write(man.render_name_section(&mut roff));
        write(man.render_synopsis_section(&mut roff));
        write(man.render_description_section(&mut roff));
        if self.command.get_arguments().any(|arg| !arg.is_hide_set()) {
            write(man.render_options_section(&mut roff));
        }
        if self.command.has_subcommands() {
            write(man.render_subcommands_section(&mut roff));
        }
        let mut extra = String::new();
        self.exit_status(&mut extra);
        self.environment(&mut extra);
        self.files(&mut extra);
        self.see_also(&mut extra);
        roff.extend_from_slice(extra.as_bytes());
        (man.get_filename(), roff)
    }

    fn exit_status(&self, out: &mut String) {
        section(out, "EXIT STATUS");
        let table = match self.daemon() {
            true => DAEMON_EXIT,
            false => crate::cli::exit::HELP
                .split_once('\n')
                .map_or("", |(_, table)| table),
        };
        for line in table.lines() {
            let (code, meaning) = line
                .trim()
                .split_once(char::is_whitespace)
                .unwrap_or_default();
            let _ = writeln!(out, ".TP\n.B {}\n{}", text(code), text(meaning.trim()));
        }
    }

    fn environment(&self, out: &mut String) {
        let mut variables: Vec<(String, String)> = self
            .command
            .get_arguments()
            .filter(|arg| !arg.is_hide_set())
            .filter_map(|arg| {
                let name = arg.get_env()?.to_string_lossy().into_owned();
                Some((name, format!("as --{}", arg.get_long()?)))
            })
            .collect();
        let own: &[(&str, &str)] = match self.daemon() {
            true => &[(
                "MEMES_LOG",
                "the log level or filter (info by default; debug, or a tracing filter such as memes=debug)",
            )],
            false => &[
                (
                    "MEMES_TOKEN",
                    "with --url: the bearer credential, a user's token or an admin key",
                ),
                (
                    "NO_COLOR",
                    "when set, no colour on stderr with --color auto",
                ),
            ],
        };
        variables.extend(own.iter().map(|(n, m)| (n.to_string(), m.to_string())));
        section(out, "ENVIRONMENT");
        for (name, meaning) in variables {
            let _ = writeln!(out, ".TP\n.B {}\n{}", text(&name), text(&meaning));
        }
    }

    fn files(&self, out: &mut String) {
        section(out, "FILES");
        let files: &[(&str, &str)] = match self.daemon() {
            true => &[
                (
                    "$XDG_RUNTIME_DIR/memes/memesd.sock",
                    "the default socket (/tmp/memes-$UID/memesd.sock without XDG_RUNTIME_DIR)",
                ),
                (
                    "~/.local/share/memes/",
                    "the default data directory (--data-dir), holding:",
                ),
                ("journal.ndjson", "the file store's ledger, append-only"),
                ("snapshot.json", "the latest checkpoint of the file store"),
                (
                    "memesd.lock",
                    "held while a daemon uses the data directory; records its pid and socket",
                ),
                (
                    "generated/<sha256>.png",
                    "generated meme images, named by their content",
                ),
            ],
            false => &[(
                "$XDG_RUNTIME_DIR/memes/memesd.sock",
                "memesd's default socket (/tmp/memes-$UID/memesd.sock without XDG_RUNTIME_DIR)",
            )],
        };
        for (path, meaning) in files {
            let _ = writeln!(out, ".TP\n.I {}\n{}", text(path), text(meaning));
        }
    }

    /// The parent page, the subcommands' pages, and the two commands' own pages.
    fn see_also(&self, out: &mut String) {
        let me = self.reference();
        let mut related: Vec<String> = self.parent.iter().cloned().collect();
        related.extend(
            self.command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(|sub| {
                    let name = sub.get_display_name().unwrap_or_else(|| sub.get_name());
                    format!("{name}({})", self.section)
                }),
        );
        related.extend(["memes(1)".to_string(), "memesd(8)".to_string()]);
        let mut seen = std::collections::BTreeSet::new();
        related.retain(|page| *page != me && seen.insert(page.clone()));
        section(out, "SEE ALSO");
        let list: Vec<String> = related
            .iter()
            .map(|page| {
                let (name, section) = page
                    .trim_end_matches(')')
                    .split_once('(')
                    .unwrap_or_default();
                format!("\\fB{}\\fR({section})", text(name))
            })
            .collect();
        let _ = writeln!(out, "{}", list.join(",\n"));
    }
}

/// memesd's exit codes.
const DAEMON_EXIT: &str = "\
  0  stopped cleanly (SIGTERM or SIGINT), or the subcommand succeeded
  1  could not start (data directory, socket, port or store unusable), or failed while running
  2  invalid command line, environment or configuration file";

fn section(out: &mut String, title: &str) {
    match title.contains(' ') {
        true => writeln!(out, ".SH \"{title}\""),
        false => writeln!(out, ".SH {title}"),
    }
    .expect("writing to a String");
}

/// Plain text as roff: backslashes and hyphens escaped, and no line read as a request.
fn text(plain: &str) -> String {
    let escaped = plain.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        pages().into_iter().map(|(name, _)| name).collect()
    }

    #[test]
    fn there_is_a_page_per_command_and_subcommand() {
        let names = names();
        for name in [
            "memes.1",
            "memes-get.1",
            "memes-audit.1",
            "memesd.8",
            "memesd-export.8",
            "memesd-import.8",
        ] {
            assert!(names.contains(&name.to_string()), "{names:?}");
        }
        assert!(
            !names.iter().any(|name| name.contains("-help")),
            "{names:?}"
        );
    }

    #[test]
    fn every_page_has_the_sections_man_readers_look_for() {
        for (name, roff) in pages() {
            let roff = String::from_utf8(roff).unwrap();
            for heading in [
                "NAME",
                "SYNOPSIS",
                "\"EXIT STATUS\"",
                "ENVIRONMENT",
                "FILES",
                "\"SEE ALSO\"",
            ] {
                assert!(
                    roff.contains(&format!(".SH {heading}\n")),
                    "{name}: {heading}"
                );
            }
            assert!(!roff.contains(".SH EXTRA"), "{name}");
            let title = roff.lines().find(|l| l.starts_with(".TH")).unwrap();
            assert!(
                title.ends_with(&format!("{DATE} \"{SOURCE}\" {MANUAL}")),
                "{name}: {title}"
            );
        }
    }
}

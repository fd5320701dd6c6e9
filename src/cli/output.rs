//! Printing: human output (comfy-table or one clear line) on stdout, `--json` as exactly one
//! JSON document on stdout, errors and notices on stderr.

use super::exit::Exit;
use super::{ColorChoice, Failure};
use crate::domain::Stale;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde_json::value::RawValue;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Whether to colour output: `--color`, then `NO_COLOR`, then whether stderr is a terminal.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

pub use crate::causes::with_causes;

/// `memes: error: …` on stderr, and the hint on its own line; with `--json` also
/// `{"error":{"code":…,"message":…,"hint":…}}` on stdout, so that a script reading stdout
/// gets one document whatever happened.
pub fn print_failure(failure: &Failure, color: bool, json: bool) {
    if json {
        let mut error = serde_json::json!({"code": failure.code, "message": failure.message});
        if let Some(hint) = &failure.hint {
            error["hint"] = hint.as_str().into();
        }
        println!("{}", serde_json::json!({ "error": error }));
    }
    let (red, bold, reset) = if color {
        ("\x1b[31m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    eprintln!("memes: {bold}{red}error:{reset} {}", failure.message);
    if let Some(hint) = &failure.hint {
        eprintln!("memes: hint: {hint}");
    }
}

/// `memes: warning: …` on stderr.
pub fn warn(message: &str, color: bool) {
    let (yellow, bold, reset) = if color {
        ("\x1b[33m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    eprintln!("memes: {bold}{yellow}warning:{reset} {message}");
}

/// The warning for a read a standby served while no primary could be reached (on stderr, so
/// that stdout stays the answer a script reads, `--json` or not).
pub fn warn_stale(stale: &Stale, color: bool) {
    warn(&stale_note(stale), color);
}

fn stale_note(stale: &Stale) -> String {
    let fresh = match (&stale.as_of, stale.age_secs) {
        (Some(as_of), Some(age)) => format!("as of {as_of} ({age:.1} s before the read)"),
        (Some(as_of), None) => format!("as of {as_of}"),
        _ => "which cannot tell how fresh it is (it has replayed nothing since it started)"
            .to_string(),
    };
    format!(
        "no primary could be reached: read from the standby at {}, {fresh}; later changes may be missing",
        stale.from
    )
}

/// Whether the command line asks for `--json` (before any `--`): for failures found while
/// parsing it, when the parsed value is not there to ask.
pub fn json_requested() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// Reports a command line clap refused (or prints the help or version it asked for), the
/// way every other failure is reported, and returns the exit code.
pub fn usage_error(error: &clap::Error, json: bool) -> ExitCode {
    let _ = error.print();
    if !error.use_stderr() {
        // --help, --version: not a failure.
        return ExitCode::SUCCESS;
    }
    if json {
        let rendered = error.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        let failure = Failure::new(Exit::Invalid, message);
        println!(
            "{}",
            serde_json::json!({"error": {"code": failure.code, "message": failure.message}})
        );
    }
    Exit::Invalid.into()
}

/// A table in the house style.
pub fn table() -> Table {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// Prints a JSON document on its own line.
pub fn print_json(raw: &RawValue) {
    println!("{}", raw.get());
}

/// A command line a user can paste into a POSIX shell: each word quoted where it needs to be.
pub fn shell_command<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words
        .into_iter()
        .map(|word| match shlex::try_quote(word) {
            Ok(quoted) => quoted.into_owned(),
            // Only a NUL byte cannot be quoted, and no argument or path can hold one.
            Err(_) => format!("{word:?}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// "1 token", "5 tokens".
pub fn tokens(n: impl Into<i128>) -> String {
    let n = n.into();
    match n.abs() {
        1 => format!("{n} token"),
        _ => format!("{n} tokens"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_commands_quote_only_what_needs_it() {
        assert_eq!(
            shell_command(["memesd", "--socket", "/tmp/a b/x.sock"]),
            "memesd --socket '/tmp/a b/x.sock'"
        );
        assert_eq!(
            shell_command(["memes", "--query", "it's"]),
            r#"memes --query "it's""#
        );
    }

    #[test]
    fn causes_follow_the_message_once_each() {
        let error = crate::client::ClientError::Unreachable {
            path: "/tmp/x.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            with_causes(&error),
            "cannot connect to memesd at /tmp/x.sock: entity not found"
        );
    }

    #[test]
    fn a_stale_read_says_from_where_and_as_of_when() {
        let mut stale = Stale {
            from: "db2:5432".into(),
            as_of: Some("2026-12-07T06:49:58.31Z".into()),
            age_secs: Some(12.44),
        };
        assert_eq!(
            stale_note(&stale),
            "no primary could be reached: read from the standby at db2:5432, as of \
             2026-12-07T06:49:58.31Z (12.4 s before the read); later changes may be missing"
        );
        stale.as_of = None;
        stale.age_secs = None;
        assert!(
            stale_note(&stale).contains("db2:5432, which cannot tell how fresh it is"),
            "{}",
            stale_note(&stale)
        );
    }

    #[test]
    fn token_counts_read_naturally() {
        assert_eq!(tokens(1u64), "1 token");
        assert_eq!(tokens(-1i64), "-1 token");
        assert_eq!(tokens(149u64), "149 tokens");
    }
}

//! `memes admin-key new NAME`: a fresh random admin key for memesd's HTTP API, and the line
//! that lets memesd accept it (`--admin-keys FILE` holds one `name sha256hex` line per key;
//! never the key itself). Runs locally; no daemon is involved.

use super::exit::Exit;
use super::output;
use super::{Ctx, Failure};
use crate::credentials::new_admin_key;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct AdminKeyArgs {
    #[command(subcommand)]
    pub command: AdminKeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminKeyCommand {
    /// Make a new admin key: print the key (for whoever acts as admin) and the line to add to
    /// memesd's --admin-keys file
    New {
        /// The key's name: it goes into the ledger entries made with the key, so history says
        /// who topped up (letters, digits, `.`, `_`, `@`, `-`; at most 64)
        name: String,
    },
}

pub fn run(args: &AdminKeyArgs, ctx: &Ctx) -> Result<Exit, Failure> {
    let AdminKeyCommand::New { name } = &args.command;
    check_name(name).map_err(|why| Failure::new(Exit::Invalid, why))?;
    let (key, line) = new_admin_key(name);
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"name": name, "key": key, "line": line})
        );
        return Ok(Exit::Success);
    }
    let mut table = output::table();
    table.add_row(vec!["Key", &key]);
    table.add_row(vec!["Line", &line]);
    println!("{table}");
    eprintln!(
        "memes: give the key to whoever acts as {name} (it is shown once; memesd keeps only its hash), \
         add the line to memesd's --admin-keys file and run `memes reload` (or send memesd SIGHUP)"
    );
    Ok(Exit::Success)
}

/// A name the keys file can hold (one word) and the ledger can show as it is.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._@-".contains(c);
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} cannot name an admin key: use 1 to 64 letters, digits, `.`, `_`, `@` or `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_word() {
        assert!(check_name("ops").is_ok());
        assert!(check_name("billing.bot@example-1").is_ok());
        for bad in [
            "",
            "two words",
            "tab\there",
            "#comment",
            "ünïcode",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

//! `memes completions <shell>`: print a completion script. The committed scripts in
//! `completions/` are regenerated with `cargo run --bin memes -- completions <shell>` and
//! checked by a test.

use super::exit::Exit;
use super::{Cli, Failure};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> Result<Exit, Failure> {
    print!("{}", script(args.shell));
    Ok(Exit::Success)
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "memes", &mut out);
    String::from_utf8(out).expect("completion scripts are UTF-8")
}

//! `memes completions <shell>`: print a completion script. The committed scripts in
//! `completions/` are regenerated with `cargo run --bin memes -- completions <shell>` and
//! checked by a test.

use super::exit::Exit;
use super::{Cli, ColorChoice, Failure};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
    // The global options mean nothing here. Hidden arguments of the same names and types keep
    // clap from adding them to this command (so its help and completions do not offer them),
    // while a script that passes them anyway still works.
    #[arg(long, hide = true)]
    socket: Option<std::path::PathBuf>,
    #[arg(long, hide = true)]
    url: Option<String>,
    #[arg(long, hide = true)]
    json: bool,
    #[arg(long, hide = true, value_enum)]
    color: Option<ColorChoice>,
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

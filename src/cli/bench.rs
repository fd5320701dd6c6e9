//! `memes bench`: hands over to the `memes-bench` load generator, installed next to `memes`
//! (or on `PATH`), with the global options this command was given. The generator is a
//! binary of its own so that neither the library nor the daemon carries it.

use super::connect::sibling_program;
use super::exit::Exit;
use super::{Ctx, Failure};
use clap::Args;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// The load generator's own options (see `memes bench --help`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "OPTIONS"
    )]
    pub args: Vec<OsString>,
}

pub fn run(args: &BenchArgs, ctx: &Ctx) -> Result<Exit, Failure> {
    let program = sibling_program("memes-bench");
    let mut command = Command::new(&program);
    if let Some(socket) = &ctx.socket {
        command.arg("--socket").arg(socket);
    }
    if let Some(url) = &ctx.url {
        command.arg("--http").arg(url);
    }
    if ctx.json {
        command.arg("--json");
    }
    command.args(&args.args);
    // Only returns if the program could not be started.
    let error = command.exec();
    Err(Failure::new(
        Exit::Failure,
        format!("cannot run {}: {error}", program.display()),
    ))
}

//! memes: the command-line client of memesd. See `memes --help`.

fn main() -> std::process::ExitCode {
    memes::cli::main()
}

//! memesd as an operator runs it: a configuration file, the environment, systemd's
//! readiness notifications and socket activation, JSON logs with request ids, and commands
//! that stay quiet on a pipe.

use crate::harness::{Daemon, MEMESD, short_tempdir};
use std::process::{Command, Stdio};

/// `memesd ARGS` with no MEMES_* variables from the test's own environment.
fn memesd(args: &[&str]) -> Command {
    let mut command = Command::new(MEMESD);
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MEMES_") {
            command.env_remove(name);
        }
    }
    command
}

#[test]
fn a_configuration_file_sets_what_flags_and_the_environment_do_not() {
    let dir = short_tempdir();
    let config = dir.path().join("memesd.toml");
    std::fs::write(
        &config,
        "welcome-tokens = 7\nmeme-cost = 2\nidle-timeout = \"5m\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let daemon = Daemon::start_with(&["--config", config, "--meme-cost", "3"]);
    let got = daemon.memes_json(&["get", "--user", "u1", "--query", "cats"]);
    assert_eq!(
        (got["charged"].as_u64(), got["balance"].as_u64()),
        (Some(3), Some(4))
    );

    // Where each setting came from: flag > environment > file > default.
    let output = memesd(&["--config", config, "--meme-cost", "3", "--print-config"])
        .env("MEMES_GENERATE_COST", "9")
        .env("MEMES_WELCOME_TOKENS", "8")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8(output.stdout).unwrap();
    let line = |key: &str| {
        report
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{report}"))
            .to_string()
    };
    assert!(line("meme-cost").ends_with("# flag"), "{report}");
    assert!(
        line("welcome-tokens").starts_with("welcome-tokens = 8 "),
        "{report}"
    );
    assert!(
        line("welcome-tokens").ends_with("# env MEMES_WELCOME_TOKENS"),
        "{report}"
    );
    assert!(
        line("generate-cost").ends_with("# env MEMES_GENERATE_COST"),
        "{report}"
    );
    assert!(
        line("idle-timeout").ends_with(&format!("# file {config}")),
        "{report}"
    );
    assert!(line("max-connections").ends_with("# default"), "{report}");

    // MEMES_CONFIG names the file too; an unknown key stops memesd naming key and file.
    std::fs::write(dir.path().join("bad.toml"), "welcome-token = 7\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let output = memesd(&["--print-config"])
        .env("MEMES_CONFIG", &bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key `welcome-token`"), "{stderr}");
    assert!(stderr.contains("did you mean `welcome-tokens`"), "{stderr}");
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
}

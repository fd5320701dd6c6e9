//! The `memes` command line: output modes, argument forms, exit codes.

use crate::harness::{Daemon, run_memes, short_tempdir};

#[test]
fn human_output_is_a_table_and_json_is_one_document() {
    let daemon = Daemon::start();
    let human = daemon.memes(&["get", "--user", "u1", "--query", "cat"]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("Balance") && human.stdout.contains("149 tokens"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("https://"), "{}", human.stdout);
    let json = daemon.memes(&["--json", "balance", "--user", "u1"]);
    assert_eq!(
        json.json(),
        serde_json::json!({"user_id": "u1", "balance": 149, "tier": "free"})
    );
    assert_eq!(json.stdout.lines().count(), 1);
    let status = daemon.memes(&["status"]);
    assert!(status.stdout.contains("Accounts"), "{}", status.stdout);
}

#[test]
fn negative_numbers_work_spaced_and_with_equals() {
    let daemon = Daemon::start();
    for args in [
        ["get", "--user", "u1", "--lat", "40", "--long", "-73"],
        [
            "get",
            "--user",
            "u1",
            "--lat=-33.9",
            "--long=151.2",
            "--query",
            "cat",
        ],
    ] {
        let run = daemon.memes(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        daemon.memes_json(&["topup", "--user", "u1", "--amount", "-20"])["new_balance"],
        128
    );
    assert_eq!(
        daemon.memes_json(&["topup", "--user", "u1", "--amount=-8"])["new_balance"],
        120
    );
    assert_eq!(
        daemon.memes_json(&["topup", "--user", "u1", "--amount", "8"])["new_balance"],
        128
    );
}

#[test]
fn invalid_input_fails_fast_with_exit_2() {
    let dir = short_tempdir();
    let socket = dir.path().join("absent.sock");
    // Checked before connecting: no daemon is needed to refuse these.
    for args in [
        vec!["get", "--user", "u1", "--lat", "91", "--long", "0"],
        vec!["get", "--user", "u1", "--lat", "10"],
        vec!["get", "--user", ""],
        vec!["topup", "--user", "u1", "--amount", "0"],
        vec!["topup", "--user", "u1", "--amount", "lots"],
        vec!["get", "--user", "u1", "--count", "11"],
        vec!["frobnicate"],
    ] {
        let run = run_memes(Some(&socket), &args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let run = run_memes(None, &["--help"], &[]);
    assert_eq!(run.code, 0);
    for code in [
        "3  memesd is unreachable",
        "4  insufficient tokens",
        "7  conflict",
    ] {
        assert!(run.stdout.contains(code), "{}", run.stdout);
    }
}

#[test]
fn the_committed_completions_are_current() {
    for (shell, file) in [
        (clap_complete::Shell::Bash, "memes.bash"),
        (clap_complete::Shell::Zsh, "_memes"),
        (clap_complete::Shell::Fish, "memes.fish"),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("completions")
            .join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == memes::cli::completions::script(shell),
            "{} is stale; regenerate with `cargo run --bin memes -- completions {shell} > completions/{file}`",
            path.display()
        );
    }
}

#[test]
fn the_first_run_starts_a_daemon_on_the_default_socket() {
    let home = short_tempdir();
    let share = home.path().join("share");
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("XDG_RUNTIME_DIR", home.path().to_str().unwrap()),
        ("XDG_DATA_HOME", share.to_str().unwrap()),
        ("MEMES_NO_AUTOSTART", "0"),
    ];
    let run = run_memes(
        None,
        &["--json", "get", "--user", "first", "--query", "cat"],
        &env,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("started memesd"), "{}", run.stderr);
    assert_eq!(run.json()["balance"], 149);
    let again = run_memes(None, &["--json", "balance", "--user", "first"], &env);
    assert_eq!(again.json()["balance"], 149);
    assert!(
        !again.stderr.contains("started memesd"),
        "one daemon serves both calls"
    );
    let socket = home.path().join("memes/memesd.sock");
    assert!(socket.exists());
    stop_autostarted(&socket);
}

/// Stops the daemon that `memes` autostarted on this socket, if any, even when a test fails.
struct StopOnDrop(std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // Never panics (a panic while unwinding aborts the test binary).
        let Ok(conn) = std::os::unix::net::UnixStream::connect(&self.0) else {
            return;
        };
        let sockopt = nix::sys::socket::sockopt::PeerCredentials;
        if let Ok(creds) = nix::sys::socket::getsockopt(&conn, sockopt) {
            let pid = nix::unistd::Pid::from_raw(creds.pid());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.0.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Stops a daemon that `memes` started: found as the socket's peer, sent SIGTERM, waited for.
fn stop_autostarted(socket: &std::path::Path) {
    let conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    let creds =
        nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(creds.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the autostarted daemon did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn bench_runs_end_to_end_with_zero_errors() {
    let daemon = Daemon::start();
    for args in [
        vec![
            "bench",
            "--prepare",
            "--users",
            "50",
            "-n",
            "2000",
            "-c",
            "4",
            "-d",
            "8",
        ],
        vec![
            "bench", "--op", "mixed", "--users", "50", "-n", "1000", "-c", "2",
        ],
        vec![
            "bench",
            "--rate",
            "500",
            "--duration",
            "1",
            "-c",
            "3",
            "--users",
            "50",
        ],
    ] {
        let mut all = vec!["--json"];
        all.extend(&args);
        let run = daemon.memes(&all);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        let report = run.json();
        assert_eq!(report["error_total"], 0, "{report}");
        assert!(report["requests"].as_u64().unwrap() >= 500, "{report}");
        for quantile in ["p50", "p90", "p99", "p999", "max"] {
            assert!(
                report["latency_ms"][quantile].as_f64().unwrap() > 0.0,
                "{report}"
            );
        }
    }
    // A missed threshold is a non-zero exit, for deployment pipelines.
    let strict = daemon.memes(&[
        "bench",
        "-n",
        "200",
        "-c",
        "2",
        "--users",
        "50",
        "--min-rps",
        "100000000",
    ]);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    assert!(
        strict.stderr.contains("threshold missed"),
        "{}",
        strict.stderr
    );
    let human = daemon.memes(&["bench", "-n", "200", "-c", "2", "--users", "50"]);
    assert!(
        human.stdout.contains("p99.9") && human.stdout.contains("requests/s"),
        "{}",
        human.stdout
    );
}

#[test]
fn status_exits_9_while_the_ledger_is_not_writable() {
    let Some((daemon, _mount)) = crate::mounts::daemon_on_a_full_disk(&[]) else {
        return;
    };
    let human = daemon.memes(&["status"]);
    assert_eq!(human.code, 9, "{}\n{}", human.stdout, human.stderr);
    assert!(human.stdout.contains("NOT writable"), "{}", human.stdout);
    assert!(human.stderr.contains("not writable"), "{}", human.stderr);
    let json = daemon.memes(&["--json", "status"]);
    assert_eq!(json.code, 9, "{}", json.stderr);
    let data = json.json();
    assert_eq!(data["writable"], false, "{data}");
    assert_eq!(data["accounts"], 1, "{data}");
    let help = run_memes(None, &["--help"], &[]);
    assert!(help.stdout.contains("9  degraded"), "{}", help.stdout);
}

#[test]
fn memes_no_autostart_reads_yes_no_words_and_refuses_others() {
    let home = short_tempdir();
    let share = home.path().join("share");
    let env = |value: &'static str| {
        [
            ("HOME", home.path().to_str().unwrap().to_string()),
            ("XDG_RUNTIME_DIR", home.path().to_str().unwrap().to_string()),
            ("XDG_DATA_HOME", share.to_str().unwrap().to_string()),
            ("MEMES_NO_AUTOSTART", value.to_string()),
        ]
    };
    for value in ["1", "yes", "YES", "true", "On"] {
        let env = env(value);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = run_memes(None, &["status"], &env);
        assert_eq!(run.code, 3, "{value}: {}", run.stderr);
        assert!(
            !run.stderr.contains("started memesd"),
            "{value}: {}",
            run.stderr
        );
        assert!(!home.path().join("memes/memesd.sock").exists(), "{value}");
    }
    for value in ["maybe", "2", "nein"] {
        let env = env(value);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = run_memes(None, &["status"], &env);
        assert_eq!(run.code, 2, "{value}: {}", run.stderr);
        assert!(
            run.stderr.contains("MEMES_NO_AUTOSTART") && run.stderr.contains(value),
            "{value}: {}",
            run.stderr
        );
    }
}

#[test]
fn the_autostart_logs_into_the_data_directory_memesd_uses() {
    let home = short_tempdir();
    let share = home.path().join("share");
    let data = home.path().join("elsewhere");
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("XDG_RUNTIME_DIR", home.path().to_str().unwrap()),
        ("XDG_DATA_HOME", share.to_str().unwrap()),
        ("MEMES_DATA_DIR", data.to_str().unwrap()),
        ("MEMES_NO_AUTOSTART", "0"),
    ];
    let socket = home.path().join("memes/memesd.sock");
    let stopper = StopOnDrop(socket.clone());
    let run = run_memes(None, &["--json", "balance", "--user", "nobody"], &env);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let log = data.join("memesd.log");
    assert!(
        run.stderr.contains(&format!("log {})", log.display())),
        "{}",
        run.stderr
    );
    drop(stopper);
    assert!(data.join("journal.ndjson").exists(), "the ledger is there");
    // The last line is written after the socket is gone (the log is written off the
    // daemon's threads): wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut logged = std::fs::read_to_string(&log).unwrap();
    while !logged.contains("memesd stopped cleanly") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        logged = std::fs::read_to_string(&log).unwrap();
    }
    assert!(logged.contains("memesd stopped cleanly"), "{logged}");
    assert!(
        !share.join("memes").exists(),
        "nothing in the default data directory"
    );
}

#[test]
fn a_refused_deduction_gets_a_hint_about_deductions() {
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1", "--query", "cat"]);
    let run = daemon.memes(&["topup", "--user", "u1", "--amount", "-1000"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("deduct at most") && run.stderr.contains("memes balance --user u1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("add tokens"), "{}", run.stderr);
    // A get that cannot be paid for still points at top-ups.
    daemon.memes_json(&["topup", "--user", "u1", "--amount", "-149"]);
    let run = daemon.memes(&["get", "--user", "u1"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("memes topup --user u1 --amount N"),
        "{}",
        run.stderr
    );
}

#[test]
fn json_failures_print_one_error_object_on_stdout() {
    let daemon = Daemon::start();
    let dir = short_tempdir();
    let absent = dir.path().join("absent.sock");
    let live = Some(daemon.socket.as_path());
    for (socket, args, code, exit) in [
        (live, vec!["balance", "--user", "nobody"], "not_found", 5),
        (live, vec!["get", "--user", ""], "invalid_argument", 2),
        (
            live,
            vec!["get", "--user", "u1", "--count", "lots"],
            "invalid_argument",
            2,
        ),
        (live, vec!["frobnicate"], "invalid_argument", 2),
        (Some(absent.as_path()), vec!["status"], "unreachable", 3),
    ] {
        let mut all = vec!["--json"];
        all.extend(&args);
        let run = run_memes(socket, &all, &[]);
        assert_eq!(run.code, exit, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout.lines().count(), 1, "{args:?}: {:?}", run.stdout);
        let json = run.json();
        assert_eq!(json["error"]["code"], code, "{args:?}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.starts_with("error:"),
            "{json}"
        );
        // Without --json, stdout stays empty.
        let run = run_memes(socket, &args, &[]);
        assert_eq!(run.stdout, "", "{args:?}");
    }
    // `--json` after the subcommand counts too.
    let run = daemon.memes(&["balance", "--user", "nobody", "--json"]);
    assert_eq!(run.json()["error"]["code"], "not_found");
}

/// A premium user `u1` on a fresh daemon, and their balance.
fn premium_daemon() -> (Daemon, u64) {
    let daemon = Daemon::start();
    daemon.memes_json(&["entitle", "--user", "u1", "--tier", "premium"]);
    daemon.memes_json(&["get", "--user", "u1"]);
    let balance = daemon.balance("u1").unwrap();
    (daemon, balance)
}

#[test]
fn generate_out_refuses_an_unwritable_path_before_charging() {
    let (daemon, balance) = premium_daemon();
    for (out, why) in [
        (
            "/nonexistent/dir/x.png".to_string(),
            "No such file or directory",
        ),
        (daemon.dir.path().display().to_string(), "is a directory"),
    ] {
        let args = [
            "get",
            "--user",
            "u1",
            "--generate",
            "--query",
            "cats",
            "--out",
            &out,
        ];
        let run = daemon.memes(&args);
        assert_eq!(run.code, 2, "{out}: {}", run.stderr);
        assert!(
            run.stderr.contains(&out) && run.stderr.contains(why),
            "{out}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was charged"), "{}", run.stderr);
        assert_eq!(
            daemon.balance("u1"),
            Some(balance),
            "{out}: nothing charged"
        );
    }
}

#[test]
fn generate_out_that_fails_to_write_says_how_to_get_the_image_again_for_free() {
    let (daemon, balance) = premium_daemon();
    // Room for a new file, not for the image (about 40 kB).
    let full = match crate::mounts::tmpfs(&daemon.dir.path().join("full"), "size=4k") {
        Ok(mount) => mount,
        Err(why) => {
            crate::harness::cannot_run_here(&format!(
                "mounting a small tmpfs is not permitted here ({why})"
            ));
            return;
        }
    };
    let out = full.path().join("meme.png");
    let args = [
        "get",
        "--user",
        "u1",
        "--generate",
        "--query",
        "cats",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = daemon.memes(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("No space left"), "{}", run.stderr);
    let charged = daemon.balance("u1").unwrap();
    assert_eq!(charged, balance - 5, "the image was charged");
    assert!(!out.exists(), "no partial file");
    // The hint is a command to paste: the same request, its key, another file.
    let hint = run
        .stderr
        .lines()
        .find_map(|line| line.strip_prefix("memes: hint: "))
        .unwrap_or_else(|| panic!("no hint: {}", run.stderr));
    let command = hint.split('`').nth(1).unwrap_or_else(|| panic!("{hint}"));
    let words = shlex::split(command).unwrap();
    assert_eq!(words[0], "memes", "{command}");
    assert!(
        words.contains(&"--idempotency-key".to_string()),
        "{command}"
    );
    let other = daemon.dir.path().join("other.png");
    let words: Vec<String> = words[1..]
        .iter()
        .map(|word| match word.as_str() {
            "OTHER.png" => other.display().to_string(),
            _ => word.clone(),
        })
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let replay = run_memes(None, &words, &[]);
    assert_eq!(replay.code, 0, "{command}: {}", replay.stderr);
    assert_eq!(daemon.balance("u1"), Some(charged), "the replay is free");
    let png = std::fs::read(&other).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    // With --json the key is in the hint too, for scripts.
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let run = daemon.memes(&json_args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = run.json()["error"].clone();
    assert_eq!(error["code"], "write_failed", "{error}");
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("--idempotency-key"),
        "{error}"
    );
}

#[test]
fn bench_errors_fail_the_run_unless_allowed_and_throughput_counts_successes() {
    let daemon = Daemon::start();
    // One user with 150 welcome tokens: 150 gets succeed, the other 250 are refused.
    let base = [
        "--json",
        "bench",
        "--user-prefix",
        "e-",
        "--users",
        "1",
        "-c",
        "1",
    ];
    let mut args = base.to_vec();
    args.extend(["-n", "400"]);
    let run = daemon.memes(&args);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("250 errors"), "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["requests"], 400, "{report}");
    assert_eq!(report["succeeded"], 150, "{report}");
    assert_eq!(report["error_total"], 250, "{report}");
    assert_eq!(report["errors"]["insufficient_tokens"], 250, "{report}");
    let rps = report["rps"].as_f64().unwrap();
    let secs = report["secs"].as_f64().unwrap();
    assert!(
        (rps * secs - 150.0).abs() < 1.0,
        "rps counts successes: {report}"
    );
    // Allowed errors: exit 0.
    let mut args = base.to_vec();
    args.extend(["-n", "50", "--max-errors", "50"]);
    let run = daemon.memes(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["error_total"], 50);
    let mut args = base.to_vec();
    args.extend(["-n", "50", "--max-errors", "49"]);
    assert_eq!(daemon.memes(&args).code, 1);
}

#[test]
fn bench_never_starts_a_daemon_nor_opens_accounts_in_a_live_ledger() {
    // No daemon on the default socket, autostart left on: bench says so and starts none.
    let home = short_tempdir();
    let share = home.path().join("share");
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("XDG_RUNTIME_DIR", home.path().to_str().unwrap()),
        ("XDG_DATA_HOME", share.to_str().unwrap()),
        ("MEMES_NO_AUTOSTART", "0"),
    ];
    let socket = home.path().join("memes/memesd.sock");
    let _stop = StopOnDrop(socket.clone());
    let run = run_memes(None, &["bench", "-n", "1", "-c", "1"], &env);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(!run.stderr.contains("started memesd"), "{}", run.stderr);
    assert!(
        !socket.exists() && !share.join("memes").exists(),
        "no daemon, no ledger"
    );

    // A ledger with somebody's accounts and none of the bench's: refused, nothing opened.
    let daemon = Daemon::start();
    daemon.memes_json(&["get", "--user", "u1"]);
    let bench = ["bench", "-n", "5", "-c", "1", "--users", "3"];
    let run = daemon.memes(&bench);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("1 accounts") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(daemon.memes_json(&["status"])["accounts"], 1);
    // Reads write nothing: allowed.
    let reads = daemon.memes(&[
        "bench",
        "-n",
        "5",
        "-c",
        "1",
        "--op",
        "balance",
        "--max-errors",
        "5",
    ]);
    assert_eq!(reads.code, 0, "{}", reads.stderr);
    // Told explicitly: it writes there.
    let mut forced = bench.to_vec();
    forced.push("--force");
    let run = daemon.memes(&forced);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(daemon.memes_json(&["status"])["accounts"], 4);
    // Now bench-0 has an account: the ledger is the bench's too, and runs go on.
    assert_eq!(daemon.memes(&bench).code, 0);
}

#[test]
fn bench_prepare_refuses_a_ledger_with_accounts_unless_forced() {
    let daemon = Daemon::start();
    let prepare = ["bench", "--prepare", "--users", "5", "-n", "10", "-c", "1"];
    // An empty ledger: prepared, with a word that the accounts stay.
    let run = daemon.memes(&prepare);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("permanent"), "{}", run.stderr);
    assert_eq!(daemon.memes_json(&["status"])["accounts"], 5);
    // Now it holds accounts: refused, nothing added.
    daemon.memes_json(&["get", "--user", "u1"]);
    let run = daemon.memes(&prepare);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("6 accounts") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    let mut others = prepare.to_vec();
    others.extend(["--user-prefix", "other-"]);
    assert_eq!(daemon.memes(&others).code, 2);
    assert_eq!(daemon.memes_json(&["status"])["accounts"], 6);
    // Forced: prepared, and told again that these accounts stay.
    others.push("--force");
    let run = daemon.memes(&others);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("permanent"), "{}", run.stderr);
    assert_eq!(daemon.memes_json(&["status"])["accounts"], 11);
}

#[test]
fn help_texts_read_right() {
    let help = |args: &[&str]| {
        let run = run_memes(None, args, &[]);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        run.stdout
    };
    // `{seq}` is a placeholder, not clap's line break.
    let bench = help(&["bench", "--help"]);
    assert!(bench.contains("`{seq}`"), "{bench}");
    assert!(
        !bench.contains("`\n"),
        "a placeholder became a line break: {bench}"
    );
    // Every option says what it is for.
    for command in ["get", "topup", "balance", "history", "entitle"] {
        let text = help(&[command, "--help"]);
        let user = text.lines().find(|l| l.contains("--user <USER>")).unwrap();
        assert!(user.trim() != "--user <USER>", "{command}: {text}");
    }
    let entitle = help(&["entitle", "--help"]);
    let tier = entitle
        .lines()
        .find(|l| l.contains("--tier <TIER>"))
        .unwrap();
    assert!(tier.trim() != "--tier <TIER>", "{entitle}");
    // Global options under their own heading, after the command's own.
    let balance = help(&["balance", "--help"]);
    let own = balance.find("--user").unwrap();
    let heading = balance
        .find("Global options:")
        .unwrap_or_else(|| panic!("{balance}"));
    assert!(
        own < heading && heading < balance.find("--socket").unwrap(),
        "{balance}"
    );
    // --color says what it colours.
    assert!(balance.contains("error and warning labels"), "{balance}");
    // completions takes no global option, and its help lists none.
    let completions = help(&["completions", "--help"]);
    for global in ["--socket", "--json", "--color"] {
        assert!(!completions.contains(global), "{completions}");
    }
    // A mistyped coordinate is refused as a number, not read as a flag.
    for (flag, value) in [("--long", "-73.5.5"), ("--lat", "-4o")] {
        let args = ["get", "--user", "u", "--lat", "40", "--long", "-73"];
        let mut args: Vec<&str> = args.to_vec();
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = value;
        let run = run_memes(None, &args, &[]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("invalid value '{value}' for '{flag}")),
            "{}",
            run.stderr
        );
    }
    // Counts below 1 are refused in words, not with the type's whole range.
    for value in ["0", "-1"] {
        let run = run_memes(None, &["history", "--user", "u", "--limit", value], &[]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("must be 1 or more")
                && !run.stderr.contains("18446744073709551615"),
            "{}",
            run.stderr
        );
    }
    // A negative count is read as a number and refused with its range.
    let run = run_memes(None, &["get", "--user", "u", "--count", "-1"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("1..=10") && !run.stderr.contains("unexpected argument"),
        "{}",
        run.stderr
    );
}

#[test]
fn bench_lists_its_own_options_in_help_and_completions() {
    let help = run_memes(None, &["bench", "--help"], &[]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    for option in [
        "--conns",
        "--requests",
        "--duration",
        "--prepare",
        "--max-p99",
    ] {
        assert!(help.stdout.contains(option), "{option}: {}", help.stdout);
    }
    let own = help.stdout.find("--conns").unwrap();
    let heading = help
        .stdout
        .find("Global options:")
        .unwrap_or_else(|| panic!("{}", help.stdout));
    assert!(own < heading, "{}", help.stdout);
    for shell in ["bash", "zsh", "fish"] {
        let script = run_memes(None, &["completions", shell], &[]).stdout;
        for option in ["conns", "requests", "prepare", "max-errors"] {
            assert!(script.contains(option), "{shell} lacks --{option}");
        }
    }
}

#[test]
fn bench_forwards_every_form_of_its_options() {
    let daemon = Daemon::start();
    // Spaced, `=`, short and a negative number: each reaches the generator as given.
    let run = daemon.memes(&[
        "--json",
        "bench",
        "--requests=20",
        "-c",
        "2",
        "--users",
        "5",
        "--max-errors=0",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["requests"], 20);
    assert_eq!(run.json()["conns"], 2);
    let run = daemon.memes(&["bench", "--min-rps", "-5", "--users", "5"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--min-rps"), "{}", run.stderr);
}

#[test]
fn ctrl_c_ends_a_bench_run_with_a_partial_report() {
    let daemon = Daemon::start();
    interrupt_bench(
        &daemon,
        &[],
        &["--duration", "60", "-c", "2", "--users", "1000"],
    );
}

/// The open loop (`--rate`) stops its clock on Ctrl-C, reads the replies to what it sent and
/// reports them, marked partial, as the closed loop does (it used to die with no report).
#[test]
fn ctrl_c_ends_an_open_loop_bench_run_with_a_partial_report() {
    let open_loop = [
        "--rate",
        "200",
        "--duration",
        "60",
        "-c",
        "2",
        "--users",
        "1000",
    ];
    let daemon = Daemon::start();
    let report = interrupt_bench(&daemon, &[], &open_loop);
    assert_eq!(report["mode"], "open", "{report}");
    // Over HTTP too (another reader, reading whole responses).
    let daemon = Daemon::start_http(&[]);
    let url = daemon.http_url();
    let report = interrupt_bench(&daemon, &["--url", &url], &open_loop);
    assert_eq!(report["mode"], "open", "{report}");
    assert_eq!(report["op"], "http get", "{report}");
}

/// Runs `memes --json GLOBAL bench ARGS` against `daemon`, sends it SIGINT once it has been
/// charging for a while, and checks the partial report it prints; returns that report.
fn interrupt_bench(daemon: &Daemon, global: &[&str], args: &[&str]) -> serde_json::Value {
    let bench = std::process::Command::new(crate::harness::MEMES)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(global)
        .args(["--json", "bench"])
        .args(args)
        .env("MEMES_NO_AUTOSTART", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Measuring once memesd has charged for memes (the handler is in place by then).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while daemon.memes_json(&["status"])["entries"].as_u64().unwrap() < 10 {
        assert!(std::time::Instant::now() < deadline, "bench never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bench.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = bench.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["partial"], true, "{report}");
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert!(report["secs"].as_f64().unwrap() < 60.0, "{report}");
    assert_eq!(report["error_total"], 0, "{report}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // Every request the bench counts was answered and charged (a `get` is one entry, beside
    // each new account's welcome grant): none sent and left unread, none counted unsent.
    let status = daemon.memes_json(&["status"]);
    let charges = status["entries"].as_u64().unwrap() - status["accounts"].as_u64().unwrap();
    assert_eq!(report["requests"].as_u64().unwrap(), charges, "{report}");
    report
}

#[test]
fn bench_numbers_are_checked_as_they_are_parsed() {
    let daemon = Daemon::start();
    for (flag, value) in [
        ("--duration", "nan"),
        ("--duration", "-1"),
        ("--duration", "0"),
        ("--rate", "0"),
        ("--rate", "inf"),
        ("--max-p99", "nan"),
        ("--min-rps", "-5"),
        ("--conns", "0"),
        ("--users", "0"),
    ] {
        let run = daemon.memes(&["bench", flag, value, "--users", "5"]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(run.stderr.contains(flag), "{flag} {value}: {}", run.stderr);
    }
    // Durations: plain seconds, or with a unit.
    for duration in ["0.2", "200ms"] {
        let run = daemon.memes(&[
            "--json",
            "bench",
            "--duration",
            duration,
            "-c",
            "1",
            "--users",
            "5",
        ]);
        assert_eq!(run.code, 0, "{duration}: {}", run.stderr);
        assert!(run.json()["secs"].as_f64().unwrap() < 5.0);
    }
}

#[test]
fn the_committed_man_pages_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = memes::man_pages::pages();
    for (name, roff) in &pages {
        let committed = std::fs::read(dir.join(name)).unwrap_or_default();
        assert!(
            &committed == roff,
            "man/{name} is stale; regenerate with `cargo run --example man-pages`"
        );
    }
    let mut names: Vec<String> = pages.into_iter().map(|(name, _)| name).collect();
    names.sort();
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    assert_eq!(
        committed, names,
        "man/ holds pages no command has; remove them"
    );
}

/// Every `name(section)` a page mentions, hyphens unescaped and fonts dropped.
fn page_references(roff: &str) -> Vec<String> {
    let plain = roff
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    let bytes = plain.as_bytes();
    let mut found = Vec::new();
    for (at, window) in bytes.windows(3).enumerate() {
        if window[0] != b'(' || !window[1].is_ascii_digit() || window[2] != b')' {
            continue;
        }
        let start = plain[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(0, |i| i + 1);
        if start < at {
            found.push(plain[start..at + 3].to_string());
        }
    }
    found
}

#[test]
fn every_man_page_passes_man_and_names_only_pages_that_exist() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = memes::man_pages::pages();
    let existing: Vec<String> = pages
        .iter()
        .map(|(name, _)| {
            let (stem, section) = name.rsplit_once('.').unwrap();
            format!("{stem}({section})")
        })
        .collect();
    for (name, roff) in &pages {
        let roff = String::from_utf8(roff.clone()).unwrap();
        let references = page_references(&roff);
        assert!(!references.is_empty(), "{name} names no other page");
        for reference in references {
            assert!(
                existing.contains(&reference),
                "man/{name} refers to {reference}, which is not a page: {existing:?}"
            );
        }
        // man's own check (groff's warnings), on the committed file as installed.
        let checked = std::process::Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.join(name))
            .env("MANWIDTH", "80")
            .output()
            .expect("man (Debian's man-db, installed by scripts/install-test-deps.sh)");
        let warnings = String::from_utf8_lossy(&checked.stderr);
        assert!(
            checked.status.success() && warnings.trim().is_empty(),
            "man --warnings {name}: {warnings}"
        );
    }
}

//! memesd's settings from four places, in order of precedence: a flag, then the environment
//! (`MEMES_*`), then the configuration file (`--config FILE`, TOML), then the default. This
//! module owns that layering and `--print-config`; [`super::config`] owns the flags themselves
//! and their value parsers.
//!
//! Every option of [`DaemonArgs`] is all three at once, by rule rather than by hand, so a new
//! flag cannot forget one of them: the file key is the long flag without its dashes
//! (`welcome-tokens = 150`), the environment variable is `MEMES_` and the flag in upper snake
//! case (`MEMES_WELCOME_TOKENS`). Options that take several values (`--admin-uid`) take an
//! array in the file and a comma-separated list in the environment.
//!
//! How: clap parses once as usual (so `--help`, `--version` and every flag and environment
//! error behave as before, and `--config` / `MEMES_CONFIG` is read the clap way). When that
//! names a file, each of its values is first checked with the option's own value parser (so a
//! bad value names the key and the file, not a flag nobody typed), then becomes the option's
//! default, and clap parses again. clap already ranks a flag over the environment over the
//! default, so the file slots in just above the default. Where each value came from is
//! clap's `value_source`, plus the list of keys the file set.
//!
//! It must not do anything but read: no socket, no data directory, no logging set up.

use super::config::{CONFIG_ENV, DaemonArgs};
use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Options that are not settings: they say where the settings are, or what to do with them.
const NOT_SETTINGS: [&str; 4] = ["config", "print-config", "help", "version"];

/// The settings memesd runs with, and where each came from.
#[derive(Debug)]
pub struct Settings {
    pub args: DaemonArgs,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Every setting, in `--help` order.
    pub origins: Vec<Setting>,
}

/// One setting: its key, its values as given, and their origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub values: Vec<String>,
    pub origin: Origin,
    /// A flag (true or false), printed as a TOML boolean.
    pub boolean: bool,
    /// Takes several values, printed as a TOML array.
    pub list: bool,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--flag` on the command line.
    Flag,
    /// This environment variable.
    Env(String),
    /// The configuration file.
    File(PathBuf),
    /// memesd's default.
    Default,
    /// Not set at all (an optional setting).
    Unset,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Flag => f.write_str("flag"),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Default => f.write_str("default"),
            Origin::Unset => f.write_str("not set"),
        }
    }
}

/// memesd's command line with an environment variable for every option that lacks one
/// (`MEMES_` + the long flag in upper snake case) and comma-separated lists in the
/// environment for options that take several values. Parse with this, and document with it
/// (help, man page), never with the bare `DaemonArgs::command()`.
pub fn command() -> clap::Command {
    let mut command = DaemonArgs::command();
    let settings: Vec<(clap::Id, String, bool, bool, bool)> = command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            (!NOT_SETTINGS[1..].contains(&long)).then(|| {
                (
                    arg.get_id().clone(),
                    env_name(long),
                    arg.get_env().is_none(),
                    matches!(arg.get_action(), ArgAction::Append),
                    matches!(arg.get_action(), ArgAction::SetTrue),
                )
            })
        })
        .collect();
    for (id, env, needs_env, many, boolean) in settings {
        command = command.mut_arg(id, |mut arg| {
            if needs_env {
                arg = arg.env(env);
            }
            if many {
                arg = arg.value_delimiter(',');
            }
            if boolean {
                // `MEMES_HTTP_INSECURE_USER_BEARER=1` as well as `=true`.
                arg = arg.value_parser(BoolishValueParser::new());
            }
            arg
        });
    }
    command
}

/// The environment variable of the option with this long flag.
pub fn env_name(long: &str) -> String {
    format!("MEMES_{}", long.replace('-', "_").to_ascii_uppercase())
}

/// Reads the command line of this process, the environment and the configuration file.
pub fn load() -> Result<Settings, clap::Error> {
    load_from(std::env::args_os())
}

/// [`load`] for this command line.
pub fn load_from<I, T>(argv: I) -> Result<Settings, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let command = command();
    let first = command.clone().try_get_matches_from(&argv)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        return settings(&command, first, None, &BTreeSet::new());
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        command.clone().error(
            ErrorKind::Io,
            format!(
                "cannot read the configuration file {}: {error}",
                path.display()
            ),
        )
    })?;
    let values = read_file(&command, &path, &text)?;
    let mut layered = command.clone();
    let mut from_file = BTreeSet::new();
    for (key, values) in values {
        let id = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()))
            .expect("read_file returns known keys only")
            .get_id()
            .clone();
        layered = layered.mut_arg(id, |arg| arg.default_values(values));
        from_file.insert(key);
    }
    let matches = layered.clone().try_get_matches_from(&argv)?;
    settings(&layered, matches, Some(path), &from_file)
}

/// The file's settings as values for the command line, each already checked by its option's
/// value parser.
fn read_file(
    command: &clap::Command,
    path: &Path,
    text: &str,
) -> Result<Vec<(String, Vec<String>)>, clap::Error> {
    let refuse = |message: String| {
        command.clone().error(
            ErrorKind::InvalidValue,
            format!("{}: {message}", path.display()),
        )
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| refuse(format!("not valid TOML: {error}")))?;
    // A `[memesd]` table, as files shared with other programs have, reads like the top level.
    if let Some(toml::Value::Table(section)) = table.remove("memesd") {
        for (key, value) in section {
            if table.contains_key(&key) {
                return Err(refuse(format!(
                    "`{key}` is set both at the top level and in [memesd]"
                )));
            }
            table.insert(key, value);
        }
    }
    let keys: Vec<&str> = command
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .filter(|long| !NOT_SETTINGS.contains(long))
        .collect();
    let mut settings = Vec::new();
    for (key, value) in &table {
        if value.is_table() {
            return Err(refuse(format!(
                "[{key}] is a table; memesd reads its keys at the top level (or in a [memesd] table)"
            )));
        }
        let Some(arg) = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key) && !NOT_SETTINGS.contains(&key.as_str()))
        else {
            return Err(refuse(unknown_key(key, &keys)));
        };
        let boolean = matches!(arg.get_action(), ArgAction::SetTrue);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let values = match (value, boolean, many) {
            (toml::Value::Boolean(flag), true, _) => vec![flag.to_string()],
            (_, true, _) => return Err(refuse(format!("`{key}` is true or false"))),
            (toml::Value::Array(items), false, true) => items
                .iter()
                .map(|item| scalar(item).ok_or(()))
                .collect::<Result<_, _>>()
                .map_err(|()| {
                    refuse(format!(
                        "`{key}` is a list of strings, like {key} = [\"a\", \"b\"]"
                    ))
                })?,
            // TOML has read `0o660` as the number 432: give the mode as it was written.
            (toml::Value::Integer(number), false, _) if written_in_octal(text, key) => {
                vec![format!("{number:o}")]
            }
            (value, false, _) => vec![scalar(value).ok_or_else(|| {
                refuse(match many {
                    true => format!("`{key}` is a string or a list of strings"),
                    false => format!("`{key}` takes one value (a string or a number)"),
                })
            })?],
        };
        // A flag's value is a TOML boolean, checked above; a flag takes none after it.
        for value in values.iter().filter(|_| !boolean) {
            check_value(command, arg, value).map_err(|reason| {
                refuse(format!("invalid value {value:?} for `{key}`: {reason}"))
            })?;
        }
        settings.push((key.clone(), values));
    }
    Ok(settings)
}

/// Whether the file writes `key`'s value as an octal integer (`socket-mode = 0o660`).
fn written_in_octal(text: &str, key: &str) -> bool {
    text.lines().any(|line| {
        line.trim_start()
            .strip_prefix(key)
            .and_then(|rest| rest.trim_start().strip_prefix('='))
            .is_some_and(|value| value.trim_start().starts_with("0o"))
    })
}

/// A file value as it would be typed after the flag.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Runs `value` through the option's own value parser, as if typed after the flag; the
/// reason it was refused.
fn check_value(command: &clap::Command, arg: &clap::Arg, value: &str) -> Result<(), String> {
    let long = arg.get_long().expect("settings have long flags");
    // The whole command rather than the option alone, so that its relations to other
    // options (conflicts, requirements) stay well-formed; one value, no delimiter.
    let id = arg.get_id().clone();
    let probe = command
        .clone()
        .mut_arg(id, |arg| arg.value_delimiter(None::<char>));
    let Err(error) = probe.try_get_matches_from([
        OsString::from("memesd"),
        OsString::from(format!("--{long}={value}")),
    ]) else {
        return Ok(());
    };
    if let Some(source) = std::error::Error::source(&error) {
        return Err(source.to_string());
    }
    if let Some(ContextValue::Strings(valid)) = error.get(ContextKind::ValidValue) {
        return Err(format!("possible values: {}", valid.join(", ")));
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    Err(first.trim_start_matches("error: ").to_string())
}

/// The message for a key no option has, with the nearest key when one is close.
fn unknown_key(key: &str, keys: &[&str]) -> String {
    let mut message = format!("unknown key `{key}`");
    if NOT_SETTINGS.contains(&key) {
        message.push_str(" (it is a command-line option only)");
        return message;
    }
    let nearest = keys
        .iter()
        .map(|candidate| (strsim::jaro_winkler(key, candidate), *candidate))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(similarity, _)| *similarity >= 0.8);
    if let Some((_, candidate)) = nearest {
        let _ = write!(message, "; did you mean `{candidate}`?");
    } else {
        message.push_str("; the keys are memesd's long flags without the dashes (memesd --help)");
    }
    message
}

/// The settings parsed from `matches`, and where each came from.
fn settings(
    command: &clap::Command,
    matches: ArgMatches,
    file: Option<PathBuf>,
    from_file: &BTreeSet<String>,
) -> Result<Settings, clap::Error> {
    let origins = command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if NOT_SETTINGS.contains(&long) {
                return None;
            }
            let id = arg.get_id().as_str();
            let origin = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Origin::Flag,
                Some(ValueSource::EnvVariable) => Origin::Env(
                    arg.get_env()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                Some(ValueSource::DefaultValue) if from_file.contains(long) => {
                    Origin::File(file.clone().unwrap_or_default())
                }
                Some(_) => Origin::Default,
                None => Origin::Unset,
            };
            let values = matches
                .get_raw(id)
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            Some(Setting {
                key: long.to_string(),
                values,
                origin,
                boolean: matches!(arg.get_action(), ArgAction::SetTrue),
                list: matches!(arg.get_action(), ArgAction::Append),
            })
        })
        .collect();
    let args = DaemonArgs::from_arg_matches(&matches)?;
    Ok(Settings {
        args,
        file,
        origins,
    })
}

impl Settings {
    /// `--print-config`: the effective settings as a configuration file, each with its origin.
    /// Fed back to `--config`, it gives the same settings.
    pub fn report(&self) -> String {
        let mut out = format!(
            "# memesd {}: effective settings (flag > environment > file > default)\n",
            env!("CARGO_PKG_VERSION")
        );
        match &self.file {
            Some(path) => writeln!(out, "# configuration file: {}", path.display()),
            None => writeln!(out, "# configuration file: none (--config or {CONFIG_ENV})"),
        }
        .expect("writing to a String");
        // Defaults memesd computes rather than declares.
        let computed = [
            ("socket", self.args.socket()),
            ("data-dir", self.args.data_dir()),
        ];
        for setting in &self.origins {
            let (line, origin) = match (&setting.origin, setting.values.as_slice()) {
                (Origin::Unset, _) => match computed.iter().find(|(key, _)| *key == setting.key) {
                    Some((_, path)) => (
                        format!(
                            "{} = {}",
                            setting.key,
                            toml_string(&path.display().to_string())
                        ),
                        "default".to_string(),
                    ),
                    None => (format!("# {} is not set", setting.key), String::new()),
                },
                (origin, values) => {
                    let rendered: Vec<String> = values
                        .iter()
                        .map(|value| match setting.key.as_str() {
                            // A connection string may carry a password: never printed.
                            "store" => toml_value(&crate::store::pg::redact(value), false),
                            _ => toml_value(value, setting.boolean),
                        })
                        .collect();
                    let value = match (values.len(), rendered.as_slice()) {
                        (1, [one]) if !setting.list => one.clone(),
                        _ => format!("[{}]", rendered.join(", ")),
                    };
                    (format!("{} = {value}", setting.key), origin.to_string())
                }
            };
            match origin.is_empty() {
                true => writeln!(out, "{line}"),
                false => writeln!(out, "{line:<40} # {origin}"),
            }
            .expect("writing to a String");
        }
        out
    }
}

/// A value as TOML: booleans and plain numbers bare, everything else a quoted string.
fn toml_value(value: &str, boolean: bool) -> String {
    let plain_number = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'))
        && value.parse::<i64>().is_ok();
    match boolean || plain_number {
        true => value.to_string(),
        false => toml_string(value),
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A configuration file with this text, kept for the test's life.
    fn config(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    fn load_with(file: &tempfile::NamedTempFile, flags: &[&str]) -> Result<Settings, String> {
        let mut argv = vec!["memesd", "--config", file.path().to_str().unwrap()];
        argv.extend_from_slice(flags);
        load_from(argv).map_err(|error| error.to_string())
    }

    fn origin(settings: &Settings, key: &str) -> Origin {
        settings
            .origins
            .iter()
            .find(|setting| setting.key == key)
            .unwrap_or_else(|| panic!("no setting {key}"))
            .origin
            .clone()
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let file = config(
            "welcome-tokens = 10\nmeme-cost = 2\nidle-timeout = \"5m\"\n\
             admin-uid = [\"alice\", \"bob\"]\nhttp = \"127.0.0.1:8080\"\n\
             http-insecure-user-bearer = true\nlog-format = \"json\"\n",
        );
        let settings = load_with(&file, &["--meme-cost", "3"]).unwrap();
        let args = &settings.args;
        assert_eq!(args.welcome_tokens, 10);
        assert_eq!(args.meme_cost, 3);
        assert_eq!(args.generate_cost, 5);
        assert_eq!(args.idle_timeout, Duration::from_secs(300));
        assert_eq!(args.admin_uid, ["alice", "bob"]);
        assert_eq!(args.http, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(args.http_insecure_user_bearer);
        assert_eq!(args.log_format, super::super::config::LogFormat::Json);
        let path = file.path().to_path_buf();
        assert_eq!(origin(&settings, "welcome-tokens"), Origin::File(path));
        assert_eq!(origin(&settings, "meme-cost"), Origin::Flag);
        assert_eq!(origin(&settings, "generate-cost"), Origin::Default);
        assert_eq!(origin(&settings, "claims-key"), Origin::Unset);
        // A flag given for a list replaces the file's list.
        let settings = load_with(&file, &["--admin-uid", "carol"]).unwrap();
        assert_eq!(settings.args.admin_uid, ["carol"]);
    }

    #[test]
    fn without_a_file_the_defaults_hold() {
        let settings = load_from(["memesd"]).unwrap();
        assert_eq!(settings.file, None);
        assert_eq!(settings.args.welcome_tokens, 150);
        assert_eq!(origin(&settings, "welcome-tokens"), Origin::Default);
    }

    #[test]
    fn unknown_keys_are_refused_by_name_with_the_nearest_key() {
        let file = config("welcome-tokens = 10\nwelcome_tokens = 10\n");
        let error = load_with(&file, &[]).unwrap_err();
        assert!(error.contains("unknown key `welcome_tokens`"), "{error}");
        assert!(error.contains("did you mean `welcome-tokens`"), "{error}");
        assert!(
            error.contains(&file.path().display().to_string()),
            "{error}"
        );
        let error = load_with(&config("colour = \"blue\"\n"), &[]).unwrap_err();
        assert!(error.contains("unknown key `colour`"), "{error}");
        let error = load_with(&config("config = \"/etc/x\"\n"), &[]).unwrap_err();
        assert!(error.contains("command-line option only"), "{error}");
        let error = load_with(&config("[http]\nport = 8080\n"), &[]).unwrap_err();
        assert!(error.contains("[http] is a table"), "{error}");
        assert!(!error.contains("did you mean"), "{error}");
    }

    #[test]
    fn a_memesd_table_reads_like_the_top_level() {
        let file = config("[memesd]\nmeme-cost = 2\nsocket-mode = 0o660\n");
        let settings = load_with(&file, &[]).unwrap();
        assert_eq!(settings.args.meme_cost, 2);
        assert_eq!(settings.args.socket_mode, 0o660);
        let file = config("meme-cost = 3\n[memesd]\nmeme-cost = 2\n");
        let error = load_with(&file, &[]).unwrap_err();
        assert!(
            error.contains("both at the top level and in [memesd]"),
            "{error}"
        );
    }

    #[test]
    fn an_octal_mode_reads_as_written() {
        for text in [
            "socket-mode = 0o660",
            "socket-mode = 660",
            "socket-mode = \"0o660\"",
        ] {
            let settings = load_with(&config(text), &[]).unwrap();
            assert_eq!(settings.args.socket_mode, 0o660, "{text}");
        }
    }

    #[test]
    fn a_store_memesd_does_not_know_and_an_empty_pool_are_usage_errors() {
        for argv in [
            ["memesd", "--store", "mysql://x"],
            ["memesd", "--store-pool", "0"],
        ] {
            let error = load_from(argv).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{argv:?}: {error}");
            assert!(error.to_string().contains(argv[1]), "{error}");
        }
        assert!(load_from(["memesd", "--store", "postgres:///memes?host=/tmp"]).is_ok());
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        for (text, key, reason) in [
            ("meme-cost = 0", "meme-cost", "0 is not in 1..="),
            ("idle-timeout = \"nan\"", "idle-timeout", "give seconds"),
            ("welcome-tokens = -1", "welcome-tokens", ""),
            ("socket-mode = \"060\"", "socket-mode", "owner read/write"),
            ("http = \"localhost\"", "http", "invalid socket address"),
            (
                "log-format = \"xml\"",
                "log-format",
                "possible values: text, json",
            ),
            (
                "http-insecure-user-bearer = \"yes\"",
                "http-insecure-user-bearer",
                "true or false",
            ),
            ("admin-uid = [1, [2]]", "admin-uid", "list of strings"),
            ("rate-limit = \"0/s\"", "rate-limit", "not a rate"),
            ("meme-cost = ", "", "not valid TOML"),
        ] {
            let file = config(text);
            let error = load_with(&file, &[]).unwrap_err();
            assert!(
                error.contains(&format!("`{key}`")) || key.is_empty(),
                "{text}: {error}"
            );
            assert!(error.contains(reason), "{text}: {error}");
            assert!(
                error.contains(&file.path().display().to_string()),
                "{text}: {error}"
            );
        }
        let error = load_from(["memesd", "--config", "/nonexistent/memesd.toml"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/memesd.toml"), "{error}");
    }

    #[test]
    fn every_option_has_its_environment_variable() {
        for arg in command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_SETTINGS[1..].contains(&long) {
                continue;
            }
            let expected = match long {
                "config" => CONFIG_ENV.to_string(),
                _ => env_name(long),
            };
            assert_eq!(
                arg.get_env().and_then(|env| env.to_str()),
                Some(expected.as_str()),
                "--{long}"
            );
        }
    }

    #[test]
    fn the_report_is_a_configuration_file_that_gives_the_same_settings() {
        let file = config("welcome-tokens = 10\nadmin-uid = [\"alice\"]\nidle-timeout = \"5m\"\n");
        let settings = load_with(&file, &["--meme-cost", "3"]).unwrap();
        let report = settings.report();
        assert!(report.contains("meme-cost = 3"), "{report}");
        assert!(report.contains("# flag"), "{report}");
        assert!(
            report.contains(&format!("# file {}", file.path().display())),
            "{report}"
        );
        assert!(report.contains("admin-uid = [\"alice\"]"), "{report}");
        assert!(report.contains("# claims-key is not set"), "{report}");
        let again = load_with(&config(&report), &[]).unwrap();
        assert_eq!(again.args.welcome_tokens, 10);
        assert_eq!(again.args.meme_cost, 3);
        assert_eq!(again.args.admin_uid, ["alice"]);
        assert_eq!(again.args.idle_timeout, Duration::from_secs(300));
        assert_eq!(again.args.socket(), settings.args.socket());
    }

    /// deploy/memesd.toml documents every key: with each commented-out `# key = value` line
    /// switched on, it must name every setting and be accepted as it stands.
    #[test]
    fn the_example_configuration_covers_every_key_and_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/memesd.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        load_from(["memesd", "--config", path.to_str().unwrap()])
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let assignment = |line: &str| {
            let (key, _) = line.split_once(" = ")?;
            key.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-')
                .then(|| key.to_string())
        };
        let switched_on: String = text
            .lines()
            .map(
                |line| match line.strip_prefix("# ").filter(|l| assignment(l).is_some()) {
                    Some(setting) => format!("{setting}\n"),
                    None => format!("{line}\n"),
                },
            )
            .collect();
        let file = config(&switched_on);
        let settings =
            load_with(&file, &[]).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        for setting in &settings.origins {
            assert!(
                matches!(setting.origin, Origin::File(_)),
                "{} does not document `{}`",
                path.display(),
                setting.key
            );
        }
    }
}

//! What ships: the release binaries carry no debug info or symbols (they were 40 and 55 MB
//! with line tables); the `profiling` profile keeps them for perf.

/// The `[profile.NAME]` table of Cargo.toml as `key = value` lines.
fn profile(name: &str) -> Vec<String> {
    let manifest = include_str!("../../Cargo.toml");
    let header = format!("[profile.{name}]");
    manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .map(|line| line.split('#').next().unwrap_or("").replace(' ', ""))
        .filter(|line| !line.is_empty())
        .collect()
}

#[test]
fn release_binaries_are_stripped_and_profiling_keeps_line_tables() {
    let release = profile("release");
    for setting in ["strip=true", "debug=false"] {
        assert!(release.contains(&setting.to_string()), "{release:?}");
    }
    let profiling = profile("profiling");
    for setting in [
        "inherits=\"release\"",
        "debug=\"line-tables-only\"",
        "strip=false",
    ] {
        assert!(profiling.contains(&setting.to_string()), "{profiling:?}");
    }
}

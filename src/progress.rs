//! Progress for commands that take a while (`memes bench`, `memes audit`, and memesd's
//! one-shot commands): a bar or a spinner on stderr, drawn only for a person watching, that
//! is when stderr is a terminal and the command was not asked for `--json`. Everywhere else
//! (a pipe, a file, a script, CI) every call here is a no-op, so nothing but the command's own
//! output ever reaches a log.
//!
//! ```no_run
//! use memes::progress::Progress;
//! let bar = Progress::bar(false, 1_000, "requests");
//! bar.set_position(250);
//! drop(bar); // clears the line
//! ```

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// How often a shown bar or spinner is redrawn (and a tracked position read).
const TICK: Duration = Duration::from_millis(100);

/// A progress bar or spinner on stderr, or nothing (see the module's documentation).
/// Cleared from the terminal when dropped.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Whether progress is drawn for a command run with (or without) `--json`.
    pub fn shown(json: bool) -> bool {
        !json && std::io::stderr().is_terminal()
    }

    /// Nothing at all, whatever stderr is.
    pub fn hidden() -> Progress {
        Progress(None)
    }

    /// A spinner saying what is being waited for.
    pub fn spinner(json: bool, message: &str) -> Progress {
        if !Progress::shown(json) {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("a valid template"),
            )
            .with_message(message.to_string());
        bar.enable_steady_tick(TICK);
        Progress(Some(bar))
    }

    /// A bar for `total` units of work (`unit` names them: "requests", "accounts").
    pub fn bar(json: bool, total: u64, unit: &str) -> Progress {
        if !Progress::shown(json) {
            return Progress::hidden();
        }
        let template = format!(
            "[{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{rate}}, {{eta}} left)"
        );
        // A whole number per second: indicatif's own `per_sec` prints "33,195.5096/s".
        let style = ProgressStyle::with_template(&template)
            .expect("a valid template")
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0}/s", state.per_sec());
                },
            );
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style);
        bar.enable_steady_tick(TICK);
        Progress(Some(bar))
    }

    /// A bar for a run of a fixed length: seconds elapsed of the whole, and the time left
    /// (counted down from the length, not estimated from a rate of seconds per second).
    pub fn timer(json: bool, length: Duration) -> Progress {
        if !Progress::shown(json) {
            return Progress::hidden();
        }
        let style = ProgressStyle::with_template(
            "[{elapsed_precise}] {wide_bar} {pos}/{len} s ({left} left)",
        )
        .expect("a valid template")
        .with_key(
            "left",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let left = state.len().unwrap_or(0).saturating_sub(state.pos());
                let _ = write!(out, "{left} s");
            },
        );
        let bar = ProgressBar::with_draw_target(
            Some(length.as_secs().max(1)),
            ProgressDrawTarget::stderr(),
        )
        .with_style(style);
        bar.enable_steady_tick(TICK);
        let started = std::time::Instant::now();
        let shown = Progress(Some(bar));
        shown.track(move || started.elapsed().as_secs().min(length.as_secs().max(1)));
        shown
    }

    /// Whether anything is drawn.
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(position);
        }
    }

    pub fn inc(&self, delta: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(delta);
        }
    }

    pub fn set_message(&self, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.to_string());
        }
    }

    /// Reads the position from `position` at every tick, on a thread of its own, until the
    /// bar is finished: for work counted elsewhere (say, an atomic counter the workers bump),
    /// so the workers never touch the bar.
    pub fn track(&self, position: impl Fn() -> u64 + Send + 'static) {
        let Some(bar) = self.0.clone() else { return };
        std::thread::spawn(move || {
            while !bar.is_finished() {
                bar.set_position(position());
                std::thread::sleep(TICK);
            }
        });
    }

    /// Clears the bar from the terminal (also done on drop).
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_drawn_with_json_or_off_a_terminal() {
        // `cargo test` runs with stderr captured or piped, never a terminal here in CI; with
        // --json, never drawn anyway.
        assert!(!Progress::shown(true));
        let bar = Progress::bar(true, 10, "requests");
        assert!(!bar.is_shown());
        bar.set_position(5);
        bar.track(|| 7);
        bar.finish();
        assert!(!Progress::spinner(true, "waiting").is_shown());
    }
}

//! Progress on long waits: a bar on stderr when it is a terminal.
//!
//! `warren gather` and `warren wait` can wait minutes. On a terminal they show
//! done/total, the rate and the errors so far; in a pipe, a file or with
//! `--json` they stay silent, so scripts see only the results.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that may be switched off.
pub struct Progress {
    bar: Option<ProgressBar>,
    errors: u64,
}

impl Progress {
    /// A bar over `total` futures, drawn only if `wanted` and stderr is a terminal.
    pub fn new(total: usize, wanted: bool) -> Self {
        let on = wanted && total > 0 && std::io::stderr().is_terminal();
        let bar = on.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} done  {rate}  {elapsed_precise}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            // One precision whatever the rate: indicatif's own {per_sec}
            // switches between 1.7422/s and 1.858/s.
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate_text(state.per_sec()));
                },
            )
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message("0 errors");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Self { bar, errors: 0 }
    }

    /// One more future is final; `failed` if it is an error or cancelled.
    pub fn done(&mut self, failed: bool) {
        if let Some(bar) = &self.bar {
            if failed {
                self.errors += 1;
                bar.set_message(format!("{} errors", self.errors));
            }
            bar.inc(1);
        }
    }

    /// Runs `f` (which prints) with the bar hidden, so lines do not mix.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the bar before results are printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A rate as the bar shows it: one decimal, then whole numbers from 100/s.
fn rate_text(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        "-/s".to_string()
    } else if per_sec < 100.0 {
        format!("{per_sec:.1}/s")
    } else {
        format!("{per_sec:.0}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::rate_text;

    #[test]
    fn rates_keep_one_precision() {
        assert_eq!(rate_text(1.7422), "1.7/s");
        assert_eq!(rate_text(1.858), "1.9/s");
        assert_eq!(rate_text(2473.4), "2473/s");
        assert_eq!(rate_text(f64::NAN), "-/s");
    }
}

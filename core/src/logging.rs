//! Logging set-up, one way for every binary.
//!
//! Colour codes only where a person reads a terminal: a scheduler's log file
//! or a CLI's stderr in a pipe must hold plain text. `RUST_LOG` (or, for the
//! CLI, `WARREN_LOG`) overrides the default filter.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines with a timestamp (services).
    Text,
    /// One JSON object per line (services whose logs are collected).
    Json,
    /// Short lines without time or target (the CLI's warnings).
    Terse,
}

impl Format {
    /// `json` is [`Format::Json`]; anything else is [`Format::Text`].
    pub fn named(name: &str) -> Self {
        if name.eq_ignore_ascii_case("json") {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// Installs the global subscriber writing to stderr. `env_var` names the
/// filter variable, `default` the filter when it is unset or invalid.
pub fn init(format: Format, env_var: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, a library user's own subscriber) keeps the first.
    let _ = match format {
        Format::Json => builder.json().try_init(),
        Format::Text => builder.try_init(),
        Format::Terse => builder.without_time().with_target(false).try_init(),
    };
}

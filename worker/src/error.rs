//! Why a worker stopped: the errors [`crate::Worker::run`] returns.
//!
//! A lost connection is not among them: the worker reconnects for as long as
//! it runs. These are the ends a caller may want to tell apart.

/// Why [`crate::Worker::run`] returned an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The metrics endpoint (setting `metrics_addr`) could not be served.
    #[error("cannot serve metrics on {addr:?} (setting metrics_addr): {source}")]
    Metrics {
        /// The address asked for.
        addr: String,
        /// What binding it said.
        source: std::io::Error,
    },
    /// A setting or flag the worker cannot start with (a queue name
    /// RabbitMQ cannot take, a program rule it cannot apply).
    #[error("{0}")]
    Invalid(String),
    /// Redis could not be reached to keep program tasks' output.
    #[error("{0}")]
    Store(#[from] warren_core::Error),
    /// SIGTERM and SIGINT could not be handled, so no drain is possible.
    #[error("cannot handle SIGTERM/SIGINT: {0}")]
    Signals(std::io::Error),
    /// The drain did not finish in time; the unanswered messages' tasks run
    /// again elsewhere.
    #[error(
        "the drain timed out after {secs}s (setting drain_timeout_secs) with {unanswered} messages unanswered: their tasks will run again elsewhere"
    )]
    DrainTimedOut {
        /// The drain's limit.
        secs: u64,
        /// Work messages neither reported nor given back.
        unanswered: usize,
    },
}

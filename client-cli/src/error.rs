//! Client errors.

use warren_core::messages::TaskFailure;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RabbitMQ, Redis, settings or message problems.
    #[error(transparent)]
    Core(#[from] warren_core::Error),

    /// The task ran and failed (or a dependency did): dask's re-raised exception.
    #[error("task {key} failed: {failure}")]
    Task {
        /// The future's key.
        key: String,
        /// Type, message and traceback.
        failure: TaskFailure,
    },

    /// The future was cancelled (by `restart` or a cancelled dependency).
    #[error("future {key} was cancelled")]
    Cancelled {
        /// The future's key.
        key: String,
    },

    /// No such future in this namespace.
    #[error(
        "unknown future {key:?}: never submitted in namespace {namespace:?}, or expired or forgotten"
    )]
    UnknownFuture {
        /// The key asked for.
        key: String,
        /// The namespace searched.
        namespace: String,
    },

    /// Waited longer than allowed.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout {
        /// Seconds waited.
        secs: f64,
        /// What was awaited.
        what: String,
    },

    /// A request too large to publish.
    #[error(
        "payload of {size} bytes (task {key}) exceeds the limit of {limit} bytes (setting max_payload_bytes)"
    )]
    PayloadTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
        /// The first task in it.
        key: String,
    },

    /// Arguments that cannot be a task's arguments.
    #[error("invalid arguments: {0}")]
    InvalidArgument(String),

    /// The client's connection to RabbitMQ closed.
    #[error("the client's connection to RabbitMQ closed")]
    Disconnected,
}

impl From<lapin::Error> for Error {
    fn from(e: lapin::Error) -> Self {
        Error::Core(e.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Core(e.into())
    }
}

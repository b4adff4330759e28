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
    #[error("payload of {size} bytes (task {key}) exceeds the limit of {limit} bytes ({setting})")]
    PayloadTooLarge {
        /// Which limit: the setting `max_payload_bytes`, or RabbitMQ's own
        /// `max_message_size` where that is lower.
        setting: &'static str,
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

    /// RabbitMQ did not confirm a request in time: it may not be stored.
    #[error(
        "RabbitMQ did not confirm the request ({items} tasks) to queue {queue} within {secs}s, so it may not be stored: {}; then resubmit (pure submits are safe to repeat); setting request_timeout_secs",
        match alarm {
            Some(reason) => format!("the broker has blocked publishing ({reason}), a resource alarm: free memory or disk on it (rabbitmqctl status, the management UI's Overview)"),
            None => "check the broker's alarms (rabbitmqctl status: memory or disk)".to_string(),
        }
    )]
    NotConfirmed {
        /// Tasks (or keys) in the request.
        items: usize,
        /// The queue published to.
        queue: String,
        /// Seconds waited.
        secs: u64,
        /// The broker's reason, if it has blocked the connection.
        alarm: Option<String>,
    },

    /// The namespace's queues do not exist yet and RabbitMQ refused this
    /// user the right to declare them: a client's user (`warren access
    /// --role client`) leaves that to a scheduler.
    #[error(
        "{cause}: {queue} does not exist yet and this RabbitMQ user may not declare it; start a scheduler of namespace {namespace} first (it declares the queues)"
    )]
    CannotDeclare {
        /// What RabbitMQ said.
        cause: String,
        /// The queue that is missing.
        queue: String,
        /// The namespace.
        namespace: String,
    },

    /// No scheduler recorded a confirmed request in time.
    #[error(
        "no scheduler recorded the request ({items} tasks) within {secs}s: {}; it stays in queue {queue} and is recorded when a scheduler of namespace {namespace:?} starts (setting request_timeout_secs)",
        scheduler_hint(queue, *consumers)
    )]
    NoScheduler {
        /// Tasks (or keys) in the request.
        items: usize,
        /// The namespace.
        namespace: String,
        /// The submit queue.
        queue: String,
        /// Its consumers, if RabbitMQ said.
        consumers: Option<u32>,
        /// Seconds waited.
        secs: u64,
    },

    /// A scheduler refused tasks of a submission (an older or other client
    /// sent what this one's validation would have stopped).
    #[error("the scheduler refused {count} task(s), the first {key}: {reason}")]
    Refused {
        /// Tasks refused.
        count: usize,
        /// The first refused task's key.
        key: String,
        /// Why.
        reason: String,
    },

    /// No live worker serves the function (on that queue).
    #[error("{0}")]
    UnservedFunction(String),

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

/// Why a confirmed request has no answer yet, from the submit queue's
/// consumer count: the first thing a user should check.
pub fn scheduler_hint(queue: &str, consumers: Option<u32>) -> String {
    match consumers {
        Some(0) => format!(
            "no scheduler consumes {queue}: is warren-scheduler running, with this namespace (--namespace, WARREN_NAMESPACE)?"
        ),
        Some(n) => format!(
            "{n} scheduler(s) consume {queue} but none answered: see the scheduler's log (is Redis reachable?)"
        ),
        None => format!("RabbitMQ does not report queue {queue}"),
    }
}

//! The JSON bodies that travel through RabbitMQ.
//!
//! Every body carries `v`, the protocol version, so a component meeting a message
//! from a newer or older warren rejects it by name instead of misreading it.
//! Unknown fields are refused for the same reason. Values and arguments are
//! arbitrary JSON ([`serde_json::Value`]); a future inside arguments is the object
//! `{"$future": "<key>"}` (see [`crate::args`]).
//!
//! Who sends what:
//! - client → scheduler, on the submit queue: [`ClientRequest`];
//! - scheduler → worker, on a work queue: [`WorkMessage`];
//! - worker → scheduler, on the results queue: [`WorkerReport`];
//! - scheduler / worker → client, on the client's reply queue: [`ClientEvents`];
//! - scheduler → all workers, on the control exchange: [`Control`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(test)]
mod fuzz;
mod validate;
pub use validate::MAX_ARG_DEPTH;

/// Version of the message format; bump on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The `content_type` of every warren message.
pub const CONTENT_TYPE: &str = "application/json";

/// One task as the client submits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The future's key (unique in the namespace).
    pub key: String,
    /// Name of a function registered on the workers.
    pub func: String,
    /// Positional arguments; futures appear as `{"$future": key}`.
    pub args: Vec<Value>,
    /// Keys of the futures inside `args`, each once.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Work queue (`default` unless routed elsewhere).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Times to run the task again after it fails (dask's `retries=`).
    #[serde(default)]
    pub retries: u32,
    /// Seconds the task may run before it fails with `TimeoutError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Higher runs first among ready tasks of the same queue (default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
    /// The task runs no sooner than this many ms after a scheduler records
    /// it (`--delay`), on Redis's clock; it waits in Redis meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// The task runs no sooner than this time (Unix ms, `--at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// How a failure waits before the next of its `retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::timing::RetryPolicy>,
    /// At most the limit `warren limits set --key` gives this key (or a
    /// `prefix*` matching it) of the tasks sharing it run at once, across
    /// the cluster; the others wait their turn in Redis, in arrival order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
}

impl TaskSpec {
    /// Task `key` calling `func` on `args`, its dependencies read from the
    /// futures in `args`, on the default queue with every option at its
    /// default; set the others with struct update syntax.
    pub fn new(key: impl Into<String>, func: impl Into<String>, args: Vec<Value>) -> TaskSpec {
        TaskSpec {
            key: key.into(),
            func: func.into(),
            deps: crate::args::dependencies(&args),
            args,
            queue: default_queue(),
            retries: 0,
            timeout_secs: None,
            priority: 0,
            delay_ms: None,
            at_ms: None,
            retry: None,
            concurrency_key: None,
        }
    }
}

fn is_zero(p: &i64) -> bool {
    *p == 0
}

/// The largest priority magnitude: scores in the Redis outbox stay exact.
pub const MAX_PRIORITY: i64 = 1_000_000;

/// The queue tasks go to unless told otherwise.
pub fn default_queue() -> String {
    "default".into()
}

/// What a client asks of the scheduler. The reply queue is the AMQP `reply_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientRequest {
    /// Create these tasks (deduplicated by key) and watch them.
    Submit {
        /// Protocol version.
        v: u32,
        /// Echoed in the [`ClientEvent::Submitted`] acknowledgement.
        batch: String,
        /// The tasks, dependencies before dependents or in any order within the batch.
        tasks: Vec<TaskSpec>,
        /// Some task depends on a future this client submitted in an earlier
        /// batch that may not be recorded yet (clients do not wait between
        /// submits). A scheduler that does not know such a dependency yet waits
        /// for it (up to 2 s) instead of failing the task with `UnknownFuture`
        /// at once: with several schedulers, batches can overtake each other.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deps_in_flight: bool,
    },
    /// Cancel every future, empty the queues, and have the workers start afresh.
    Restart {
        /// Protocol version.
        v: u32,
    },
    /// Cancel these futures (and, as in dask, everything that depends on them).
    Cancel {
        /// Protocol version.
        v: u32,
        /// Echoed in the [`ClientEvent::Submitted`] acknowledgement.
        batch: String,
        /// The keys.
        keys: Vec<String>,
    },
}

/// A runnable task, with the values of its dependencies already inlined: workers
/// need no Redis write and no dependency read to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMessage {
    /// Protocol version.
    pub v: u32,
    /// The future's key.
    pub key: String,
    /// Registered function name.
    pub func: String,
    /// Positional arguments, futures replaced by their values.
    pub args: Vec<Value>,
    /// The namespace epoch this task was dispatched in; a `restart` bumps it, and
    /// workers drop messages from older epochs.
    pub epoch: u64,
    /// 0 for the first run, then one more per retry after a failure.
    #[serde(default)]
    pub attempt: u32,
    /// Seconds the task may run before it fails with `TimeoutError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// When the scheduler published it (Unix ms): workers measure queue latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at_ms: Option<u64>,
    /// The task's priority: a worker gives its next free slot to the waiting
    /// task with the highest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An error raised by a task, as the client sees it (dask's exception + traceback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFailure {
    /// Error type, e.g. `ZeroDivisionError`, `TypeError`, `Panic`, `KilledWorker`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    pub message: String,
    /// Where it happened: task, worker, source location, backtrace if any.
    pub traceback: String,
    /// The errors of earlier attempts, oldest first, when the task was retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<TaskFailure>,
}

impl TaskFailure {
    /// A failure with no earlier attempts.
    pub fn new(
        kind: impl Into<String>,
        message: impl Into<String>,
        traceback: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            traceback: traceback.into(),
            previous: Vec::new(),
        }
    }

    /// dask's `KilledWorker`: the task was started `deaths` times and every
    /// worker running it died. `deaths` is `None` when RabbitMQ's delivery-limit
    /// backstop ended it (the count of starts is then unknown).
    pub fn killed_worker(key: &str, func: &str, deaths: Option<u32>) -> Self {
        let message = match deaths {
            Some(n) => format!(
                "Attempted to run task {key} ({func}) on {n} different workers, but all those workers died while running it"
            ),
            None => format!(
                "task {key} ({func}) was delivered too many times (the work queue's delivery limit): each time the worker holding it died or lost its connection"
            ),
        };
        Self::new(KILLED_WORKER, message, "")
    }

    /// Whether `retries` may run the task again after this failure: a task that
    /// kills its workers is not retried, as in dask.
    pub fn is_retryable(&self) -> bool {
        self.kind != KILLED_WORKER
    }
}

/// The error type of a task whose workers kept dying.
pub const KILLED_WORKER: &str = "KilledWorker";

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// The outcome of running a task once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskResult {
    /// The function returned this value.
    Ok(Value),
    /// The function failed (or panicked).
    Err(TaskFailure),
}

/// One finished execution, reported by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The future's key.
    pub key: String,
    /// What the function produced.
    pub result: TaskResult,
    /// The attempt this outcome answers (from [`WorkMessage::attempt`]).
    #[serde(default)]
    pub attempt: u32,
}

/// What a worker tells the scheduler, on the results queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerReport {
    /// Tasks that ended (a batch: a worker reports what finished while its last
    /// report was being confirmed).
    Outcomes {
        /// Protocol version.
        v: u32,
        /// Worker identity (`host:pid`).
        worker: String,
        /// The outcomes.
        outcomes: Vec<Outcome>,
    },
    /// A worker is alive: sent every few seconds, kept by the scheduler for
    /// `warren workers`.
    Heartbeat {
        /// Protocol version.
        v: u32,
        /// What the worker says of itself.
        info: WorkerInfo,
    },
    /// Tasks that have been running long enough to show as `processing`.
    Started {
        /// Protocol version.
        v: u32,
        /// Worker identity (`host:pid`).
        worker: String,
        /// Keys of the tasks.
        keys: Vec<String>,
    },
}

/// A live worker, as it describes itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// `host:pid`.
    pub worker: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Task slots.
    pub concurrency: usize,
    /// Work queues served.
    pub queues: Vec<String>,
    /// Keys of the tasks running now.
    pub running: Vec<String>,
    /// Tasks finished since the worker started.
    pub completed: u64,
    /// Unix time of the heartbeat, in milliseconds.
    pub at_ms: u64,
    /// The functions this worker runs (sorted). Absent from workers older
    /// than this field, which the client then trusts to run anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<String>>,
    /// The programs it runs as tasks (its `--allow-command` rules), if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// The worker is draining (SIGTERM): it takes no new tasks and exits
    /// once its running ones are reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// A future's final state, as delivered to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Terminal {
    /// Finished with this value.
    Finished {
        /// The value.
        value: Value,
    },
    /// Failed with this error.
    Error {
        /// The error.
        error: TaskFailure,
    },
    /// Cancelled.
    Cancelled,
}

/// Something a client is told on its reply queue.
// No deny_unknown_fields here: serde does not support it together with `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientEvent {
    /// The scheduler recorded a submit batch: its futures exist now.
    Submitted {
        /// The batch id from [`ClientRequest::Submit`].
        batch: String,
        /// Tasks of the batch the scheduler refused (not recorded), each
        /// with the reason; the rest of the batch was recorded.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<Refusal>,
    },
    /// A watched future reached a final state.
    Done {
        /// The future's key.
        key: String,
        /// Its final state.
        #[serde(flatten)]
        terminal: Terminal,
    },
    /// The scheduler finished a restart: every future is cancelled, queues empty.
    Restarted {
        /// The new epoch.
        epoch: u64,
    },
    /// A worker dropped its old work and is ready after a restart.
    WorkerReady {
        /// Worker identity (`host:pid`).
        worker: String,
    },
}

/// A task a scheduler would not record, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The task's key.
    pub key: String,
    /// What is wrong with it ([`TaskSpec::validate`]'s words).
    pub reason: String,
}

/// A batch of client events (one message per scheduler step and reply queue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEvents {
    /// Protocol version.
    pub v: u32,
    /// The events, in the order they happened.
    pub events: Vec<ClientEvent>,
}

/// A broadcast from the scheduler to every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// Drop work from epochs before `epoch`, then report ready to `reply_to`.
    Restart {
        /// Protocol version.
        v: u32,
        /// The new epoch.
        epoch: u64,
        /// The restarting client's reply queue, for [`ClientEvent::WorkerReady`].
        reply_to: String,
    },
    /// Stop these tasks if they run (where the function can be interrupted), and
    /// never start them.
    Cancel {
        /// Protocol version.
        v: u32,
        /// The keys cancelled (including dependents cancelled with them).
        keys: Vec<String>,
    },
    /// Run `func(args)` once on every worker that has it, outside its task
    /// slots (a client's `run`), and keep each worker's outcome in Redis
    /// under `id` (see [`Control::validate`]).
    Run {
        /// Protocol version.
        v: u32,
        /// The run's id, chosen by the client: a task key's rules.
        id: String,
        /// The function, as a task names it.
        func: String,
        /// Its arguments, as a task's.
        args: Vec<Value>,
    },
}

/// Why a message body was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the expected shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A version this build does not speak.
    #[error("unsupported protocol version {found} (this build speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version found in the message.
        found: u64,
    },
    /// A work pack with no task in it.
    #[error("a work pack must hold at least one task")]
    EmptyPack,
}

/// Decodes a message body, checking the protocol version first so a version
/// mismatch is reported as such rather than as a schema error.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let raw: Value = serde_json::from_slice(body)?;
    match raw.get("v").and_then(Value::as_u64) {
        Some(v) if v != u64::from(PROTOCOL_VERSION) => {
            return Err(DecodeError::Version { found: v });
        }
        _ => {}
    }
    Ok(serde_json::from_value(raw)?)
}

/// Decodes a work message body: one task as a JSON object, or a *pack* of
/// tasks as a JSON array of them. The scheduler packs tasks only when a queue
/// has far more runnable tasks than consumers (a large `map`): one message per
/// task costs the broker most of its CPU at thousands of tasks per second,
/// while a single task always travels alone, readable in the management UI.
pub fn decode_work(body: &[u8]) -> Result<Vec<WorkMessage>, DecodeError> {
    let is_pack = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[');
    if !is_pack {
        return Ok(vec![decode(body)?]);
    }
    let raw: Vec<Value> = serde_json::from_slice(body)?;
    if raw.is_empty() {
        return Err(DecodeError::EmptyPack);
    }
    raw.into_iter()
        .map(|task| decode(&serde_json::to_vec(&task)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The work message of `inc(1)`, key `inc-1`.
    fn inc_message(priority: i64) -> WorkMessage {
        WorkMessage {
            v: PROTOCOL_VERSION,
            key: "inc-1".into(),
            func: "inc".into(),
            args: vec![json!(1)],
            epoch: 0,
            attempt: 0,
            timeout_secs: None,
            dispatched_at_ms: None,
            priority,
        }
    }

    #[test]
    fn work_bodies_are_one_task_or_a_pack() {
        let one = inc_message(0);
        let mut two = one.clone();
        two.key = "inc-2".into();
        let single = serde_json::to_vec(&one).unwrap();
        assert_eq!(decode_work(&single).unwrap(), vec![one.clone()]);
        let pack = serde_json::to_vec(&vec![one.clone(), two.clone()]).unwrap();
        assert_eq!(decode_work(&pack).unwrap(), vec![one, two]);
        assert!(matches!(decode_work(b" []"), Err(DecodeError::EmptyPack)));
        let bad = decode_work(br#"[{"v":1,"key":"k"}]"#).unwrap_err();
        assert!(bad.to_string().contains("missing field"), "{bad}");
    }

    #[test]
    fn work_message_round_trips() {
        let m = inc_message(3);
        let body = serde_json::to_vec(&m).unwrap();
        assert_eq!(decode::<WorkMessage>(&body).unwrap(), m);
    }

    #[test]
    fn decode_names_version_and_schema_problems() {
        let err = decode::<WorkMessage>(br#"{"v":99,"key":"k"}"#).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
        let err = decode::<WorkMessage>(br#"{"v":1,"key":"k"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        assert!(decode::<WorkMessage>(b"not json").is_err());
    }

    #[test]
    fn done_event_is_flat_json() {
        let e = ClientEvent::Done {
            key: "k".into(),
            terminal: Terminal::Finished { value: json!(3) },
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"kind": "done", "key": "k", "state": "finished", "value": 3})
        );
    }
}

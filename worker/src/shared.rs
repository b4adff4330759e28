//! The state a worker keeps across connections: its slots, what it runs and
//! remembers, its drain, its metrics, and the channel to its reporter. One
//! value, shared by the consumer, the tasks, the reporter and the control loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use warren_core::messages::{TaskResult, WorkerInfo};
use warren_core::metrics::{Histogram, Metrics};

use crate::drain::Drain;
use crate::memory::{BoundedSet, RunId, Runs};
use crate::registry::Registry;
use crate::report::Report;
use crate::slots::Slots;
use crate::watchdog::Watchdog;

/// Finished executions remembered to answer redeliveries without running again.
pub(crate) const RECENT_CAPACITY: usize = 10_000;
/// Cancelled keys remembered so their messages are never started.
pub(crate) const CANCELLED_CAPACITY: usize = 100_000;

/// A handle on an execution's result, for redelivered copies to wait on.
pub(crate) type RunResult = watch::Receiver<Option<TaskResult>>;

/// The worker's Prometheus series.
pub(crate) struct WorkerMetrics {
    pub finished: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    pub timed_out: Arc<AtomicU64>,
    pub redelivered: Arc<AtomicU64>,
    pub running: Arc<std::sync::atomic::AtomicI64>,
    pub duration: Arc<Histogram>,
    pub latency: Arc<Histogram>,
}

impl WorkerMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let tasks = |outcome: &str| {
            m.counter(
                "warren_worker_tasks_total",
                &format!("outcome=\"{outcome}\""),
                "Tasks this worker ran, by outcome.",
            )
        };
        Self {
            finished: tasks("finished"),
            failed: tasks("error"),
            timed_out: tasks("timeout"),
            redelivered: m.counter(
                "warren_worker_redeliveries_total",
                "",
                "Work messages received again after an earlier delivery was not acked.",
            ),
            running: m.gauge("warren_worker_running_tasks", "", "Tasks running now."),
            duration: m.histogram(
                "warren_worker_task_duration_seconds",
                "Time a task's function ran.",
            ),
            latency: m.histogram(
                "warren_worker_queue_latency_seconds",
                "Time from the scheduler publishing a task to a worker starting it.",
            ),
        }
    }
}

/// State that outlives any one connection.
pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    /// `host:pid`, as consumer tags, reports and `warren workers` name it.
    pub identity: String,
    /// Report a task as `processing` once it has run this long.
    pub started_after: Duration,
    pub slots: Arc<Slots>,
    /// The newest epoch heard of (restarts bump it).
    pub epoch: AtomicU64,
    /// Executions running or recently finished here.
    pub recent: Mutex<Runs<RunResult>>,
    /// Stop flags of the tasks running now, by key.
    pub running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Keys cancelled while this worker ran.
    pub cancelled: Mutex<BoundedSet<String>>,
    pub completed: AtomicU64,
    pub concurrency: usize,
    pub allowed_failures: u32,
    /// The largest result a task may return (setting `max_payload_bytes`).
    pub max_result_bytes: usize,
    /// The namespace's names, and the largest message to publish (setting
    /// `max_message_bytes`, or the broker's limit once a refusal told it),
    /// kept for the process's life.
    pub topology: warren_core::topology::Topology,
    pub queues: Vec<String>,
    /// Where runs happen (setting `isolation`).
    pub isolation: warren_core::settings::Isolation,
    /// A child run's memory cap in MiB, 0 for none.
    pub max_memory_per_task_mb: u64,
    /// The registry's names, sorted, as heartbeats announce them.
    pub functions: Vec<String>,
    /// The programs it runs as tasks (`--allow-command`), as announced.
    pub commands: Vec<String>,
    pub metrics: WorkerMetrics,
    /// Started by the first SIGTERM or Ctrl-C.
    pub drain: Arc<Drain>,
    /// Whether this process was just stopped (see [`Watchdog`]).
    pub watchdog: Arc<Watchdog>,
    /// Work messages taken and not yet acked or given back.
    pub unanswered: Arc<AtomicUsize>,
    pub reports: mpsc::UnboundedSender<Report>,
    pub pending_reports: tokio::sync::Mutex<mpsc::UnboundedReceiver<Report>>,
    /// What a restart also does (see [`crate::Worker::on_restart`]).
    pub on_restart: Option<OnRestart>,
}

/// A hook run on every restart.
pub(crate) type OnRestart = Arc<dyn Fn() + Send + Sync>;

impl Shared {
    /// This worker as `warren workers` shows it.
    pub fn info(&self) -> WorkerInfo {
        let (host, pid) = self
            .identity
            .rsplit_once(':')
            .unwrap_or((&self.identity, "0"));
        let mut running: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        running.sort();
        WorkerInfo {
            worker: self.identity.clone(),
            host: host.to_string(),
            pid: pid.parse().unwrap_or(0),
            concurrency: self.concurrency,
            queues: self.queues.clone(),
            running,
            completed: self.completed.load(Ordering::Relaxed),
            at_ms: warren_core::messages::now_ms(),
            functions: Some(self.functions.clone()),
            commands: self.commands.clone(),
            draining: self.drain.is_started(),
        }
    }

    /// Asks running tasks with these keys to stop and never starts them later.
    pub fn cancel(&self, keys: &[String]) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if let Some(flag) = running.get(k) {
                flag.store(true, Ordering::Relaxed);
            }
            cancelled.insert(k.clone());
        }
    }

    /// Asks every running task to stop (a restart).
    pub fn stop_all(&self) {
        for flag in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `warren cancel` named `key` while this worker ran.
    pub fn is_cancelled(&self, key: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Runs<RunResult>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The execution `id`'s result handle, if this worker has it.
    pub fn known(&self, id: &RunId) -> Option<RunResult> {
        self.runs().get(id)
    }

    /// A new execution, about to wait for a slot.
    pub fn track(&self, id: RunId, result: RunResult) {
        self.runs().insert(id, result);
    }

    /// Forgets an execution that never ran, so that a copy of its message
    /// waiting on it starts on its own.
    pub fn forget_run(&self, id: &RunId) {
        self.runs().remove(id);
    }

    /// Keeps a finished execution for redelivered copies.
    pub fn remember(&self, id: RunId) {
        self.runs().finished(id);
    }
}

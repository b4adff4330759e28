//! The worker loop: consume work, run it off the async runtime, report, ack.
//!
//! Order matters for "nothing lost": a work message is acked only after the
//! outcome it produced is confirmed by RabbitMQ on the results queue. A worker
//! killed at any point leaves its unacked messages to be redelivered to another
//! worker. Outcomes are batched: whatever finished while the previous report was
//! being confirmed goes in the next one, and while other tasks still run here a
//! report waits up to [`REPORT_LINGER`] for their outcomes too.
//!
//! Task functions are plain blocking code; they run on tokio's blocking pool,
//! at most `concurrency` at a time, so the runtime stays free to receive and
//! report.
//!
//! The connection to RabbitMQ may drop (a broker restart, a network blip). The
//! worker then reconnects ([`warren_core::reconnect::supervise`]) while running
//! tasks carry on: their outcomes are reported on the new connection, and the
//! redelivered copies of their messages are answered from [`Recent`] instead of
//! running again.
//!
//! Before starting a task the worker records the start in Redis
//! ([`Store::start`], its only write): a task cancelled, finished or forgotten
//! before it began is not started, and a task whose earlier starts all died
//! with their workers more than `allowed_failures` times ends as
//! `KilledWorker` instead of killing another worker. Because only starts
//! count, a large prefetch is honest: messages a dead worker merely held are
//! redelivered without counting against the task.
//! Running tasks are asked to stop ([`crate::cancel`]) when they are cancelled,
//! on restart, and at their time limit, which also frees their slot at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, Consumer};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use warren_core::messages::{
    ClientEvent, ClientEvents, Control, Outcome, PROTOCOL_VERSION, TaskFailure, TaskResult,
    WorkMessage, WorkerInfo, WorkerReport, decode, decode_work,
};
use warren_core::metrics::{Histogram, Metrics};
use warren_core::store::{Start, Store};
use warren_core::topology::{DEAD_ROUTING_KEY, ORIGIN_HEADER, REASON_HEADER, Topology};
use warren_core::{Settings, amqp, sizing};

use crate::drain::{self, Answer, Drain, Pack};
use crate::registry::{CallSite, Registry};
use crate::slots::Slots;
use crate::watchdog::Watchdog;

/// Reports sent at most in one message.
const REPORT_BATCH: usize = 512;
/// Room in a report message for its envelope and the worker's name.
const REPORT_ENVELOPE: usize = 1024;
/// How long a report waits for the outcomes of tasks still running here.
const REPORT_LINGER: Duration = Duration::from_millis(3);
/// Finished outcomes remembered to answer redeliveries without running again.
const RECENT_CAPACITY: usize = 10_000;
/// Cancelled keys remembered so their messages are never started.
const CANCELLED_CAPACITY: usize = 100_000;
/// How often a worker tells the scheduler it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A worker: settings, functions, and the queues it serves.
pub struct Worker {
    settings: Settings,
    registry: Arc<Registry>,
    queues: Vec<String>,
    started_after: Duration,
}

/// The acknowledgement of one work message, shared by the tasks it carries (a
/// pack holds several): the message is acked once every one is answered.
struct PackAck {
    pack: Mutex<Pack>,
    acker: Acker,
    /// The worker's count of messages not yet answered (a drain waits for 0).
    unanswered: Arc<AtomicUsize>,
}

impl PackAck {
    fn new(acker: Acker, tasks: usize, unanswered: &Arc<AtomicUsize>) -> Arc<Self> {
        unanswered.fetch_add(1, Ordering::SeqCst);
        Arc::new(Self {
            pack: Mutex::new(Pack::new(tasks)),
            acker,
            unanswered: unanswered.clone(),
        })
    }

    /// Whether a task of this message may start (see [`Pack::before_start`]).
    fn before_start(&self, draining: bool) -> drain::Start {
        self.pack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .before_start(draining)
    }

    /// The message's channel is gone (a lost connection): the broker has
    /// given it back to the queue, so this copy must not start.
    fn stale(&self) -> bool {
        self.acker.poisoned()
    }

    /// One task of the message is answered (its outcome confirmed, or it was
    /// skipped); the last one acks the message.
    async fn answered(&self) -> lapin::Result<()> {
        let answer = self
            .pack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered();
        let sent = match answer {
            Answer::NotYet => return Ok(()),
            Answer::Ack => self.acker.ack(BasicAckOptions::default()).await,
            Answer::Requeue => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                };
                self.acker.nack(requeue).await
            }
        };
        self.unanswered.fetch_sub(1, Ordering::SeqCst);
        sent.map(drop)
    }
}

/// Something for the reporter to publish.
enum Report {
    /// A task ended; answer its message once the outcome is confirmed.
    Done(Outcome, Arc<PackAck>),
    /// A task has been running for a while.
    Started(String),
    /// The worker is alive.
    Heartbeat(WorkerInfo),
}

/// What a task execution is known by: a retry or a run after a restart is a
/// different execution of the same key.
type RunId = (String, u64, u32);

/// Executions running or recently finished on this worker.
#[derive(Default)]
struct Recent {
    entries: HashMap<RunId, watch::Receiver<Option<TaskResult>>>,
    finished: VecDeque<RunId>,
}

/// The worker's Prometheus series.
struct WorkerMetrics {
    finished: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    timed_out: Arc<AtomicU64>,
    redelivered: Arc<AtomicU64>,
    running: Arc<std::sync::atomic::AtomicI64>,
    duration: Arc<Histogram>,
    latency: Arc<Histogram>,
}

impl WorkerMetrics {
    fn new(m: &Metrics) -> Self {
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
struct Shared {
    registry: Arc<Registry>,
    identity: String,
    started_after: Duration,
    slots: Arc<Slots>,
    epoch: AtomicU64,
    recent: Mutex<Recent>,
    /// Stop flags of the tasks running now, by key.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// Keys cancelled while this worker ran, oldest first.
    cancelled: Mutex<(HashSet<String>, VecDeque<String>)>,
    completed: AtomicU64,
    concurrency: usize,
    allowed_failures: u32,
    /// The largest result a task may return (setting `max_payload_bytes`).
    max_result_bytes: usize,
    /// The largest report message (setting `max_message_bytes`).
    max_message_bytes: usize,
    queues: Vec<String>,
    /// The registry's names, sorted, as heartbeats announce them.
    functions: Vec<String>,
    metrics: WorkerMetrics,
    /// Started by the first SIGTERM or Ctrl-C.
    drain: Arc<Drain>,
    /// Whether this process was just stopped (see [`Watchdog`]).
    watchdog: Arc<Watchdog>,
    /// Work messages taken and not yet acked or given back.
    unanswered: Arc<AtomicUsize>,
    reports: mpsc::UnboundedSender<Report>,
    pending_reports: tokio::sync::Mutex<mpsc::UnboundedReceiver<Report>>,
}

impl Worker {
    /// A worker serving the `default` queue.
    pub fn new(settings: Settings, registry: Registry) -> Self {
        Self {
            settings,
            registry: Arc::new(registry),
            queues: vec!["default".into()],
            started_after: Duration::from_millis(100),
        }
    }

    /// Serve these work queues instead of `default`.
    pub fn queues(mut self, queues: Vec<String>) -> Self {
        self.queues = queues;
        self
    }

    /// Report a task as `processing` once it has run this long (short tasks
    /// never cost a message for it).
    pub fn started_after(mut self, d: Duration) -> Self {
        self.started_after = d;
        self
    }

    /// Runs until interrupted, reconnecting whenever RabbitMQ goes away.
    pub async fn run(self) -> anyhow::Result<()> {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Metrics::new();
        warren_core::metrics::serve(&self.settings.metrics_addr, metrics.clone()).await?;
        let shared = Arc::new(Shared {
            registry: self.registry.clone(),
            identity: format!("{host}:{}", std::process::id()),
            started_after: self.started_after,
            slots: Slots::new(self.settings.effective_concurrency()),
            epoch: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
            running: Mutex::new(HashMap::new()),
            cancelled: Mutex::new((HashSet::new(), VecDeque::new())),
            completed: AtomicU64::new(0),
            concurrency: self.settings.effective_concurrency(),
            allowed_failures: self.settings.allowed_failures,
            max_result_bytes: self.settings.max_payload_bytes,
            max_message_bytes: self.settings.max_message_bytes,
            queues: self.queues.clone(),
            functions: self
                .registry
                .names()
                .into_iter()
                .map(String::from)
                .collect(),
            metrics: WorkerMetrics::new(&metrics),
            drain: Drain::new(),
            watchdog: Watchdog::start(),
            unanswered: Arc::new(AtomicUsize::new(0)),
            reports: tx,
            pending_reports: tokio::sync::Mutex::new(rx),
        });
        shared.drain.on_signals()?;
        let drain_timeout = Duration::from_secs(self.settings.drain_timeout_secs);
        let drained = drain::until_drained(&shared.drain, drain_timeout, || {
            shared.unanswered.load(Ordering::SeqCst)
        });
        tokio::select! {
            () = warren_core::reconnect::supervise("worker", || self.run_connected(shared.clone())) => Ok(()),
            done = drained => {
                if done {
                    info!("drained: every task it held is reported or given back; exiting");
                    Ok(())
                } else {
                    anyhow::bail!(
                        "the drain timed out after {}s (setting drain_timeout_secs) with {} messages unanswered: their tasks will run again elsewhere",
                        drain_timeout.as_secs(),
                        shared.unanswered.load(Ordering::SeqCst)
                    )
                }
            }
        }
    }

    /// One connection's life: declare, consume, run, report, until it breaks.
    async fn run_connected(&self, shared: Arc<Shared>) -> anyhow::Result<()> {
        let identity = &shared.identity;
        let topology = Topology::from_settings(&self.settings);
        let conn = amqp::connect(&self.settings, &format!("warren-worker {identity}")).await?;
        let store = Store::connect(&self.settings).await?;
        let setup = conn.create_channel().await?;
        let queue_refs: Vec<&str> = self.queues.iter().map(String::as_str).collect();
        topology.declare(&setup, &queue_refs).await?;

        let reporter = report_loop(
            amqp::confirm_channel(&conn).await?,
            topology.results_queue(),
            shared.clone(),
        );
        let control = control_loop(
            control_consumer(&conn, &topology, identity).await?,
            conn.create_channel().await?,
            shared.clone(),
        );

        let ch = conn.create_channel().await?;
        ch.basic_qos(
            self.settings.effective_prefetch(),
            BasicQosOptions::default(),
        )
        .await?;
        let mut streams = Vec::new();
        let mut tags = Vec::new();
        // A worker that reconnects while draining only reports.
        for q in self.queues.iter().filter(|_| !shared.drain.is_started()) {
            let tag = format!("warren-worker@{identity}/{q}");
            let consumer = ch
                .basic_consume(
                    topology.work_queue(q).into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            streams.push(consumer);
            tags.push(tag);
        }
        info!(worker = %identity, concurrency = self.settings.effective_concurrency(), queues = ?self.queues,
              namespace = %self.settings.namespace, functions = ?self.registry.names(), "worker ready");
        let dead = amqp::confirm_channel(&conn).await?;
        let mut work = futures::stream::select_all(streams);
        let consume = async {
            let mut cancelled = shared.drain.is_started();
            loop {
                let next = if cancelled {
                    work.next().await
                } else {
                    tokio::select! {
                        d = work.next() => d,
                        () = shared.drain.started() => {
                            // The management UI shows the consumers gone at once.
                            for tag in &tags {
                                ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                                    .await?;
                            }
                            cancelled = true;
                            continue;
                        }
                    }
                };
                let Some(delivery) = next else {
                    if cancelled {
                        // Consumers cancelled by the drain: the connection stays
                        // up for the reports until the worker exits.
                        std::future::pending::<()>().await;
                    }
                    break;
                };
                let delivery = delivery?;
                if shared.drain.is_started() {
                    // Delivered before the cancel took effect: give it back.
                    let requeue = BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    };
                    delivery.acker.nack(requeue).await?;
                    continue;
                }
                match decode_work(&delivery.data) {
                    Ok(tasks) => {
                        if delivery.redelivered {
                            shared.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        let ack = PackAck::new(delivery.acker, tasks.len(), &shared.unanswered);
                        for msg in tasks {
                            accept(&shared, &store, msg, ack.clone()).await?;
                        }
                    }
                    Err(e) => {
                        dead_letter(
                            &dead,
                            &topology,
                            delivery,
                            &format!("undecodable work message: {e}"),
                        )
                        .await?
                    }
                }
            }
            anyhow::Ok(())
        };
        let heartbeat = async {
            let mut told_draining = shared.drain.is_started();
            loop {
                let _ = shared.reports.send(Report::Heartbeat(shared.info()));
                tokio::select! {
                    () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                    // `warren workers` shows the drain at once.
                    () = shared.drain.started(), if !told_draining => told_draining = true,
                }
            }
        };
        tokio::select! {
            r = consume => r?,
            r = reporter => r?,
            r = control => r?,
            () = heartbeat => {}
        }
        anyhow::bail!("the connection to RabbitMQ closed")
    }
}

impl Shared {
    /// This worker as `warren workers` shows it.
    fn info(&self) -> WorkerInfo {
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
            draining: self.drain.is_started(),
        }
    }

    /// Asks running tasks with these keys to stop and never starts them later.
    fn cancel(&self, keys: &[String]) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if let Some(flag) = running.get(k) {
                flag.store(true, Ordering::Relaxed);
            }
            if cancelled.0.insert(k.clone()) {
                cancelled.1.push_back(k.clone());
            }
        }
        while cancelled.1.len() > CANCELLED_CAPACITY {
            if let Some(old) = cancelled.1.pop_front() {
                cancelled.0.remove(&old);
            }
        }
    }

    /// Asks every running task to stop (a restart).
    fn stop_all(&self) {
        for flag in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn is_cancelled(&self, key: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .contains(key)
    }
}

/// What to do with a work message before it takes a slot.
enum Begin {
    Run,
    /// Cancelled, already final, gone, or retried since.
    Skip,
    /// Its earlier starts all died with their workers: this many.
    Killed(u32),
}

/// Records the start in Redis and decides. A failed write does not stop the
/// task (execution is at-least-once), it only goes uncounted.
async fn begin(shared: &Shared, store: &Store, key: &str, attempt: u32) -> Begin {
    match store.start(key, attempt).await {
        Ok(Start::Skip) => Begin::Skip,
        Ok(Start::Run(n)) if n > shared.allowed_failures + 1 => Begin::Killed(n - 1),
        Ok(Start::Run(_)) => Begin::Run,
        Err(e) => {
            debug!(error = %e, "could not record the start; running it");
            Begin::Run
        }
    }
}

/// Starts a work message, or answers it from an execution this worker already
/// ran or is running (a redelivery after a reconnect). In-memory checks happen
/// here; the Redis start happens in the task's own future, so starts of many
/// messages overlap instead of queueing behind each other.
async fn accept(
    shared: &Arc<Shared>,
    store: &Store,
    msg: WorkMessage,
    ack: Arc<PackAck>,
) -> anyhow::Result<()> {
    shared.watchdog.settle().await;
    if ack.stale() {
        debug!(key = %msg.key, "not starting: its channel closed, the broker requeued it");
        // Acking on a closed channel does nothing; it only counts the answer.
        let _ = ack.answered().await;
        return Ok(());
    }
    if msg.epoch < shared.epoch.load(Ordering::SeqCst) || shared.is_cancelled(&msg.key) {
        debug!(key = %msg.key, "not starting: cancelled, or from before a restart");
        ack.answered().await?;
        return Ok(());
    }
    let id: RunId = (msg.key.clone(), msg.epoch, msg.attempt);
    let known = shared
        .recent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entries
        .get(&id)
        .cloned();
    if let Some(mut rx) = known {
        debug!(key = %msg.key, "already ran or running here; answering the redelivery");
        let (shared, store) = (shared.clone(), store.clone());
        tokio::spawn(async move {
            let result = match rx.wait_for(Option::is_some).await {
                Ok(r) => r.clone(),
                Err(_) => None,
            };
            match result {
                Some(result) => {
                    let outcome = Outcome {
                        key: id.0,
                        result,
                        attempt: id.2,
                    };
                    let _ = shared.reports.send(Report::Done(outcome, ack));
                }
                // The original never ran: it was settled already (then so is
                // this copy, as its start will say), or its channel closed
                // before it started (then this copy is the one to run).
                None => {
                    if let Err(e) = accept_again(shared, store, msg, ack).await {
                        debug!(error = %e, "a redelivered copy could not start");
                    }
                }
            }
        });
        return Ok(());
    }
    let (tx, rx) = watch::channel(None);
    shared
        .recent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entries
        .insert(id.clone(), rx);
    let span = info_span!("task", key = %msg.key, func = %msg.func, attempt = msg.attempt);
    let shared = shared.clone();
    let store = store.clone();
    // In line now, in the order messages arrive (the task below may start
    // running later than a task spawned after it).
    let ticket = shared.slots.reserve(msg.priority);
    // The slot is taken first and the start recorded after: a start means
    // the task runs now, so a worker that dies holding prefetched messages
    // has not counted them against their tasks.
    tokio::spawn(
        async move {
            // Boxed so that giving the task back drops its place in line.
            let mut wait = Box::pin(ticket.wait());
            let permit = tokio::select! {
                permit = &mut wait => permit,
                // A task waiting for a slot when the drain begins goes back
                // now, unless its message already started (then it runs).
                () = shared.drain.started() => {
                    if ack.before_start(true) == drain::Start::GiveBack {
                        debug!("draining: giving back a task that had not started");
                        drop(wait);
                        forget_run(&shared, &id);
                        let _ = ack.answered().await;
                        return;
                    }
                    (&mut wait).await
                }
            };
            // A stopped (SIGSTOP) or cut-off worker resumes with deliveries
            // of a connection the broker has closed and requeued: another
            // worker may be running them already.
            shared.watchdog.settle().await;
            if ack.stale() {
                debug!("not starting: its channel closed, the broker requeued it");
                drop(permit);
                forget_run(&shared, &id);
                let _ = ack.answered().await;
                return;
            }
            if ack.before_start(shared.drain.is_started()) == drain::Start::GiveBack {
                debug!("draining: giving back a task that had not started");
                drop(permit);
                forget_run(&shared, &id);
                let _ = ack.answered().await;
                return;
            }
            match begin(&shared, &store, &msg.key, msg.attempt).await {
                Begin::Run => {}
                Begin::Skip => {
                    debug!("not starting: cancelled, already final, gone or retried");
                    drop(permit);
                    forget_run(&shared, &id);
                    drop(tx);
                    let _ = ack.answered().await;
                    return;
                }
                Begin::Killed(deaths) => {
                    drop(permit);
                    warn!(
                        deaths,
                        "not starting: every earlier run died with its worker"
                    );
                    let failure = TaskFailure::killed_worker(&msg.key, &msg.func, Some(deaths));
                    report(&shared, id, &tx, TaskResult::Err(failure), ack);
                    return;
                }
            }
            let result = execute(&shared, msg).await;
            drop(permit);
            shared.completed.fetch_add(1, Ordering::Relaxed);
            report(&shared, id, &tx, result, ack);
        }
        .instrument(span),
    );
    Ok(())
}

/// [`accept`] for a copy whose original never ran (boxed: `accept` spawns it).
fn accept_again(
    shared: Arc<Shared>,
    store: Store,
    msg: WorkMessage,
    ack: Arc<PackAck>,
) -> futures::future::BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move { accept(&shared, &store, msg, ack).await })
}

/// Remembers an execution's result (for redelivered copies) and hands its
/// outcome to the reporter, which answers the message once it is confirmed.
fn report(
    shared: &Shared,
    id: RunId,
    tx: &watch::Sender<Option<TaskResult>>,
    result: TaskResult,
    ack: Arc<PackAck>,
) {
    tx.send_replace(Some(result.clone()));
    remember(shared, id.clone());
    let outcome = Outcome {
        key: id.0,
        result,
        attempt: id.2,
    };
    let _ = shared.reports.send(Report::Done(outcome, ack));
}

/// Forgets an execution that never ran, so that a copy of its message
/// waiting on it starts on its own (see [`accept`]).
fn forget_run(shared: &Shared, id: &RunId) {
    shared
        .recent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entries
        .remove(id);
}

/// Keeps the last [`RECENT_CAPACITY`] finished executions.
fn remember(shared: &Shared, id: RunId) {
    let mut recent = shared.recent.lock().unwrap_or_else(|p| p.into_inner());
    recent.finished.push_back(id);
    while recent.finished.len() > RECENT_CAPACITY {
        if let Some(old) = recent.finished.pop_front() {
            recent.entries.remove(&old);
        }
    }
}

/// Runs the function on the blocking pool; says `processing` if it takes a
/// while; gives up at the task's time limit (asking the function to stop).
async fn execute(shared: &Shared, msg: WorkMessage) -> TaskResult {
    let registry = shared.registry.clone();
    let identity = shared.identity.clone();
    let key = msg.key.clone();
    let limit = msg
        .timeout_secs
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
    let stop = Arc::new(AtomicBool::new(false));
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone(), stop.clone());
    let started = std::time::Instant::now();
    if let Some(at) = msg.dispatched_at_ms {
        let waited = warren_core::messages::now_ms().saturating_sub(at);
        shared.metrics.latency.observe(waited as f64 / 1000.0);
    }
    shared.metrics.running.fetch_add(1, Ordering::Relaxed);
    let flag = stop.clone();
    let mut handle = tokio::task::spawn_blocking(move || {
        let site = CallSite {
            key: &msg.key,
            worker: &identity,
        };
        crate::cancel::with_flag(flag, || registry.call(&msg.func, msg.args, site))
    });
    let deadline = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut told_started = false;
    let joined = loop {
        tokio::select! {
            r = &mut handle => break Some(r),
            () = &mut deadline => break None,
            () = tokio::time::sleep(shared.started_after), if !told_started => {
                told_started = true;
                let _ = shared.reports.send(Report::Started(key.clone()));
            }
        }
    };
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "task ended"
    );
    shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
    shared
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let Some(joined) = joined else {
        shared.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
        // The slot is free now; a cooperative function stops soon, others run
        // on in the blocking pool and their result is dropped.
        stop.store(true, Ordering::Relaxed);
        let secs = limit.map_or(0.0, |d| d.as_secs_f64());
        info!(limit_secs = secs, "task exceeded its time limit");
        return TaskResult::Err(TaskFailure::new(
            "TimeoutError",
            format!("task {key} exceeded its time limit of {secs}s"),
            format!(
                "Traceback (most recent call last):\n  task {key} on worker {}\nTimeoutError: time limit of {secs}s exceeded",
                shared.identity
            ),
        ));
    };
    match joined {
        Ok(Ok(v)) => match oversized(&key, &v, shared.max_result_bytes) {
            Some(failure) => {
                shared.metrics.failed.fetch_add(1, Ordering::Relaxed);
                info!(error = %failure, "task result refused");
                TaskResult::Err(failure)
            }
            None => {
                shared.metrics.finished.fetch_add(1, Ordering::Relaxed);
                TaskResult::Ok(v)
            }
        },
        Ok(Err(failure)) => {
            shared.metrics.failed.fetch_add(1, Ordering::Relaxed);
            info!(error = %failure, "task failed");
            TaskResult::Err(failure)
        }
        // The registry catches panics, so this is a cancelled blocking pool.
        Err(e) => TaskResult::Err(TaskFailure::new("WorkerError", e.to_string(), "")),
    }
}

/// The error of a result too big to carry: refused here, as the task's own
/// error, rather than a report the broker or the clients could not take.
fn oversized(key: &str, value: &serde_json::Value, limit: usize) -> Option<TaskFailure> {
    let size = sizing::json_len(value);
    (size > limit).then(|| {
        TaskFailure::new(
            "PayloadTooLarge",
            format!(
                "the result of task {key} is {size} bytes ({}), over the limit of {limit} bytes ({}, setting max_payload_bytes)",
                sizing::human_bytes(size),
                sizing::human_bytes(limit)
            ),
            "",
        )
    })
}

/// Publishes reports in batches, then acks the work they answer. Reports that
/// outlive their connection still go out (their acks fail harmlessly: the
/// broker already requeued those messages, and [`accept`] answers them).
async fn report_loop(
    ch: Channel,
    results_queue: String,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut rx = shared.pending_reports.lock().await;
    let identity = &shared.identity;
    while let Some(first) = rx.recv().await {
        let mut outcomes = Vec::new();
        let mut ackers = Vec::new();
        let mut started = Vec::new();
        let mut beats = Vec::new();
        let mut take = |r: Report| match r {
            Report::Done(o, a) => {
                outcomes.push(o);
                ackers.push(a);
            }
            Report::Started(k) => started.push(k),
            Report::Heartbeat(info) => beats.push(info),
        };
        take(first);
        let mut taken = 1;
        while taken < REPORT_BATCH {
            match rx.try_recv() {
                Ok(r) => take(r),
                Err(_) => break,
            }
            taken += 1;
        }
        // While other tasks are running here, more outcomes are due soon: wait
        // a moment for them, so a flood of short tasks is reported in a few
        // large messages rather than in thousands of small ones (the broker's
        // cost is per message). A lone task is reported at once.
        let deadline = tokio::time::Instant::now() + REPORT_LINGER;
        while taken < REPORT_BATCH && shared.slots.busy() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => take(r),
                _ => break,
            }
            taken += 1;
        }
        let mut confirms = Vec::new();
        let props = amqp::json_properties(&[("worker", identity)]);
        if let Some(info) = beats.pop() {
            let body = serde_json::to_vec(&WorkerReport::Heartbeat {
                v: PROTOCOL_VERSION,
                info,
            })?;
            confirms.push(amqp::publish(&ch, "", &results_queue, &body, props.clone()).await?);
        }
        if !started.is_empty() {
            let body = serde_json::to_vec(&WorkerReport::Started {
                v: PROTOCOL_VERSION,
                worker: identity.clone(),
                keys: started,
            })?;
            confirms.push(amqp::publish(&ch, "", &results_queue, &body, props.clone()).await?);
        }
        // Results are values: a batch of big ones is split to stay under the
        // broker's limit (one publish over it would close this channel).
        let size = |o: &Outcome| sizing::json_len(o) + 1;
        let budget = shared.max_message_bytes.saturating_sub(REPORT_ENVELOPE);
        for outcomes in sizing::split_by_bytes(outcomes, size, REPORT_BATCH, budget) {
            let body = serde_json::to_vec(&WorkerReport::Outcomes {
                v: PROTOCOL_VERSION,
                worker: identity.clone(),
                outcomes,
            })?;
            confirms.push(amqp::publish(&ch, "", &results_queue, &body, props.clone()).await?);
        }
        amqp::confirmed(confirms, &results_queue).await?;
        for a in ackers {
            if let Err(e) = a.answered().await {
                debug!(error = %e, "ack on a closed channel; the redelivery will be answered from memory");
            }
        }
    }
    Ok(())
}

/// A private queue bound to the control exchange: every worker gets every broadcast.
async fn control_consumer(
    conn: &Connection,
    topology: &Topology,
    identity: &str,
) -> anyhow::Result<Consumer> {
    let ch = conn.create_channel().await?;
    let tag = format!("warren-worker@{identity}/control");
    let (_, consumer) = amqp::private_queue(&ch, Some(&topology.control_exchange()), &tag).await?;
    Ok(consumer)
}

async fn control_loop(
    mut consumer: Consumer,
    reply: Channel,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        match decode::<Control>(&delivery.data) {
            Ok(Control::Cancel { keys, .. }) => {
                debug!(keys = keys.len(), "cancel");
                shared.cancel(&keys);
            }
            Ok(Control::Restart {
                epoch: e, reply_to, ..
            }) => {
                shared.epoch.fetch_max(e, Ordering::SeqCst);
                shared.stop_all();
                info!(epoch = e, "restart: dropping older work");
                let body = serde_json::to_vec(&ClientEvents {
                    v: PROTOCOL_VERSION,
                    events: vec![ClientEvent::WorkerReady {
                        worker: shared.identity.clone(),
                    }],
                })?;
                reply
                    .basic_publish(
                        "".into(),
                        reply_to.as_str().into(),
                        Default::default(),
                        &body,
                        amqp::json_properties(&[]),
                    )
                    .await?;
            }
            Err(e) => warn!(error = %e, "ignoring an undecodable control message"),
        }
    }
    anyhow::bail!("the control consumer ended")
}

/// Moves an undecodable work message to `<ns>.dead` with the reason.
async fn dead_letter(
    ch: &Channel,
    topology: &Topology,
    delivery: Delivery,
    reason: &str,
) -> anyhow::Result<()> {
    warn!(reason, "dead-lettering a malformed work message");
    let confirm = amqp::publish(
        ch,
        &topology.dead_letter_exchange(),
        DEAD_ROUTING_KEY,
        &delivery.data,
        amqp::dead_letter_properties(
            &[
                (REASON_HEADER, reason),
                (ORIGIN_HEADER, delivery.routing_key.as_str()),
            ],
            &delivery.properties,
            &delivery.data,
        ),
    )
    .await?;
    amqp::confirmed(vec![confirm], "the dead-letter exchange").await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_over_the_limit_is_the_tasks_error_naming_both_sizes() {
        let v = serde_json::json!("x".repeat(100));
        assert!(oversized("k-1", &v, 102).is_none());
        let failure = oversized("k-1", &v, 101).unwrap();
        assert_eq!(failure.kind, "PayloadTooLarge");
        assert!(
            failure.message.contains("is 102 bytes"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("limit of 101 bytes"),
            "{}",
            failure.message
        );
    }
}

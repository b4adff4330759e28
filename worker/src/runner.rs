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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use warren_core::dead_letter::dead_letter;
use warren_core::message_limit::learning;
use warren_core::messages::{Outcome, TaskFailure, TaskResult, WorkMessage, decode_work};
use warren_core::metrics::Metrics;
use warren_core::msgauth::Family;
use warren_core::store::Store;
use warren_core::topology::Topology;
use warren_core::{Settings, amqp};

use crate::admission::{self, Arrival, BeforeRun, Begin, OnArrival};
use crate::control::{control_consumer, control_loop};
use crate::drain::{self, Drain};
use crate::error::WorkerError;
use crate::execute::execute;
use crate::memory::{BoundedSet, RunId, Runs};
use crate::pack_ack::PackAck;
use crate::registry::Registry;
use crate::report::{Report, report_loop};
use crate::seat::Seat;
use crate::shared::{CANCELLED_CAPACITY, RECENT_CAPACITY, RunResult, Shared, WorkerMetrics};
use crate::slots::Slots;
use crate::watchdog::Watchdog;

/// How often a worker tells the scheduler it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A worker: settings, functions, and the queues it serves.
pub struct Worker {
    settings: Settings,
    registry: Arc<Registry>,
    queues: Vec<String>,
    started_after: Duration,
    on_restart: Option<crate::shared::OnRestart>,
}

impl Worker {
    /// A worker serving the `default` queue.
    pub fn new(settings: Settings, registry: Registry) -> Self {
        Self {
            settings,
            registry: Arc::new(registry),
            queues: vec!["default".into()],
            started_after: Duration::from_millis(100),
            on_restart: None,
        }
    }

    /// Calls `hook` (on a blocking thread) when a client restarts the
    /// namespace, after running tasks were stopped and before the worker
    /// says it is ready: the Python worker starts its pool afresh there, so
    /// edited modules are imported again.
    pub fn on_restart(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_restart = Some(Arc::new(hook));
        self
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

    /// [`Worker::run`] on `runtime`, for a binary's `main`: once the worker
    /// is done the runtime is shut down without waiting for task functions
    /// still running on its blocking pool. After a drain that timed out
    /// (a task that never returns), dropping the runtime would wait for them
    /// for ever, and the process would never exit.
    pub fn run_on(self, runtime: tokio::runtime::Runtime) -> Result<(), WorkerError> {
        let done = runtime.block_on(self.run());
        runtime.shutdown_timeout(Duration::from_millis(100));
        done
    }

    /// Runs until interrupted, reconnecting whenever RabbitMQ goes away.
    pub async fn run(mut self) -> Result<(), WorkerError> {
        // Re-run as a child of a worker with `--isolation process`: run one
        // task and exit (before anything binds a port or connects).
        if crate::isolation::is_child() {
            crate::isolation::child_main(&self.registry);
        }
        // The settings hold the URLs now: the copies in the environment
        // block, which programs could read through /proc, are hidden.
        let (scrubbed, leaked) = crate::secrets::scrub_environment();
        if !scrubbed.is_empty() {
            debug!(variables = ?scrubbed, "passwords hidden from /proc/self/environ");
        }
        if !leaked.is_empty() {
            warn!(variables = ?leaked, "these passwords are still readable in /proc/<worker pid>/environ by programs of the worker's user: run programs as another user (--run-as) or put them in warren.toml");
        }
        // Started by a Python LocalCluster: stop with it.
        let _lifeline = warren_core::lifeline::watch();
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Metrics::new();
        let addr = &self.settings.metrics_addr;
        warren_core::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|source| WorkerError::Metrics {
                addr: addr.clone(),
                source,
            })?;
        for q in &self.queues {
            warren_core::limits::work_queue(&self.settings.namespace, q)
                .map_err(|e| WorkerError::Invalid(format!("--queues: {e}")))?;
        }
        let identity = format!("{host}:{}", std::process::id());
        let command_queue = warren_core::command::COMMAND_QUEUE.to_string();
        if !self.settings.allowed_commands.is_empty() && !self.queues.contains(&command_queue) {
            self.queues.push(command_queue);
        }
        let registry = if self.settings.allowed_commands.is_empty() {
            self.registry.clone()
        } else {
            let mut r = (*self.registry).clone();
            let run_as = match self.settings.run_as.as_str() {
                "" => None,
                user => Some(crate::command::RunAs::resolve(user).map_err(WorkerError::Invalid)?),
            };
            let programs = crate::command::Programs {
                rules: self.settings.allowed_commands.clone(),
                env: self.settings.allowed_env.clone(),
                cwd: self.settings.allowed_cwd.clone(),
                run_as,
                max_output: self.settings.max_output_bytes,
                worker: identity.clone(),
            };
            let store = Store::connect(&self.settings).await?;
            crate::command::register(&mut r, programs, store, tokio::runtime::Handle::current());
            Arc::new(r)
        };
        let shared = Arc::new(Shared {
            registry: registry.clone(),
            identity,
            started_after: self.started_after,
            on_restart: self.on_restart.clone(),
            slots: Slots::new(self.settings.effective_concurrency()),
            epoch: AtomicU64::new(0),
            recent: Mutex::new(Runs::new(RECENT_CAPACITY)),
            running: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(BoundedSet::new(CANCELLED_CAPACITY)),
            completed: AtomicU64::new(0),
            concurrency: self.settings.effective_concurrency(),
            allowed_failures: self.settings.allowed_failures,
            max_result_bytes: self.settings.max_payload_bytes,
            topology: Topology::from_settings(&self.settings).with_keys(
                self.settings
                    .keyring()
                    .map_err(|e| WorkerError::Invalid(e.to_string()))?,
            ),
            queues: self.queues.clone(),
            isolation: self.settings.isolation,
            max_memory_per_task_mb: self.settings.max_memory_per_task_mb,
            functions: registry.names().into_iter().map(String::from).collect(),
            commands: self.settings.allowed_commands.clone(),
            metrics: WorkerMetrics::new(&metrics),
            drain: Drain::new(),
            watchdog: Watchdog::start(),
            unanswered: Arc::new(AtomicUsize::new(0)),
            reports: tx,
            pending_reports: tokio::sync::Mutex::new(rx),
        });
        shared.drain.on_signals().map_err(WorkerError::Signals)?;
        let drain_timeout = Duration::from_secs(self.settings.drain_timeout_secs);
        let drained = drain::until_drained(&shared.drain, drain_timeout, || {
            shared.unanswered.load(Ordering::SeqCst)
        });
        tokio::select! {
            () = warren_core::reconnect::supervise("worker", || learning(shared.topology.message_limit(), self.run_connected(shared.clone()))) => Ok(()),
            done = drained => {
                if done {
                    info!("drained: every task it held is reported or given back; exiting");
                    Ok(())
                } else {
                    Err(WorkerError::DrainTimedOut {
                        secs: drain_timeout.as_secs(),
                        unanswered: shared.unanswered.load(Ordering::SeqCst),
                    })
                }
            }
        }
    }

    /// One connection's life: declare, consume, run, report, until it breaks.
    async fn run_connected(&self, shared: Arc<Shared>) -> anyhow::Result<()> {
        let identity = &shared.identity;
        let topology = &shared.topology;
        let conn = amqp::connect(&self.settings, &format!("warren-worker {identity}")).await?;
        let store = Store::connect(&self.settings).await?;
        store.sync_message_limit(topology.message_limit()).await?;
        if let Some(w) = topology.message_limit().warning() {
            tracing::warn!("{w}");
        }
        let setup = conn.create_channel().await?;
        let queue_refs: Vec<&str> = self.queues.iter().map(String::as_str).collect();
        topology.declare(&setup, &queue_refs).await?;

        let reporter = report_loop(
            amqp::confirm_channel(&conn).await?,
            topology.results_queue(),
            shared.clone(),
        );
        let control = control_loop(
            control_consumer(&conn, topology, identity).await?,
            conn.create_channel().await?,
            store.clone(),
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
                    amqp::name(&topology.work_queue(q))?,
                    amqp::name(&tag)?,
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
                if let Err(why) =
                    topology
                        .auth()
                        .check(Family::Work, &delivery.data, &delivery.properties)
                {
                    // Forged or altered: nothing of it runs, and it is kept.
                    dead_letter(&dead, topology, delivery, &why).await?;
                    continue;
                }
                match decode_work(&delivery.data) {
                    Ok(tasks) => {
                        if delivery.redelivered {
                            shared.metrics.redelivered.fetch_add(1, Ordering::Relaxed);
                        }
                        let ack = PackAck::new(delivery.acker, tasks.len(), &shared.unanswered);
                        for msg in tasks {
                            // Anyone who can publish to a work queue skips
                            // the scheduler's checks: they are made again.
                            match msg.validate() {
                                Ok(()) => accept(&shared, &store, msg, ack.clone()).await?,
                                Err(reason) => refuse(&shared, msg, reason, ack.clone()).await?,
                            }
                        }
                    }
                    Err(e) => {
                        let reason = format!("undecodable work message: {e}");
                        dead_letter(&dead, topology, delivery, &reason).await?
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

/// Starts a work message, or answers it from an execution this worker already
/// ran or is running (a redelivery after a reconnect). In-memory checks happen
/// here ([`admission::on_arrival`]); the Redis start happens in the task's own
/// future, so starts of many messages overlap instead of queueing behind each
/// other.
async fn accept(
    shared: &Arc<Shared>,
    store: &Store,
    msg: WorkMessage,
    ack: Arc<PackAck>,
) -> anyhow::Result<()> {
    shared.watchdog.settle().await;
    let id: RunId = (msg.key.clone(), msg.epoch, msg.attempt);
    let known = shared.known(&id);
    let arrival = Arrival {
        stale: ack.stale(),
        epoch: msg.epoch,
        current_epoch: shared.epoch.load(Ordering::SeqCst),
        cancelled: shared.is_cancelled(&msg.key),
        known: known.is_some(),
    };
    match (admission::on_arrival(arrival), known) {
        (OnArrival::Answer, _) if arrival.stale => {
            debug!(key = %msg.key, "not starting: its channel closed, the broker requeued it");
            // Acking on a closed channel does nothing; it only counts the answer.
            let _ = ack.answered().await;
        }
        (OnArrival::Answer, _) => {
            debug!(key = %msg.key, "not starting: cancelled, or from before a restart");
            ack.answered().await?;
        }
        (OnArrival::FromMemory, Some(rx)) => {
            debug!(key = %msg.key, "already ran or running here; answering the redelivery");
            tokio::spawn(answer_from_memory(
                shared.clone(),
                store.clone(),
                msg,
                ack,
                rx,
            ));
        }
        (OnArrival::FromMemory | OnArrival::Queue, _) => queue(shared, store, msg, ack, id),
    }
    Ok(())
}

/// Answers a task whose work message breaks the rules without running it:
/// its future fails with `InvalidTask` and the reason (a message whose key
/// itself is unusable is only acked, there being no future to fail).
async fn refuse(
    shared: &Arc<Shared>,
    msg: WorkMessage,
    reason: String,
    ack: Arc<PackAck>,
) -> anyhow::Result<()> {
    warn!(key = %warren_core::taskkey::shown(&msg.key), %reason, "refusing an invalid work message");
    if warren_core::taskkey::validate_key(&msg.key).is_err() {
        ack.answered().await?;
        return Ok(());
    }
    let failure = TaskFailure::new(
        "InvalidTask",
        format!("task {} was not run: {reason}", msg.key),
        "",
    );
    let outcome = Outcome {
        key: msg.key,
        result: TaskResult::Err(failure),
        attempt: msg.attempt,
    };
    let _ = shared.reports.send(Report::Done(outcome, ack));
    Ok(())
}

/// Answers a redelivered copy with the result of the run this worker has.
async fn answer_from_memory(
    shared: Arc<Shared>,
    store: Store,
    msg: WorkMessage,
    ack: Arc<PackAck>,
    mut rx: RunResult,
) {
    let result = match rx.wait_for(Option::is_some).await {
        Ok(r) => r.clone(),
        Err(_) => None,
    };
    match result {
        Some(result) => {
            let outcome = Outcome {
                key: msg.key,
                result,
                attempt: msg.attempt,
            };
            let _ = shared.reports.send(Report::Done(outcome, ack));
        }
        // The original never ran: it was settled already (then so is this
        // copy, as its start will say), or its channel closed before it
        // started (then this copy is the one to run).
        None => {
            if let Err(e) = accept_again(shared, store, msg, ack).await {
                debug!(error = %e, "a redelivered copy could not start");
            }
        }
    }
}

/// Takes a place in line for a slot now, in delivery order, and spawns the
/// task: once it holds the slot, [`admission::before_run`] and the start
/// recorded in Redis ([`admission::after_start`]) decide whether it runs.
fn queue(shared: &Arc<Shared>, store: &Store, msg: WorkMessage, ack: Arc<PackAck>, id: RunId) {
    let (tx, rx) = watch::channel(None);
    shared.track(id.clone(), rx);
    let span = info_span!("task", key = %msg.key, func = %msg.func, attempt = msg.attempt);
    let shared = shared.clone();
    let store = store.clone();
    // The slot is taken first and the start recorded after: a start means
    // the task runs now, so a worker that dies holding prefetched messages
    // has not counted them against their tasks.
    let ticket = shared.slots.reserve(msg.priority);
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
                        shared.forget_run(&id);
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
            let facts = BeforeRun {
                stale: ack.stale(),
                give_back: !ack.stale()
                    && ack.before_start(shared.drain.is_started()) == drain::Start::GiveBack,
            };
            let begin = match admission::before_run(facts) {
                Some(decided) => decided,
                None => {
                    let start = store.start(&msg.key, msg.attempt).await;
                    if let Err(e) = &start {
                        debug!(error = %e, "could not record the start; running it");
                    }
                    admission::after_start(start, shared.allowed_failures)
                }
            };
            match begin {
                Begin::Run => {
                    let seat = Seat::new(
                        permit,
                        shared.slots.clone(),
                        msg.priority,
                        tokio::runtime::Handle::current(),
                    );
                    let result = execute(&shared, &store, msg, seat.clone()).await;
                    // Ended, or abandoned at its time limit: the slot is free
                    // either way, and a late rejoin takes none.
                    seat.close();
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    report(&shared, id, &tx, result, ack);
                }
                Begin::Skip | Begin::GiveBack => {
                    debug!(
                        ?begin,
                        "not starting: requeued, draining, cancelled, final or retried"
                    );
                    drop(permit);
                    shared.forget_run(&id);
                    drop(tx);
                    let _ = ack.answered().await;
                }
                Begin::Killed(deaths) => {
                    drop(permit);
                    warn!(
                        deaths,
                        "not starting: every earlier run died with its worker"
                    );
                    let failure = TaskFailure::killed_worker(&msg.key, &msg.func, Some(deaths));
                    report(&shared, id, &tx, TaskResult::Err(failure), ack);
                }
            }
        }
        .instrument(span),
    );
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
    shared.remember(id.clone());
    let outcome = Outcome {
        key: id.0,
        result,
        attempt: id.2,
    };
    let _ = shared.reports.send(Report::Done(outcome, ack));
}

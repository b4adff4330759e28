//! Intake: the scheduler's consumers, where every state change starts.
//!
//! Three queues feed it: client requests (`<ns>.submit`), worker reports
//! (`<ns>.results`) and work messages past the delivery-limit backstop
//! (`<ns>.killed`, quorum queues only).
//! Each wake-up takes every message already delivered (a micro-batch), applies
//! them to Redis in as few script calls as possible, tells clients, and only then
//! acks: a crash before the ack redelivers, and the scripts make that harmless.
//! A message that cannot be decoded is moved to `<ns>.dead` with the reason in a
//! header, so one bad message never blocks the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::Notify;
use tracing::{info, warn};
use warren_core::dead_letter::dead_letter;
use warren_core::messages::{
    ClientEvent, ClientRequest, Control, PROTOCOL_VERSION, Refusal, TaskSpec, WorkerReport, decode,
    decode_work,
};
use warren_core::metrics::Metrics;
use warren_core::msgauth::Family;
use warren_core::shutdown::Drain;
use warren_core::store::{Store, Transition};
use warren_core::topology::Topology;
use warren_core::{amqp, limits};

use crate::admission::admit;
use crate::batches::Batches;
use crate::decide::{self, Deferral};
use crate::eager::Eager;
use crate::notify::{Notifier, Outgoing};

/// Messages taken per wake-up at most.
const BATCH: usize = 256;
/// How often a drain still applying what it holds says what that is.
const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(5);
/// Transitions applied per Lua call at most.
const SCRIPT_CHUNK: usize = 16;

/// The scheduler's consumers and what they change.
pub struct Intake {
    ch: Channel,
    confirm: Channel,
    store: Store,
    topology: Topology,
    notifier: Notifier,
    wake: Arc<Notify>,
    submit: Consumer,
    results: Consumer,
    killed: Consumer,
    metrics: Arc<Metrics>,
    /// Its consumer tags, cancelled by a drain.
    tags: [String; 3],
    /// Tasks the scripts claim alone, published from here.
    eager: Eager,
}

impl Intake {
    /// Starts consuming the three queues for scheduler `id`.
    pub async fn new(
        conn: &Connection,
        id: &str,
        store: Store,
        topology: Topology,
        notifier: Notifier,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let ch = conn.create_channel().await?;
        ch.basic_qos(BATCH as u16 * 2, BasicQosOptions::default())
            .await?;
        // The scheduler's id names its host and pid, as its connection does.
        let tag = format!("warren-scheduler@{id}");
        let consume = |queue: String, suffix: &'static str| {
            let ch = ch.clone();
            let tag = format!("{tag}/{suffix}");
            async move {
                ch.basic_consume(
                    queue.into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
            }
        };
        let confirm = amqp::confirm_channel(conn).await?;
        let eager = Eager::new(
            id,
            confirm.clone(),
            store.clone(),
            topology.clone(),
            notifier.clone(),
            crate::dispatch::dispatched_counter(&metrics),
        );
        let tags = ["submit", "results", "killed"].map(|q| format!("{tag}/{q}"));
        let submit = consume(topology.submit_queue(), "submit").await?;
        let results = consume(topology.results_queue(), "results").await?;
        let killed = consume(topology.killed_queue(), "killed").await?;
        Ok(Self {
            confirm,
            ch,
            store,
            topology,
            notifier,
            wake,
            submit,
            results,
            killed,
            metrics,
            tags,
            eager,
        })
    }

    /// Adds `n` to the scheduler counter `name{labels}`.
    fn count(&self, name: &str, labels: &str, n: u64) {
        let help = match name {
            "warren_scheduler_requests_total" => "Client requests applied, by kind.",
            "warren_scheduler_tasks_submitted_total" => {
                "Tasks in submit batches (new or deduplicated)."
            }
            "warren_scheduler_reports_total" => "Worker reports applied, by kind.",
            "warren_scheduler_killed_total" => {
                "Tasks ended as KilledWorker by the work queue's delivery-limit backstop."
            }
            _ => "Messages moved to the dead-letter queue as malformed.",
        };
        self.metrics
            .counter(name, labels, help)
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Consumes until a consumer ends (the connection closed), or until the
    /// drain has cancelled the consumers and every batch in hand is applied
    /// and its eager publishes settled (then `Ok`). The three queues are
    /// served concurrently: a client's submit does not wait behind a batch of
    /// worker reports (the scripts are atomic in Redis, so their order
    /// between queues does not matter).
    pub async fn run(self, drain: &Drain) -> anyhow::Result<()> {
        let ended = |queue: &str| {
            if drain.is_started() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "the {queue} consumer was cancelled by the broker"
                ))
            }
        };
        // Which consumers are still delivering: a drain that takes long
        // says what it waits for.
        let open = [
            AtomicBool::new(true),
            AtomicBool::new(true),
            AtomicBool::new(true),
        ];
        let reports = async {
            serve(self.results.clone(), &open[0], |b| self.on_reports(b)).await?;
            ended("results")
        };
        let requests = async {
            serve(self.submit.clone(), &open[1], |b| self.on_requests(b)).await?;
            ended("submit")
        };
        let dead_lettered = async {
            serve(self.killed.clone(), &open[2], |b| self.on_killed(b)).await?;
            ended("killed")
        };
        // Surfaces a failed background settle (its claim stays in Redis and
        // is published again after the reconnect).
        let eager_settled = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                self.eager.reap().await?;
            }
        };
        // The management UI shows the consumers gone at once; what was
        // delivered before the cancel is applied, or redelivered elsewhere.
        let stop = async {
            drain.started().await;
            for tag in &self.tags {
                self.ch
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await?;
            }
            info!("draining: consumers cancelled; applying what is in hand");
            loop {
                tokio::time::sleep(DRAIN_REPORT_EVERY).await;
                let waiting: Vec<&str> = ["results", "submit", "killed"]
                    .into_iter()
                    .zip(&open)
                    .filter(|(_, o)| o.load(Ordering::Relaxed))
                    .map(|(q, _)| q)
                    .collect();
                info!(
                    consumers_open = ?waiting,
                    eager_windows = self.eager.in_flight(),
                    "draining: still applying what is in hand"
                );
            }
        };
        let consumers = futures::future::try_join3(reports, requests, dead_lettered);
        tokio::select! {
            r = consumers => {
                r?;
                self.eager.settle_all().await
            }
            r = eager_settled => r,
            r = stop => r,
        }
    }

    /// Client requests in order: each is answered before the next is read.
    async fn on_requests(&self, batch: Vec<Delivery>) -> anyhow::Result<()> {
        for delivery in batch {
            self.on_request(delivery).await?;
        }
        Ok(())
    }

    async fn on_request(&self, delivery: Delivery) -> anyhow::Result<()> {
        let reply_to = self.reply_queue(&delivery);
        if let Err(why) =
            self.topology
                .auth()
                .check(Family::Submit, &delivery.data, &delivery.properties)
        {
            return self.refuse_unsigned(delivery, &reply_to, &why).await;
        }
        let request = match decode::<ClientRequest>(&delivery.data) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .dead_letter(delivery, &format!("undecodable client request: {e}"))
                    .await;
            }
        };
        let mut out = Outgoing::default();
        match request {
            ClientRequest::Submit {
                batch,
                tasks,
                deps_in_flight,
                ..
            } => {
                self.count("warren_scheduler_requests_total", "kind=\"submit\"", 1);
                self.count(
                    "warren_scheduler_tasks_submitted_total",
                    "",
                    tasks.len() as u64,
                );
                // An invalid task is refused alone: the rest of its batch is
                // recorded, and the client is told which and why.
                let (tasks, refused) = admit(
                    self.topology.namespace(),
                    tasks,
                    delivery.data.len(),
                    self.topology.max_payload_bytes(),
                );
                if !refused.is_empty() {
                    warn!(
                        refused = refused.len(),
                        first = %refused[0].reason,
                        "refused invalid tasks of a submission"
                    );
                }
                if !tasks.is_empty() {
                    self.submit(&reply_to, tasks, deps_in_flight, &mut out)
                        .await?;
                }
                out.push(&reply_to, ClientEvent::Submitted { batch, refused });
            }
            ClientRequest::Restart { .. } => {
                self.count("warren_scheduler_requests_total", "kind=\"restart\"", 1);
                let epoch = self.restart(&reply_to, &mut out).await?;
                out.push(&reply_to, ClientEvent::Restarted { epoch });
            }
            ClientRequest::Cancel { batch, keys, .. } => {
                self.count("warren_scheduler_requests_total", "kind=\"cancel\"", 1);
                let (cancelled, notes) = self.store.cancel(&keys).await?;
                if !cancelled.is_empty() {
                    info!(cancelled = cancelled.len(), "cancelled");
                    self.broadcast(&Control::Cancel {
                        v: PROTOCOL_VERSION,
                        keys: cancelled,
                    })
                    .await?;
                }
                out.push(
                    &reply_to,
                    ClientEvent::Submitted {
                        batch,
                        refused: Vec::new(),
                    },
                );
                out.extend(notes);
            }
        }
        self.notifier.send(out).await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Dead-letters a request whose signature is missing or wrong, applying
    /// nothing; a submit whose `reply_to` is a client queue of the namespace
    /// is told why (its tasks refused), so a client without the key hears
    /// the reason instead of waiting for a scheduler.
    async fn refuse_unsigned(
        &self,
        delivery: Delivery,
        reply_to: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        if let Ok(ClientRequest::Submit { batch, tasks, .. }) =
            decode::<ClientRequest>(&delivery.data)
        {
            let mut out = Outgoing::default();
            let refused = tasks
                .iter()
                .map(|t| Refusal {
                    key: t.key.chars().take(80).collect(),
                    reason: why.to_string(),
                })
                .collect();
            out.push(reply_to, ClientEvent::Submitted { batch, refused });
            self.notifier.send(out).await?;
        }
        warn!(reason = %why, "dead-lettering a client request");
        self.dead_letter(delivery, why).await
    }

    /// The request's `reply_to` if it names one of the namespace's client
    /// queues, else none: a forged request must not make this scheduler
    /// publish into another namespace's queues, or anyone else's.
    fn reply_queue(&self, delivery: &Delivery) -> String {
        let Some(reply_to) = delivery.properties.reply_to().as_ref() else {
            return String::new();
        };
        let ns = self.topology.namespace();
        if limits::is_client_queue(ns, reply_to.as_str()) {
            return reply_to.to_string();
        }
        warn!(
            reply_to = %warren_core::taskkey::shown(reply_to.as_str()),
            "a request's reply_to is not a client queue of this namespace ({}...): it is applied but not answered",
            limits::client_queue_prefix(ns)
        );
        String::new()
    }

    /// Records a submit batch. When the client says some dependency is still
    /// in flight (its batch may be on its way through another scheduler:
    /// clients do not wait between dependent submits), tasks whose
    /// dependencies are not recorded yet are tried again for a while, then
    /// fail with `UnknownFuture`; otherwise they fail at once.
    async fn submit(
        &self,
        reply_to: &str,
        mut tasks: Vec<TaskSpec>,
        deps_in_flight: bool,
        out: &mut Outgoing,
    ) -> anyhow::Result<()> {
        let mut deferral = Deferral::new(deps_in_flight);
        // A detached submit has nobody to tell.
        let watcher = Some(reply_to).filter(|r| !r.is_empty());
        loop {
            // A lone task is claimed by the script and published from here.
            let turn = self.eager.turn().await?;
            let list = turn.as_ref().map(|t| t.list());
            let done = self
                .store
                .submit_eager(watcher, &tasks, deferral.may_defer(), list)
                .await?;
            let (applied, deferred) = (done.applied, done.deferred);
            if applied.queued > done.claimed.len() as u64 {
                self.wake.notify_one();
            }
            if let Some(turn) = turn {
                self.eager.publish(turn, done.claimed, done.epoch).await?;
            }
            out.extend(applied.notifications);
            let Some(pause) = deferral.next(deferred.len()) else {
                return Ok(());
            };
            tasks.retain(|t| deferred.contains(&t.key));
            tokio::time::sleep(pause).await;
        }
    }

    /// Cancels every future, empties the work queues, and tells the workers.
    async fn restart(&self, reply_to: &str, out: &mut Outgoing) -> anyhow::Result<u64> {
        let (epoch, notes) = self.store.restart().await?;
        let mut purged = 0;
        for q in self.store.work_queues().await? {
            let name = self.topology.work_queue(&q);
            // A queue never declared yet has nothing to purge.
            let Ok(name) = amqp::name(&name) else {
                continue;
            };
            if let Ok(n) = self
                .ch
                .queue_purge(name, QueuePurgeOptions::default())
                .await
            {
                purged += n;
            }
        }
        self.broadcast(&Control::Restart {
            v: PROTOCOL_VERSION,
            epoch,
            reply_to: reply_to.to_string(),
        })
        .await?;
        info!(epoch, cancelled = notes.len(), purged, "restarted");
        out.extend(notes);
        Ok(epoch)
    }

    /// Publishes a control message to every worker, with a confirm.
    async fn broadcast(&self, control: &Control) -> anyhow::Result<()> {
        let body = serde_json::to_vec(control)?;
        let props = self
            .topology
            .auth()
            .sign(Family::Control, &body, amqp::json_properties(&[]));
        let confirm = amqp::publish(
            &self.confirm,
            &self.topology.control_exchange(),
            "",
            &body,
            props,
        )
        .await?;
        amqp::confirmed(vec![confirm], "the control exchange").await?;
        Ok(())
    }

    async fn on_reports(&self, batch: Vec<Delivery>) -> anyhow::Result<()> {
        let mut transitions = Vec::new();
        let mut good = Vec::with_capacity(batch.len());
        for delivery in batch {
            // A forged report must not set a task's value.
            if let Err(why) =
                self.topology
                    .auth()
                    .check(Family::Report, &delivery.data, &delivery.properties)
            {
                self.dead_letter(delivery, &why).await?;
                continue;
            }
            match decode::<WorkerReport>(&delivery.data) {
                Ok(WorkerReport::Outcomes { outcomes, .. }) => {
                    self.count(
                        "warren_scheduler_reports_total",
                        "kind=\"outcome\"",
                        outcomes.len() as u64,
                    );
                    transitions.extend(outcomes.into_iter().map(decide::transition));
                    good.push(delivery);
                }
                Ok(WorkerReport::Started { keys, .. }) => {
                    self.count(
                        "warren_scheduler_reports_total",
                        "kind=\"started\"",
                        keys.len() as u64,
                    );
                    transitions.extend(keys.into_iter().map(|k| (k, Transition::Processing)));
                    good.push(delivery);
                }
                Ok(WorkerReport::Heartbeat { info, .. }) => {
                    self.count("warren_scheduler_reports_total", "kind=\"heartbeat\"", 1);
                    self.store.record_worker(&info).await?;
                    good.push(delivery);
                }
                Err(e) => {
                    self.dead_letter(delivery, &format!("undecodable worker report: {e}"))
                        .await?
                }
            }
        }
        self.apply(transitions, true).await?;
        for d in good {
            d.acker.ack(BasicAckOptions::default()).await?;
        }
        Ok(())
    }

    async fn on_killed(&self, batch: Vec<Delivery>) -> anyhow::Result<()> {
        let mut transitions = Vec::new();
        let mut good = Vec::new();
        for delivery in batch {
            if let Err(why) =
                self.topology
                    .auth()
                    .check(Family::Work, &delivery.data, &delivery.properties)
            {
                self.dead_letter(delivery, &why).await?;
                continue;
            }
            match decode_work(&delivery.data) {
                Ok(tasks) => {
                    for msg in tasks {
                        self.count("warren_scheduler_killed_total", "", 1);
                        warn!(key = %msg.key, func = %msg.func, "task reached the work queue's delivery limit: KilledWorker");
                        transitions.push(decide::killed(msg));
                    }
                    good.push(delivery);
                }
                Err(e) => {
                    self.dead_letter(
                        delivery,
                        &format!("undecodable dead-lettered work message: {e}"),
                    )
                    .await?
                }
            }
        }
        self.apply(transitions, false).await?;
        for d in good {
            d.acker.ack(BasicAckOptions::default()).await?;
        }
        Ok(())
    }

    /// Applies transitions to Redis and tells clients. With `eager`, a task
    /// they make runnable alone (the next link of a chain) is claimed by the
    /// same script and published from here (see [`crate::eager`]).
    async fn apply(
        &self,
        transitions: Vec<(String, Transition)>,
        eager: bool,
    ) -> anyhow::Result<()> {
        if transitions.is_empty() {
            return Ok(());
        }
        let mut out = Outgoing::default();
        // Redis runs one script at a time: short scripts keep the workers'
        // start records (which wait behind them) quick.
        for chunk in transitions.chunks(SCRIPT_CHUNK) {
            let turn = match eager {
                true => self.eager.turn().await?,
                false => None,
            };
            let list = turn.as_ref().map(|t| t.list());
            let (applied, epoch, claimed) = self.store.complete_eager(chunk, list).await?;
            out.extend(applied.notifications);
            // The dispatcher is needed for whatever went to the outbox. (If the
            // work queues were full, it polls them on its own.)
            if applied.queued > claimed.len() as u64 {
                self.wake.notify_one();
            }
            if let Some(turn) = turn {
                self.eager.publish(turn, claimed, epoch).await?;
            }
        }
        self.notifier.send(out).await
    }

    /// Moves a message that cannot be processed to `<ns>.dead`, reason in a header.
    async fn dead_letter(&self, delivery: Delivery, reason: &str) -> anyhow::Result<()> {
        self.count("warren_scheduler_dead_lettered_total", "", 1);
        dead_letter(&self.confirm, &self.topology, delivery, reason).await?;
        Ok(())
    }
}

/// Applies `consumer`'s micro-batches with `apply` until the consumer ends,
/// then clears `open`.
async fn serve<F, Fut>(consumer: Consumer, open: &AtomicBool, apply: F) -> anyhow::Result<()>
where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut batches = Batches::new(consumer, BATCH);
    while let Some(batch) = batches.next().await {
        apply(batch?).await?;
    }
    open.store(false, Ordering::Relaxed);
    Ok(())
}

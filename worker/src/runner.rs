//! The worker loop: consume work, run it off the async runtime, report, ack.
//!
//! Order matters for "nothing lost": a work message is acked only after the
//! outcome it produced is confirmed by RabbitMQ on the results queue. A worker
//! killed at any point leaves its unacked messages to be redelivered to another
//! worker. Outcomes are batched: whatever finished while the previous report was
//! being confirmed goes in the next one.
//!
//! Task functions are plain blocking code; they run on tokio's blocking pool,
//! at most `concurrency` at a time, so the runtime stays free to receive and
//! report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::Acker;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};
use warren_core::messages::{
    ClientEvent, ClientEvents, Control, Outcome, PROTOCOL_VERSION, TaskResult, WorkMessage,
    WorkerReport, decode,
};
use warren_core::topology::{DEAD_ROUTING_KEY, REASON_HEADER, Topology};
use warren_core::{Settings, amqp};

use crate::registry::{CallSite, Registry};

/// Reports sent at most in one message.
const REPORT_BATCH: usize = 512;

/// A worker: settings, functions, and the queues it serves.
pub struct Worker {
    settings: Settings,
    registry: Arc<Registry>,
    queues: Vec<String>,
    started_after: Duration,
}

enum Report {
    Done(Outcome, Acker),
    Started(String),
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

    /// Runs until the connection to RabbitMQ closes.
    pub async fn run(self) -> anyhow::Result<()> {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let identity = format!("{host}:{}", std::process::id());
        let concurrency = self.settings.effective_concurrency();
        let topology = Topology::new(&self.settings.namespace, self.settings.delivery_limit);
        let conn = amqp::connect(&self.settings, &format!("warren-worker {identity}")).await?;
        let setup = conn.create_channel().await?;
        let queue_refs: Vec<&str> = self.queues.iter().map(String::as_str).collect();
        topology.declare(&setup, &queue_refs).await?;

        let epoch = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report_loop(
            amqp::confirm_channel(&conn).await?,
            topology.results_queue(),
            identity.clone(),
            rx,
        ));
        let control = tokio::spawn(control_loop(
            control_consumer(&conn, &topology, &identity).await?,
            conn.create_channel().await?,
            epoch.clone(),
            identity.clone(),
        ));

        let ch = conn.create_channel().await?;
        ch.basic_qos(
            self.settings.effective_prefetch(),
            BasicQosOptions::default(),
        )
        .await?;
        let mut streams = Vec::new();
        for q in &self.queues {
            let consumer = ch
                .basic_consume(
                    topology.work_queue(q).into(),
                    format!("warren-worker@{identity}/{q}").into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            streams.push(consumer);
        }
        info!(worker = %identity, concurrency, queues = ?self.queues, namespace = %self.settings.namespace,
              functions = ?self.registry.names(), "worker ready");
        let mut work = futures::stream::select_all(streams);
        let slots = Arc::new(Semaphore::new(concurrency));
        let dead = amqp::confirm_channel(&conn).await?;
        let ctx = Arc::new(TaskContext {
            registry: self.registry.clone(),
            identity,
            started_after: self.started_after,
            reports: tx,
        });
        tokio::select! {
            r = async {
                while let Some(delivery) = work.next().await {
                    let delivery = delivery?;
                    let msg = match decode::<WorkMessage>(&delivery.data) {
                        Ok(m) => m,
                        Err(e) => {
                            dead_letter(&dead, &topology, delivery, &format!("undecodable work message: {e}")).await?;
                            continue;
                        }
                    };
                    if msg.epoch < epoch.load(Ordering::SeqCst) {
                        debug!(key = %msg.key, "dropping work from before a restart");
                        delivery.acker.ack(BasicAckOptions::default()).await?;
                        continue;
                    }
                    let permit = slots.clone().acquire_owned().await?;
                    let ctx = ctx.clone();
                    let span = info_span!("task", key = %msg.key, func = %msg.func);
                    tokio::spawn(async move {
                        ctx.run(msg, delivery.acker).await;
                        drop(permit);
                    }.instrument(span));
                }
                anyhow::Ok(())
            } => r?,
            r = reporter => r??,
            r = control => r??,
        }
        anyhow::bail!("the connection to RabbitMQ closed")
    }
}

/// What every running task needs.
struct TaskContext {
    registry: Arc<Registry>,
    identity: String,
    started_after: Duration,
    reports: mpsc::UnboundedSender<Report>,
}

impl TaskContext {
    async fn run(&self, msg: WorkMessage, acker: Acker) {
        let registry = self.registry.clone();
        let identity = self.identity.clone();
        let key = msg.key.clone();
        let started = std::time::Instant::now();
        let mut handle = tokio::task::spawn_blocking(move || {
            let site = CallSite {
                key: &msg.key,
                worker: &identity,
            };
            registry.call(&msg.func, msg.args, site)
        });
        let joined = tokio::select! {
            r = &mut handle => r,
            _ = tokio::time::sleep(self.started_after) => {
                let _ = self.reports.send(Report::Started(key.clone()));
                handle.await
            }
        };
        let result = match joined {
            Ok(Ok(v)) => TaskResult::Ok(v),
            Ok(Err(failure)) => {
                info!(error = %failure, "task failed");
                TaskResult::Err(failure)
            }
            // The registry catches panics, so this is a cancelled blocking pool.
            Err(e) => TaskResult::Err(warren_core::messages::TaskFailure {
                kind: "WorkerError".into(),
                message: e.to_string(),
                traceback: String::new(),
            }),
        };
        debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "task ended"
        );
        let _ = self
            .reports
            .send(Report::Done(Outcome { key, result }, acker));
    }
}

/// Publishes reports in batches, then acks the work they answer.
async fn report_loop(
    ch: Channel,
    results_queue: String,
    identity: String,
    mut rx: mpsc::UnboundedReceiver<Report>,
) -> anyhow::Result<()> {
    while let Some(first) = rx.recv().await {
        let mut outcomes = Vec::new();
        let mut ackers = Vec::new();
        let mut started = Vec::new();
        let mut take = |r: Report| match r {
            Report::Done(o, a) => {
                outcomes.push(o);
                ackers.push(a);
            }
            Report::Started(k) => started.push(k),
        };
        take(first);
        for _ in 1..REPORT_BATCH {
            match rx.try_recv() {
                Ok(r) => take(r),
                Err(_) => break,
            }
        }
        let mut confirms = Vec::new();
        let props = amqp::json_properties(&[("worker", &identity)]);
        if !started.is_empty() {
            let body = serde_json::to_vec(&WorkerReport::Started {
                v: PROTOCOL_VERSION,
                worker: identity.clone(),
                keys: started,
            })?;
            confirms.push(amqp::publish(&ch, "", &results_queue, &body, props.clone()).await?);
        }
        if !outcomes.is_empty() {
            let body = serde_json::to_vec(&WorkerReport::Outcomes {
                v: PROTOCOL_VERSION,
                worker: identity.clone(),
                outcomes,
            })?;
            confirms.push(amqp::publish(&ch, "", &results_queue, &body, props).await?);
        }
        amqp::confirmed(confirms, &results_queue).await?;
        for a in ackers {
            a.ack(BasicAckOptions::default()).await?;
        }
    }
    Ok(())
}

/// An exclusive queue bound to the control exchange: every worker gets every broadcast.
async fn control_consumer(
    conn: &Connection,
    topology: &Topology,
    identity: &str,
) -> anyhow::Result<Consumer> {
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    ch.queue_bind(
        q.name().clone(),
        topology.control_exchange().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(ch
        .basic_consume(
            q.name().clone(),
            format!("warren-worker@{identity}/control").into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?)
}

async fn control_loop(
    mut consumer: Consumer,
    reply: Channel,
    epoch: Arc<AtomicU64>,
    identity: String,
) -> anyhow::Result<()> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        match decode::<Control>(&delivery.data) {
            Ok(Control::Restart {
                epoch: e, reply_to, ..
            }) => {
                epoch.fetch_max(e, Ordering::SeqCst);
                info!(epoch = e, "restart: dropping older work");
                let body = serde_json::to_vec(&ClientEvents {
                    v: PROTOCOL_VERSION,
                    events: vec![ClientEvent::WorkerReady {
                        worker: identity.clone(),
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
    Ok(())
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
        amqp::json_properties(&[(REASON_HEADER, reason)]),
    )
    .await?;
    amqp::confirmed(vec![confirm], "the dead-letter exchange").await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

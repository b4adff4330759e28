//! Outbox → work queues: where runnable tasks are published.
//!
//! The Lua scripts add runnable keys to a per-queue outbox in Redis in the same
//! atomic step that makes them runnable. This loop claims a window of them,
//! inlines their dependencies' values, publishes one work message per task with
//! publisher confirms, and only after every confirm releases the claim. A crash in
//! between leaves the claim in Redis, and the next scheduler (or this one after a
//! restart) publishes it again: tasks can be published twice, never lost.
//!
//! Priorities live here, not in RabbitMQ (quorum queues have none, and a FIFO
//! queue full of ready work makes any priority moot): the outbox is ordered by
//! priority, and the loop keeps only a small backlog of ready messages in each
//! work queue ([`BACKLOG_PER_CONSUMER`] per consumer), so a task submitted later
//! with a higher priority overtakes everything still in the outbox.
//!
//! When a window holds far more tasks than the queue has consumers, tasks
//! travel in *packs* (one message, a JSON array, at most [`MAX_PACK`] tasks):
//! the broker's cost is per message, and at thousands of tasks per second it
//! was the largest CPU user of the machine. Packs stay small enough that every
//! consumer still gets [`SPREAD`] messages of the window; a lone task always
//! travels alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::{Channel, Connection};
use serde_json::Value;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use warren_core::amqp;
use warren_core::messages::{PROTOCOL_VERSION, TaskFailure, Terminal, WorkMessage};
use warren_core::metrics::Metrics;
use warren_core::store::{ClaimedTask, Store, Transition};
use warren_core::topology::{Topology, declare_queue};

use crate::notify::{Notifier, Outgoing};

/// Tasks claimed and published per window at most.
const WINDOW: usize = 256;
/// Tasks in one work message at most.
const MAX_PACK: usize = 8;
/// Messages per consumer a window is split into at least, before packing.
const SPREAD: usize = 4;
/// Ready messages kept in a work queue per consumer (worker), beyond which
/// runnable tasks wait in the priority-ordered outbox.
const BACKLOG_PER_CONSUMER: u32 = 64;
/// Ready messages kept in a work queue however few consumers it has.
const BACKLOG_MIN: u32 = 64;
/// How long a scheduler's heartbeat lives; a scheduler silent this long has its
/// claims taken back by the others.
const HEARTBEAT_TTL: Duration = Duration::from_secs(10);

/// Publishes runnable tasks.
pub struct Dispatcher {
    ch: Channel,
    store: Store,
    topology: Topology,
    id: String,
    wake: Arc<Notify>,
    notifier: Notifier,
    dispatched: Arc<std::sync::atomic::AtomicU64>,
}

impl Dispatcher {
    /// A dispatcher with its own confirm-mode channel.
    pub async fn new(
        conn: &Connection,
        store: Store,
        topology: Topology,
        id: String,
        wake: Arc<Notify>,
        notifier: Notifier,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            ch: amqp::confirm_channel(conn).await?,
            store,
            topology,
            id,
            wake,
            notifier,
            dispatched: metrics.counter(
                "warren_scheduler_dispatched_total",
                "",
                "Tasks published to work queues (confirmed), alone or in packs.",
            ),
        })
    }

    /// Runs forever: heartbeat, take back orphaned claims, drain the outbox.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut last_beat = tokio::time::Instant::now() - HEARTBEAT_TTL;
        loop {
            if last_beat.elapsed() >= HEARTBEAT_TTL / 4 {
                self.store.heartbeat(&self.id, HEARTBEAT_TTL).await?;
                let n = self.store.reclaim_orphans().await?;
                if n > 0 {
                    info!(
                        tasks = n,
                        "took back tasks claimed by a scheduler that stopped"
                    );
                }
                last_beat = tokio::time::Instant::now();
            }
            let mut published = 0;
            let mut full = false;
            for queue in self.store.work_queues().await? {
                let room = self.room(&queue).await?;
                if room.messages == 0 {
                    full = true;
                    continue;
                }
                published += self.drain_once(&queue, room).await?;
            }
            if published == 0 {
                // Sleep until a script queues something, or poll: another
                // scheduler's outbox pushes do not wake this one, and a full
                // work queue drains without telling us.
                let wait = Duration::from_millis(if full { 5 } else { 500 });
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            }
        }
    }

    /// How many more messages work queue `queue` may take now, and how many
    /// consumers it has. Declaring the queue (idempotent) reports both.
    async fn room(&mut self, queue: &str) -> anyhow::Result<Room> {
        let q = declare_queue(&self.ch, &self.topology.work_queue_def(queue)).await?;
        let cap = BACKLOG_MIN.max(q.consumer_count().saturating_mul(BACKLOG_PER_CONSUMER));
        Ok(Room {
            messages: cap.saturating_sub(q.message_count()) as usize,
            consumers: q.consumer_count() as usize,
        })
    }

    /// Claims, publishes and releases one window of `queue`; returns how many
    /// were claimed.
    async fn drain_once(&mut self, queue: &str, room: Room) -> anyhow::Result<usize> {
        let max = room.messages.saturating_mul(MAX_PACK).min(WINDOW);
        let (epoch, tasks) = self.store.claim(&self.id, queue, max).await?;
        if tasks.is_empty() {
            self.store.release(&self.id).await?;
            return Ok(0);
        }
        let n = tasks.len();
        let mut by_queue: Vec<(String, Vec<WorkMessage>)> = Vec::new();
        let mut lost = Vec::new();
        for task in tasks {
            match work_message(task, epoch) {
                Ok((q, msg)) => match by_queue.iter_mut().find(|(name, _)| *name == q) {
                    Some((_, msgs)) => msgs.push(msg),
                    None => by_queue.push((q, vec![msg])),
                },
                Err((key, failure)) => lost.push((
                    key,
                    Transition::Terminal(Terminal::Error { error: failure }),
                )),
            }
        }
        let mut confirms = Vec::new();
        for (q, msgs) in by_queue {
            let qname = self.topology.work_queue(&q);
            for pack in msgs.chunks(pack_size(msgs.len(), room)) {
                let (body, props) = work_body(pack)?;
                confirms.push(amqp::publish(&self.ch, "", &qname, &body, props).await?);
            }
        }
        let published = (n - lost.len()) as u64;
        amqp::confirmed(confirms, "a work queue").await?;
        self.dispatched
            .fetch_add(published, std::sync::atomic::Ordering::Relaxed);
        if !lost.is_empty() {
            let applied = self.store.complete(&lost).await?;
            let mut out = Outgoing::default();
            out.extend(applied.notifications);
            self.notifier.send(out).await?;
        }
        self.store.release(&self.id).await?;
        debug!(tasks = n, "dispatched");
        Ok(n)
    }
}

/// Room in a work queue for more messages.
#[derive(Debug, Clone, Copy)]
struct Room {
    messages: usize,
    consumers: usize,
}

/// Tasks per message for a window of `tasks`: as many as possible (at most
/// [`MAX_PACK`]) while every consumer still gets [`SPREAD`] messages, and few
/// enough messages to fit the room.
fn pack_size(tasks: usize, room: Room) -> usize {
    let spread = tasks / (room.consumers.max(1) * SPREAD);
    let fit = tasks.div_ceil(room.messages.max(1));
    spread.max(fit).clamp(1, MAX_PACK)
}

/// The body and headers of one work message. Headers name the task, key and
/// attempt (of the first task in a pack, with `tasks` counting them), so the
/// management UI's "Get messages" tells an operator what is waiting.
fn work_body(pack: &[WorkMessage]) -> serde_json::Result<(Vec<u8>, lapin::BasicProperties)> {
    let first = &pack[0];
    let attempt = first.attempt.to_string();
    let count = pack.len().to_string();
    let mut headers = vec![
        ("task", first.func.as_str()),
        ("key", first.key.as_str()),
        ("attempt", attempt.as_str()),
    ];
    let body = if pack.len() == 1 {
        serde_json::to_vec(first)?
    } else {
        headers.push(("tasks", count.as_str()));
        serde_json::to_vec(pack)?
    };
    Ok((body, amqp::json_properties(&headers)))
}

/// Builds the work message of a claimed task, inlining dependency values. A task
/// whose arguments are unreadable or whose dependency lost its value fails here.
fn work_message(
    task: ClaimedTask,
    epoch: u64,
) -> Result<(String, WorkMessage), (String, TaskFailure)> {
    let fail = |kind: &str, message: String| TaskFailure::new(kind, message, "");
    let mut args: Vec<Value> = serde_json::from_str(&task.args).map_err(|e| {
        (
            task.key.clone(),
            fail("MalformedTask", format!("stored arguments: {e}")),
        )
    })?;
    let mut values = HashMap::with_capacity(task.deps.len());
    for (dep, value) in task.deps {
        let Some(text) = value else {
            warn!(key = %task.key, %dep, "dependency has no value any more");
            return Err((
                task.key,
                fail(
                    "LostDependency",
                    format!(
                        "the value of dependency {dep} expired or was forgotten before this task ran"
                    ),
                ),
            ));
        };
        let v = serde_json::from_str(&text).map_err(|e| {
            (
                task.key.clone(),
                fail("MalformedTask", format!("value of {dep}: {e}")),
            )
        })?;
        values.insert(dep, v);
    }
    warren_core::args::substitute(&mut args, &values).map_err(|dep| {
        (
            task.key.clone(),
            fail("LostDependency", format!("no value for {dep}")),
        )
    })?;
    Ok((
        task.queue,
        WorkMessage {
            v: PROTOCOL_VERSION,
            key: task.key,
            func: task.func,
            args,
            epoch,
            attempt: task.attempt,
            timeout_secs: task.timeout_secs,
            dispatched_at_ms: Some(warren_core::messages::now_ms()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inlines_dependency_values_and_names_lost_ones() {
        let task = ClaimedTask {
            key: "add-1".into(),
            func: "add_them".into(),
            queue: "default".into(),
            args: r#"[{"$future":"a"},[{"$future":"b"}]]"#.into(),
            attempt: 0,
            timeout_secs: None,
            deps: vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("\"x\"".into())),
            ],
        };
        let (q, msg) = work_message(task.clone(), 7).unwrap();
        assert_eq!(q, "default");
        assert_eq!(msg.args, vec![json!(1), json!(["x"])]);
        assert_eq!(msg.epoch, 7);

        let mut lost = task;
        lost.deps[1].1 = None;
        let (key, failure) = work_message(lost, 0).unwrap_err();
        assert_eq!(key, "add-1");
        assert_eq!(failure.kind, "LostDependency");
        assert!(failure.message.contains('b'));
    }

    #[test]
    fn packs_only_when_every_consumer_still_gets_several_messages() {
        let room = |messages, consumers| Room {
            messages,
            consumers,
        };
        // A lone task, or a handful, travel alone.
        assert_eq!(pack_size(1, room(128, 2)), 1);
        assert_eq!(pack_size(16, room(128, 2)), 2);
        // A big window is packed, up to the cap.
        assert_eq!(pack_size(256, room(128, 2)), MAX_PACK);
        assert_eq!(pack_size(64, room(128, 2)), 8);
        // Little room left: pack to fit.
        assert_eq!(pack_size(8, room(1, 1)), 8);
        // No consumers yet: treated as one.
        assert_eq!(pack_size(3, room(64, 0)), 1);
    }
}

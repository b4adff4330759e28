//! Outbox → work queues: where runnable tasks are published.
//!
//! The Lua scripts add runnable keys to a per-queue outbox in Redis in the same
//! atomic step that makes them runnable. This loop claims a window of them,
//! inlines their dependencies' values, publishes one work message per task with
//! publisher confirms, and only after every confirm releases the claim. A crash in
//! between leaves the claim in Redis, and the next scheduler (or this one after a
//! restart) publishes it again: tasks can be published twice, never lost.
//!
//! Priorities live here, not in RabbitMQ (quorum queues are FIFO): the outbox
//! is ordered by priority, and the loop keeps only a small backlog of ready
//! messages in each work queue ([`BACKLOG_PER_CONSUMER`] per consumer), so a
//! task submitted later with a higher priority overtakes everything still in
//! the outbox.

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
const WINDOW: usize = 512;
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
                "Work messages published to work queues (confirmed).",
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
                let budget = self.budget(&queue).await?;
                if budget == 0 {
                    full = true;
                    continue;
                }
                published += self.drain_once(&queue, budget.min(WINDOW)).await?;
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

    /// How many more messages work queue `queue` may take now. Declaring the
    /// queue (idempotent) also reports its ready messages and consumers.
    async fn budget(&mut self, queue: &str) -> anyhow::Result<usize> {
        let q = declare_queue(&self.ch, &self.topology.work_queue_def(queue)).await?;
        let cap = BACKLOG_MIN.max(q.consumer_count().saturating_mul(BACKLOG_PER_CONSUMER));
        Ok(cap.saturating_sub(q.message_count()) as usize)
    }

    /// Claims, publishes and releases one window of `queue`; returns how many
    /// were claimed.
    async fn drain_once(&mut self, queue: &str, max: usize) -> anyhow::Result<usize> {
        let (epoch, tasks) = self.store.claim(&self.id, queue, max).await?;
        if tasks.is_empty() {
            self.store.release(&self.id).await?;
            return Ok(0);
        }
        let n = tasks.len();
        let mut confirms = Vec::with_capacity(n);
        let mut lost = Vec::new();
        for task in tasks {
            match work_message(task, epoch) {
                Ok((queue, msg)) => {
                    let qname = self.topology.work_queue(&queue);
                    let body = serde_json::to_vec(&msg)?;
                    let props = amqp::json_properties(&[
                        ("task", &msg.func),
                        ("key", &msg.key),
                        ("attempt", &msg.attempt.to_string()),
                    ]);
                    confirms.push(amqp::publish(&self.ch, "", &qname, &body, props).await?);
                }
                Err((key, failure)) => lost.push((
                    key,
                    Transition::Terminal(Terminal::Error { error: failure }),
                )),
            }
        }
        let published = confirms.len() as u64;
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
}

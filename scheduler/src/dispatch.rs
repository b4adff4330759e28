//! Outbox → work queues: where runnable tasks are published.
//!
//! The Lua scripts add runnable keys to a per-queue outbox in Redis in the same
//! atomic step that makes them runnable. This loop claims a window of them,
//! inlines their dependencies' values, publishes them with publisher confirms,
//! and only after every confirm releases the claim. A crash in between leaves
//! the claim in Redis, and the next scheduler (or this one after a restart)
//! publishes it again: tasks can be published twice, never lost. Two windows
//! may be in flight, each with its own claim list, so a window's confirms do
//! not hold up the next claim. (The next link of a chain skips this loop:
//! `complete.lua` claims it and intake publishes it with [`publish_claimed`]
//! and [`settle`], the same two steps.)
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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::{Channel, Connection};
use serde_json::Value;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use warren_core::messages::{PROTOCOL_VERSION, TaskFailure, Terminal, WorkMessage};
use warren_core::metrics::Metrics;
use warren_core::store::{ClaimedTask, Store, Transition};
use warren_core::topology::{Topology, declare_queue};
use warren_core::{amqp, sizing};

use crate::notify::{Notifier, Outgoing};

/// Tasks claimed and published per window at most.
const WINDOW: usize = 256;
/// Tasks in one work message at most.
const MAX_PACK: usize = 8;
/// Messages per consumer a window is split into at least, before packing.
const SPREAD: usize = 4;
/// Ready messages kept in a work queue per consumer (worker), beyond which
/// runnable tasks wait in the priority-ordered outbox. Small, because a
/// message may be a pack of [`MAX_PACK`] tasks and each worker already holds
/// its prefetch: this is what a later, higher-priority task waits behind in
/// RabbitMQ (on the worker it goes first, see `worker/src/slots.rs`).
const BACKLOG_PER_CONSUMER: u32 = 8;
/// Ready messages kept in a work queue however few consumers it has.
const BACKLOG_MIN: u32 = 8;
/// Published windows awaiting their confirms at most.
const UNSETTLED: usize = 2;
/// Separates a scheduler's id from its window number in a claim list's name
/// (`claimed:<id>#<n>`, and `claimed:<id>#e` for intake's eager claims);
/// `lua/reclaim.lua` strips it to find the heartbeat.
const CLAIM_SEPARATOR: char = '#';
/// How long a work queue's declared room is trusted (less what was published).
const ROOM_FRESH: Duration = Duration::from_millis(20);
/// How long the list of work queues is trusted: a task for a queue never used
/// before waits at most this long.
const QUEUES_FRESH: Duration = Duration::from_millis(250);
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
    /// The work queues tasks were submitted to, and when they were read.
    queues: (Vec<String>, Option<Instant>),
    /// Each work queue's room as last declared, less what was published since.
    rooms: HashMap<String, (Instant, Room)>,
    /// Published windows whose confirms are still awaited, oldest first.
    unsettled: VecDeque<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Windows claimed so far (names each window's claim list).
    windows: u64,
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
            dispatched: dispatched_counter(metrics),
            queues: (Vec::new(), None),
            rooms: HashMap::new(),
            unsettled: VecDeque::new(),
            windows: 0,
        })
    }

    /// Runs forever: heartbeat, take back orphaned claims, drain the outbox.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut last_beat = tokio::time::Instant::now() - HEARTBEAT_TTL;
        loop {
            if last_beat.elapsed() >= HEARTBEAT_TTL / 4 {
                self.store.heartbeat(&self.id, HEARTBEAT_TTL).await?;
                // Both cost what the namespace changed, not what Redis holds.
                self.store.trim_index().await?;
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
            for queue in self.work_queues().await? {
                let room = self.room(&queue).await?;
                if room.messages == 0 {
                    full = true;
                    continue;
                }
                let (tasks, messages) = self.drain_once(&queue, room).await?;
                published += tasks;
                if let Some((_, r)) = self.rooms.get_mut(&queue) {
                    r.messages = r.messages.saturating_sub(messages);
                }
            }
            if published == 0 {
                self.settle_all().await?;
                // Sleep until a script queues something, or poll: another
                // scheduler's outbox pushes do not wake this one, and a full
                // work queue drains without telling us.
                let wait = Duration::from_millis(if full { 5 } else { 500 });
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
            }
        }
    }

    /// The work queues tasks were submitted to, read from Redis at most every
    /// [`QUEUES_FRESH`]: a wake-up per finished task would otherwise cost a
    /// round trip each.
    async fn work_queues(&mut self) -> anyhow::Result<Vec<String>> {
        if self.queues.1.is_none_or(|at| at.elapsed() >= QUEUES_FRESH) {
            self.queues = (self.store.work_queues().await?, Some(Instant::now()));
        }
        Ok(self.queues.0.clone())
    }

    /// How many more messages work queue `queue` may take now, and how many
    /// consumers it has. Declaring the queue (idempotent) reports both; the
    /// answer is reused for [`ROOM_FRESH`] while room is left, so a dependent
    /// chain does not pay a broker round trip per task.
    async fn room(&mut self, queue: &str) -> anyhow::Result<Room> {
        if let Some((at, room)) = self.rooms.get(queue)
            && at.elapsed() < ROOM_FRESH
            && room.messages > 0
        {
            return Ok(*room);
        }
        let q = declare_queue(&self.ch, &self.topology.work_queue_def(queue)).await?;
        let cap = BACKLOG_MIN.max(q.consumer_count().saturating_mul(BACKLOG_PER_CONSUMER));
        let room = Room {
            messages: cap.saturating_sub(q.message_count()) as usize,
            consumers: q.consumer_count() as usize,
        };
        self.rooms.insert(queue.to_string(), (Instant::now(), room));
        Ok(room)
    }

    /// Waits for every published window's confirms and releases its claim.
    async fn settle_all(&mut self) -> anyhow::Result<()> {
        while let Some(window) = self.unsettled.pop_front() {
            window.await??;
        }
        Ok(())
    }

    /// Claims and publishes one window of `queue`, leaving its confirms to be
    /// awaited in the background while the next window is claimed: a task
    /// that becomes runnable meanwhile (the next link of a chain) is not held
    /// up by the last one's confirm. At most [`UNSETTLED`] windows are in
    /// flight, each with its own claim list in Redis. Returns how many tasks
    /// were claimed and how many messages published.
    async fn drain_once(&mut self, queue: &str, room: Room) -> anyhow::Result<(usize, usize)> {
        if self.unsettled.len() >= UNSETTLED
            && let Some(oldest) = self.unsettled.pop_front()
        {
            oldest.await??;
        }
        // Window n reuses the claim list of window n - UNSETTLED, settled above.
        let owner = format!(
            "{}{CLAIM_SEPARATOR}{}",
            self.id,
            self.windows % UNSETTLED as u64
        );
        self.windows += 1;
        let max = room.messages.saturating_mul(MAX_PACK).min(WINDOW);
        let (epoch, tasks) = self.store.claim(&owner, queue, max).await?;
        if tasks.is_empty() {
            return Ok((0, 0));
        }
        let n = tasks.len();
        let window = publish_claimed(&self.ch, &self.topology, tasks, epoch, room).await?;
        let messages = window.messages;
        let (store, notifier, dispatched) = (
            self.store.clone(),
            self.notifier.clone(),
            self.dispatched.clone(),
        );
        self.unsettled.push_back(tokio::spawn(async move {
            settle(window, &owner, &store, &notifier, &dispatched).await?;
            debug!(tasks = n, "dispatched");
            Ok(())
        }));
        Ok((n, messages))
    }

    /// Publishes what an earlier connection of this scheduler claimed eagerly
    /// (`complete.lua`) but did not release: call before intake starts, so
    /// that nothing else uses the eager claim list meanwhile.
    pub async fn recover_eager(&mut self) -> anyhow::Result<()> {
        for owner in eager_owners(&self.id) {
            self.recover(&owner).await?;
        }
        Ok(())
    }

    /// Publishes and releases what claim list `owner` still holds.
    async fn recover(&mut self, owner: &str) -> anyhow::Result<()> {
        // A claim of at most 0 new tasks returns only what is already claimed.
        let (epoch, tasks) = self.store.claim(owner, "default", 0).await?;
        if !tasks.is_empty() {
            info!(
                tasks = tasks.len(),
                "publishing tasks claimed before a reconnect"
            );
            let room = Room {
                messages: tasks.len(),
                consumers: 1,
            };
            let window = publish_claimed(&self.ch, &self.topology, tasks, epoch, room).await?;
            settle(window, owner, &self.store, &self.notifier, &self.dispatched).await?;
        }
        Ok(())
    }
}

/// The count of tasks published to work queues, shared by the dispatcher and
/// intake's eager publishes.
pub fn dispatched_counter(metrics: &Metrics) -> Arc<std::sync::atomic::AtomicU64> {
    metrics.counter(
        "warren_scheduler_dispatched_total",
        "",
        "Tasks published to work queues (confirmed), alone or in packs.",
    )
}

/// The claim lists intake uses for tasks claimed by `complete.lua`.
pub fn eager_owners(scheduler: &str) -> [String; 2] {
    [0, 1].map(|n| format!("{scheduler}{CLAIM_SEPARATOR}e{n}"))
}

/// Published work messages whose confirms are still due.
pub struct Window {
    confirms: Vec<amqp::PublisherConfirm>,
    /// Tasks that could not be built, to fail.
    lost: Vec<(String, Transition)>,
    /// Tasks published.
    published: u64,
    /// Messages published (tasks travel in packs).
    messages: usize,
}

/// Publishes claimed tasks to their work queues (packed for `room`), inlining
/// dependency values; a task that cannot be built, or whose work message
/// would be over the broker's limit, is set aside to fail alone.
pub async fn publish_claimed(
    ch: &Channel,
    topology: &Topology,
    tasks: Vec<ClaimedTask>,
    epoch: u64,
    room: Room,
) -> anyhow::Result<Window> {
    let n = tasks.len();
    let limit = topology.max_message_bytes();
    let mut by_queue: Vec<(String, Vec<Encoded>)> = Vec::new();
    let mut lost = Vec::new();
    for task in tasks {
        let built = work_message(task, epoch).and_then(|(q, msg)| Ok((q, encode(msg, limit)?)));
        match built {
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
        let qname = topology.work_queue(&q);
        let per_pack = pack_size(msgs.len(), room);
        // A pack is `[a,b,...]`: its items, a comma each, and two brackets.
        let packs = sizing::split_by_bytes(msgs, |m| m.body.len() + 1, per_pack, limit - 2);
        for pack in packs {
            let (body, props) = pack_body(pack);
            confirms.push(amqp::publish(ch, "", &qname, &body, props).await?);
        }
    }
    Ok(Window {
        messages: confirms.len(),
        published: (n - lost.len()) as u64,
        confirms,
        lost,
    })
}

/// Awaits a window's confirms, fails its unbuildable tasks, and only then
/// releases `owner`'s claim: a crash before the release publishes again.
pub async fn settle(
    window: Window,
    owner: &str,
    store: &Store,
    notifier: &Notifier,
    dispatched: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<()> {
    amqp::confirmed(window.confirms, "a work queue").await?;
    dispatched.fetch_add(window.published, std::sync::atomic::Ordering::Relaxed);
    if !window.lost.is_empty() {
        let applied = store.complete(&window.lost).await?;
        let mut out = Outgoing::default();
        out.extend(applied.notifications);
        notifier.send(out).await?;
    }
    store.release(owner).await?;
    Ok(())
}

/// Room in a work queue for more messages.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Messages the queue may take now.
    pub messages: usize,
    /// Its consumers (workers).
    pub consumers: usize,
}

/// Tasks per message for a window of `tasks`: as many as possible (at most
/// [`MAX_PACK`]) while every consumer still gets [`SPREAD`] messages, and few
/// enough messages to fit the room.
fn pack_size(tasks: usize, room: Room) -> usize {
    let spread = tasks / (room.consumers.max(1) * SPREAD);
    let fit = tasks.div_ceil(room.messages.max(1));
    spread.max(fit).clamp(1, MAX_PACK)
}

/// One task's work message, serialized once: alone it is the body, in a
/// pack it is an element of the body's array.
struct Encoded {
    key: String,
    func: String,
    attempt: u32,
    body: Vec<u8>,
}

/// Serializes a work message, or fails its task if the message could never
/// be published: RabbitMQ would close the channel, and retrying it for ever
/// would stop every task of the namespace behind this one.
fn encode(msg: WorkMessage, limit: usize) -> Result<Encoded, (String, TaskFailure)> {
    let body = match serde_json::to_vec(&msg) {
        Ok(body) => body,
        Err(e) => {
            let failure = TaskFailure::new("MalformedTask", format!("work message: {e}"), "");
            return Err((msg.key, failure));
        }
    };
    if body.len() > limit {
        let message = format!(
            "the work message of task {} (its arguments, dependencies' values inlined) is {} bytes ({}), over the limit of {limit} bytes ({}); raise setting max_message_bytes, at most to RabbitMQ's max_message_size, or pass smaller values",
            msg.key,
            body.len(),
            sizing::human_bytes(body.len()),
            sizing::human_bytes(limit),
        );
        warn!(key = %msg.key, bytes = body.len(), limit, "work message too large; failing the task");
        return Err((msg.key, TaskFailure::new("PayloadTooLarge", message, "")));
    }
    Ok(Encoded {
        key: msg.key,
        func: msg.func,
        attempt: msg.attempt,
        body,
    })
}

/// The body and headers of one work message. Headers name the task, key and
/// attempt (of the first task in a pack, with `tasks` counting them), so the
/// management UI's "Get messages" tells an operator what is waiting.
fn pack_body(mut pack: Vec<Encoded>) -> (Vec<u8>, lapin::BasicProperties) {
    let count = pack.len().to_string();
    let first = &pack[0];
    let attempt = first.attempt.to_string();
    let mut headers = vec![
        ("task", first.func.as_str()),
        ("key", first.key.as_str()),
        ("attempt", attempt.as_str()),
    ];
    if pack.len() > 1 {
        headers.push(("tasks", count.as_str()));
    }
    let props = amqp::json_properties(&headers);
    let body = if pack.len() == 1 {
        std::mem::take(&mut pack[0].body)
    } else {
        let len = pack.iter().map(|m| m.body.len() + 1).sum::<usize>() + 1;
        let mut body = Vec::with_capacity(len);
        body.push(b'[');
        for (i, m) in pack.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&m.body);
        }
        body.push(b']');
        body
    };
    (body, props)
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
            priority: task.priority,
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
            priority: 0,
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

    fn claimed(key: &str, args: &str) -> ClaimedTask {
        ClaimedTask {
            key: key.into(),
            func: "identity".into(),
            queue: "default".into(),
            args: args.into(),
            attempt: 0,
            timeout_secs: None,
            priority: 0,
            deps: vec![],
        }
    }

    #[test]
    fn a_work_message_over_the_limit_fails_its_task_naming_both_sizes() {
        let (_, msg) =
            work_message(claimed("big-1", &format!("[\"{}\"]", "x".repeat(500))), 0).unwrap();
        let (key, failure) = encode(msg.clone(), 400).err().unwrap();
        assert_eq!(key, "big-1");
        assert_eq!(failure.kind, "PayloadTooLarge");
        assert!(
            failure.message.contains("over the limit of 400 bytes"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("max_message_bytes"),
            "{}",
            failure.message
        );
        assert!(encode(msg, 4_000).is_ok());
    }

    #[test]
    fn packs_are_json_arrays_of_the_messages_and_one_travels_bare() {
        let enc = |k: &str| {
            let (_, msg) = work_message(claimed(k, "[1]"), 3).unwrap();
            encode(msg, 1_000).ok().unwrap()
        };
        let (body, props) = pack_body(vec![enc("a"), enc("b")]);
        let back: Vec<WorkMessage> = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            back.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let headers = props.headers().clone().unwrap();
        assert!(headers.inner().contains_key("tasks"));
        let (body, props) = pack_body(vec![enc("c")]);
        let back: WorkMessage = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.key, "c");
        assert!(
            !props
                .headers()
                .clone()
                .unwrap()
                .inner()
                .contains_key("tasks")
        );
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

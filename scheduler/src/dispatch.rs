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
//! Delayed tasks (`scheduled`: a delay, a due time, a retry's pause) wait in
//! Redis, and this loop moves the due ones to their outboxes first
//! ([`Dispatcher::promote_due`]), so whichever scheduler is alive starts
//! them on time.
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
use tokio::sync::Notify;
use tracing::{debug, info};
use warren_core::messages::Terminal;
use warren_core::metrics::Metrics;
use warren_core::msgauth::Family;
use warren_core::shutdown::Drain;
use warren_core::store::{ClaimList, ClaimSlot, ClaimedTask, Store, Transition};
use warren_core::topology::{Topology, declare_queue};
use warren_core::{amqp, sizing};

use crate::notify::{Notifier, Outgoing};
use crate::packs::{Encoded, MAX_PACK, Room, encode, pack_body, pack_size, work_message};

/// Tasks claimed and published per window at most.
const WINDOW: usize = 256;
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
/// How long a work queue's declared room is trusted (less what was published).
const ROOM_FRESH: Duration = Duration::from_millis(20);
/// How long the list of work queues is trusted: a task for a queue never used
/// before waits at most this long.
const QUEUES_FRESH: Duration = Duration::from_millis(250);
/// How often the delayed tasks are looked at when none is due sooner: a task
/// given another scheduler's delay (which this one does not know of) starts
/// at most this late.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);
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
    /// When the delayed tasks are next looked at.
    next_promote: Instant,
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
            next_promote: Instant::now(),
        })
    }

    /// Runs until the drain: heartbeat, take back orphaned claims, empty the
    /// outbox into the work queues. Once draining it claims nothing more,
    /// waits for the windows in flight to be confirmed and released, and
    /// returns `Ok`; what is left in the outbox is another scheduler's.
    pub async fn run(mut self, drain: &Drain) -> anyhow::Result<()> {
        let mut last_beat = tokio::time::Instant::now() - HEARTBEAT_TTL;
        loop {
            if drain.is_started() {
                info!(
                    windows = self.unsettled.len(),
                    "draining: claiming nothing more; settling the dispatcher's publishes"
                );
                self.settle_all().await?;
                return Ok(());
            }
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
            self.promote_due().await?;
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
                let wait = Duration::from_millis(if full { 5 } else { 500 })
                    .min(self.next_promote.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = tokio::time::timeout(wait, self.wake.notified()) => {}
                    () = drain.started() => {}
                }
            }
        }
    }

    /// Moves the delayed tasks that are due to their outboxes (any number
    /// of schedulers may: `promote.lua` is idempotent), runs the periodic
    /// schedules' due ticks, and notes when to look again: at the next due
    /// time, or after [`PROMOTE_EVERY`].
    async fn promote_due(&mut self) -> anyhow::Result<()> {
        if Instant::now() < self.next_promote {
            return Ok(());
        }
        let (queued, next) = self.store.promote(WINDOW).await?;
        if queued > 0 {
            debug!(tasks = queued, "delayed tasks are due");
        }
        // Periodic schedules' due ticks: each runs once, whichever
        // scheduler gets to it first.
        let ticked = self.store.tick_schedules(64).await?;
        if ticked > 0 {
            debug!(tasks = ticked, "periodic schedules ticked");
        }
        self.next_promote = Instant::now() + next.unwrap_or(PROMOTE_EVERY).min(PROMOTE_EVERY);
        Ok(())
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
        let slot = (self.windows % UNSETTLED as u64) as u8;
        let owner = ClaimList::new(&self.id, ClaimSlot::Dispatch(slot));
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
    async fn recover(&mut self, owner: &ClaimList) -> anyhow::Result<()> {
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
pub fn eager_owners(scheduler: &str) -> [ClaimList; 2] {
    [0, 1].map(|n| ClaimList::new(scheduler, ClaimSlot::Eager(n)))
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
            let props = topology.auth().sign(Family::Work, &body, props);
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
    owner: &ClaimList,
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

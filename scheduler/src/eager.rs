//! Eager dispatch: a task that a script made runnable alone is published by
//! the intake itself, without waking the dispatcher.
//!
//! The dispatcher's path costs a wake-up, a look at the work queue's room
//! and a `claim.lua` call before the publish. For a lone task (a single
//! `submit`, the next link of a chain) that was most of a round trip, so
//! `submit.lua` and `complete.lua` claim such a task themselves (only while
//! its outbox holds nothing else: then no priority or backlog limit has
//! anything to put first) onto one of this intake's own claim lists,
//! `claimed:<scheduler>#e0` and `#e1`. It is published from here, and the list
//! is released after the confirm, in the background, exactly as the
//! dispatcher does with its windows: a crash in between leaves the claim in
//! Redis to be published again (at least once, never lost).
//!
//! Two lists allow two eager windows in flight. The intake's submit and
//! results loops both claim eagerly, so a [`Turn`] is held from choosing the
//! list to the publish: two scripts never claim onto the same list, whose
//! release would otherwise forget the other's unconfirmed task. Without a
//! free turn a script claims nothing, and the dispatcher takes the task.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use lapin::Channel;
use warren_core::store::{ClaimList, ClaimedTask, Store};
use warren_core::topology::{Topology, declare_queue};

use crate::dispatch::{publish_claimed, settle};
use crate::notify::Notifier;
use crate::packs::Room;

/// Eager windows in flight at most, each with its own claim list.
const WINDOWS: usize = 2;

/// The background settling of one eagerly published task.
type Settling = tokio::task::JoinHandle<anyhow::Result<()>>;

/// The intake's eager claim lists and the publishes on them still settling.
pub struct Eager {
    confirm: Channel,
    store: Store,
    topology: Topology,
    notifier: Notifier,
    dispatched: Arc<AtomicU64>,
    owners: [ClaimList; WINDOWS],
    /// Windows published and not yet settled, oldest first, and how many
    /// were started (which names the next list).
    windows: std::sync::Mutex<(VecDeque<Settling>, usize)>,
    turn: tokio::sync::Mutex<()>,
    /// Work queues declared on this connection. A message published through
    /// the default exchange to a queue that does not exist yet (no worker
    /// has served it, the dispatcher has not seen it) would be dropped, and
    /// confirmed all the same: each queue is declared before its first task.
    declared: std::sync::Mutex<HashSet<String>>,
}

/// The right to claim onto [`Turn::list`] until [`Eager::publish`].
pub struct Turn<'a> {
    _held: tokio::sync::MutexGuard<'a, ()>,
    list: ClaimList,
}

impl Turn<'_> {
    /// The claim list a script may claim onto now.
    pub fn list(&self) -> &ClaimList {
        &self.list
    }
}

impl Eager {
    /// Eager dispatch for scheduler `id`, publishing on `confirm` (a
    /// confirm-mode channel).
    pub fn new(
        id: &str,
        confirm: Channel,
        store: Store,
        topology: Topology,
        notifier: Notifier,
        dispatched: Arc<AtomicU64>,
    ) -> Self {
        Self {
            confirm,
            store,
            topology,
            notifier,
            dispatched,
            owners: crate::dispatch::eager_owners(id),
            windows: std::sync::Mutex::new((VecDeque::new(), 0)),
            turn: tokio::sync::Mutex::new(()),
            declared: std::sync::Mutex::new(HashSet::new()),
        }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, (VecDeque<Settling>, usize)> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free claim list to claim onto, held until [`Eager::publish`]; `None`
    /// while both are in flight or the other loop holds its turn. Then the
    /// task goes to the outbox and the dispatcher publishes it with others:
    /// eager dispatch saves latency when the scheduler is idle, and never
    /// makes a busy one wait for a confirm.
    pub async fn turn(&self) -> anyhow::Result<Option<Turn<'_>>> {
        let Ok(held) = self.turn.try_lock() else {
            return Ok(None);
        };
        self.reap().await?;
        let (in_flight, started) = {
            let windows = self.windows();
            (windows.0.len(), windows.1)
        };
        if in_flight >= WINDOWS {
            return Ok(None);
        }
        Ok(Some(Turn {
            _held: held,
            list: self.owners[started % WINDOWS].clone(),
        }))
    }

    /// Publishes what a script claimed onto the turn's list (nothing, if it
    /// claimed nothing) and settles it in the background: the next submit or
    /// report need not wait for this confirm.
    pub async fn publish(
        &self,
        turn: Turn<'_>,
        claimed: Vec<ClaimedTask>,
        epoch: u64,
    ) -> anyhow::Result<()> {
        if claimed.is_empty() {
            return Ok(());
        }
        for task in &claimed {
            let known = self
                .declared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&task.queue);
            if !known {
                declare_queue(&self.confirm, &self.topology.work_queue_def(&task.queue)).await?;
                self.declared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(task.queue.clone());
            }
        }
        let room = Room {
            messages: claimed.len(),
            consumers: 1,
        };
        let window = publish_claimed(&self.confirm, &self.topology, claimed, epoch, room).await?;
        let (store, notifier) = (self.store.clone(), self.notifier.clone());
        let dispatched = self.dispatched.clone();
        let owner = turn.list.clone();
        let settling =
            tokio::spawn(
                async move { settle(window, &owner, &store, &notifier, &dispatched).await },
            );
        let mut windows = self.windows();
        windows.0.push_back(settling);
        windows.1 += 1;
        Ok(())
    }

    /// Collects the windows that settled, returning the first error.
    pub async fn reap(&self) -> anyhow::Result<()> {
        loop {
            let next = {
                let mut windows = self.windows();
                if windows.0.front().is_some_and(|w| w.is_finished()) {
                    windows.0.pop_front()
                } else {
                    None
                }
            };
            match next {
                Some(window) => window.await??,
                None => return Ok(()),
            }
        }
    }

    /// Eager publishes not yet confirmed and released.
    pub fn in_flight(&self) -> usize {
        self.windows().0.len()
    }

    /// Waits for every eager publish in flight to be confirmed and released.
    pub async fn settle_all(&self) -> anyhow::Result<()> {
        loop {
            let next = self.windows().0.pop_front();
            match next {
                Some(window) => window.await??,
                None => return Ok(()),
            }
        }
    }
}

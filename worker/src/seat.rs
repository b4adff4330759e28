//! A running task's seat: the slot it holds, which it may give up while it
//! only waits for other tasks (dask's `secede`) and take back before it
//! computes again (`rejoin`).
//!
//! Why: a task that submits tasks and waits for their results holds its slot
//! while it waits. When every slot of every worker is held by such a waiting
//! parent, no child can run and the graph never finishes (dask's
//! `worker_client` exists for the same reason). A seceded task keeps running
//! (its process, its time limit, its cancel flag are unchanged); only its
//! slot goes to the next waiting task, so the worker runs one task more than
//! its slots while it waits. `rejoin` queues for a slot like any delivered
//! task, at the task's own priority.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::slots::{Slot, Slots};

/// How often a rejoin waiting for a slot looks at its task's stop flag.
const POLL: Duration = Duration::from_millis(20);

/// A running task's hold on its slot.
pub struct Seat {
    slots: Arc<Slots>,
    priority: i64,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

struct State {
    slot: Option<Slot>,
    /// The task ended: a rejoin after this takes nothing.
    closed: bool,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("priority", &self.priority)
            .field("holds", &self.holds())
            .finish_non_exhaustive()
    }
}

impl Seat {
    /// The seat of a task that holds `slot` of `slots`; a rejoin waits on
    /// `runtime` with the task's `priority`.
    pub fn new(
        slot: Slot,
        slots: Arc<Slots>,
        priority: i64,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        Arc::new(Self {
            slots,
            priority,
            runtime,
            state: Mutex::new(State {
                slot: Some(slot),
                closed: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the task holds a slot now.
    pub fn holds(&self) -> bool {
        self.lock().slot.is_some()
    }

    /// Gives the slot to the next waiting task; `false` if none was held.
    pub fn secede(&self) -> bool {
        let slot = self.lock().slot.take();
        slot.is_some()
    }

    /// Waits for a slot again (at once if one is held). Blocking: call it
    /// from the task's own thread, never from async code. `false` when
    /// `stop()` turned true while it waited, or the task has ended.
    pub fn rejoin(&self, stop: &dyn Fn() -> bool) -> bool {
        {
            let state = self.lock();
            if state.closed {
                return false;
            }
            if state.slot.is_some() {
                return true;
            }
        }
        let ticket = self.slots.reserve(self.priority);
        let got = self.runtime.block_on(async {
            let mut wait = Box::pin(ticket.wait());
            loop {
                tokio::select! {
                    slot = &mut wait => return Some(slot),
                    () = tokio::time::sleep(POLL) => if stop() { return None; },
                }
            }
        });
        let Some(slot) = got else {
            return false;
        };
        let mut state = self.lock();
        if state.closed {
            // Ended meanwhile (its time limit): the slot goes back.
            return false;
        }
        state.slot = Some(slot);
        true
    }

    /// The task ended: frees its slot, if it holds one, and refuses later
    /// rejoins (a function abandoned at its time limit may still try).
    pub fn close(&self) {
        let slot = {
            let mut state = self.lock();
            state.closed = true;
            state.slot.take()
        };
        drop(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn a_seceded_slot_serves_another_task_and_rejoin_waits_for_one() {
        let rt = runtime();
        let slots = Slots::new(1);
        let slot = rt.block_on(slots.reserve(0).wait());
        let seat = Seat::new(slot, slots.clone(), 0, rt.handle().clone());
        assert!(seat.holds());
        assert!(seat.secede());
        assert!(!seat.secede(), "nothing left to give");
        // Another task takes the slot while this one waits.
        let other = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), slots.reserve(0).wait()).await
        });
        let other = other.expect("the seceded slot was not free");
        let rejoiner = {
            let seat = seat.clone();
            std::thread::spawn(move || seat.rejoin(&|| false))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!rejoiner.is_finished(), "rejoined with no slot free");
        drop(other);
        assert!(rejoiner.join().expect("the rejoin panicked"));
        assert!(seat.holds());
        seat.close();
        assert!(!slots.busy(), "closing the seat frees its slot");
        assert!(!seat.rejoin(&|| false), "an ended task takes no slot");
    }

    #[test]
    fn a_rejoin_gives_up_when_its_task_is_stopped() {
        let rt = runtime();
        let slots = Slots::new(1);
        let slot = rt.block_on(slots.reserve(0).wait());
        let seat = Seat::new(slot, slots.clone(), 0, rt.handle().clone());
        seat.secede();
        let other = rt.block_on(slots.reserve(0).wait());
        let started = std::time::Instant::now();
        assert!(!seat.rejoin(&|| started.elapsed() > Duration::from_millis(50)));
        drop(other);
        assert!(!slots.busy(), "the abandoned rejoin kept a slot");
    }
}

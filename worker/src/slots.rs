//! The worker's task slots, handed out by priority.
//!
//! A worker holds more work messages than it has slots (its prefetch), and a
//! message may carry a pack of tasks. Waiting tasks therefore queue here, not
//! in RabbitMQ: a free slot goes to the waiting task with the highest priority,
//! then to the one that asked first, so a task submitted later with a higher
//! priority overtakes the tasks this worker already holds, as it overtakes
//! those still in the scheduler's outbox.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// `concurrency` slots shared by a worker's tasks.
pub struct Slots {
    capacity: usize,
    state: Mutex<State>,
}

struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    asked: u64,
}

/// A task waiting for a slot.
struct Waiter {
    priority: i64,
    /// Order of asking: earlier first among equal priorities.
    asked: u64,
    wake: oneshot::Sender<()>,
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.asked.cmp(&self.asked))
    }
}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Waiter {}

/// A slot held; dropping it hands the slot to the next waiting task.
pub struct Slot {
    slots: Arc<Slots>,
}

/// A place in line for a slot (see [`Slots::reserve`]).
pub struct Ticket {
    slots: Arc<Slots>,
    /// `None`: the slot was free and is already held.
    wait: Option<oneshot::Receiver<()>>,
    /// The slot is this ticket's and no [`Slot`] holds it yet.
    owns_slot: bool,
}

impl Ticket {
    /// Waits until the slot is this ticket's: at once if it was free and
    /// nobody waited, else when every waiting task of higher priority (or
    /// equal and earlier) has had one.
    ///
    /// Cancel-safe: a wait dropped before its slot came (a draining worker
    /// gives its waiting tasks back) leaves the line, and one dropped just
    /// after passes the slot on (see `Drop`).
    pub async fn wait(mut self) -> Slot {
        if let Some(rx) = self.wait.as_mut() {
            // The sender is only dropped after a successful send (a slot
            // handed over) or with the whole `Slots`, which `self.slots`
            // keeps alive.
            let _ = rx.await;
        }
        self.wait = None;
        self.owns_slot = false;
        Slot {
            slots: self.slots.clone(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.owns_slot {
            self.slots.release();
        } else if let Some(mut rx) = self.wait.take() {
            // No slot can be handed over after `close`; one handed over
            // before it is still in the channel, and must not be lost.
            rx.close();
            if rx.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Slots {
    /// `capacity` slots, all free.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            state: Mutex::new(State {
                free: capacity,
                waiting: BinaryHeap::new(),
                asked: 0,
            }),
        })
    }

    /// Takes a place in line now (the order of equal priorities is the order
    /// of these calls), to be waited for later, e.g. in a spawned task: the
    /// worker reserves in the order messages arrive.
    pub fn reserve(self: &Arc<Self>, priority: i64) -> Ticket {
        let mut state = self.lock();
        if state.free > 0 && state.waiting.is_empty() {
            state.free -= 1;
            return Ticket {
                slots: self.clone(),
                wait: None,
                owns_slot: true,
            };
        }
        let (wake, rx) = oneshot::channel();
        state.asked += 1;
        let asked = state.asked;
        state.waiting.push(Waiter {
            priority,
            asked,
            wake,
        });
        Ticket {
            slots: self.clone(),
            wait: Some(rx),
            owns_slot: false,
        }
    }

    /// Whether any slot is taken (a task is starting or running).
    pub fn busy(&self) -> bool {
        self.lock().free < self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot came back: give it to the best waiter still waiting.
    fn release(&self) {
        let mut state = self.lock();
        while let Some(w) = state.waiting.pop() {
            if w.wake.send(()).is_ok() {
                return;
            }
            // That waiter gave up (its future was dropped): try the next.
        }
        state.free += 1;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_ticket_given_up_before_or_after_its_turn_loses_no_slot() {
        let slots = Slots::new(1);
        let held = slots.reserve(0).wait().await;
        let early = slots.reserve(0);
        let late = slots.reserve(0);
        drop(early); // gave up while waiting
        drop(held); // the slot goes to `late`, which has not looked yet
        drop(late); // and gives it up: the slot must come back
        assert!(!slots.busy());
        let again = tokio::time::timeout(Duration::from_secs(1), slots.reserve(0).wait()).await;
        assert!(again.is_ok(), "a slot was lost");
        drop(again);
        // A ticket that found the slot free holds it until it is dropped.
        drop(slots.reserve(0));
        assert!(!slots.busy());
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_priority_then_the_earliest() {
        let slots = Slots::new(1);
        let held = slots.reserve(0).wait().await;
        assert!(slots.busy());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("low-1", 0), ("low-2", 0), ("high", 10), ("low-3", 0)] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.reserve(priority).wait().await;
                order.lock().unwrap().push(name);
            }));
            // Ask in this order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["high", "low-1", "low-2", "low-3"]
        );
        assert!(!slots.busy());
    }

    #[tokio::test]
    async fn reservations_keep_the_order_they_were_made_in_whoever_waits_first() {
        let slots = Slots::new(1);
        let first = slots.reserve(0);
        let second = slots.reserve(0);
        let third = slots.reserve(0);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Waited for in reverse: the order of reserving still decides.
        for (name, ticket) in [("third", third), ("second", second), ("first", first)] {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = ticket.wait().await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["first", "second", "third"]);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_the_slot() {
        let slots = Slots::new(1);
        let held = slots.reserve(0).wait().await;
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), slots.reserve(5).wait()).await;
        assert!(gave_up.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_millis(100), slots.reserve(0).wait()).await;
        assert!(again.is_ok(), "the slot was lost to a waiter that left");
    }
}

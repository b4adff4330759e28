//! What a worker does with a task of a work message: pure rules, apart from
//! the transport (the runner gathers the facts, these decide).
//!
//! A task is looked at twice. On **arrival** (in delivery order, before it
//! waits for a slot), memory alone decides: a copy from a closed channel, a
//! cancelled key or a message from before a restart is answered without
//! running, and a redelivered copy of a run this worker already has is
//! answered from that run. Just **before it runs** (holding a slot), the drain
//! and the start recorded in Redis decide: a message given back by a drain
//! goes back whole, a task Redis says is final, cancelled or retried is
//! skipped, and one whose earlier starts all died with their workers ends as
//! `KilledWorker` instead of killing another worker.

use warren_core::store::Start;

/// What the runner knows of a task when its message arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The message's channel has closed: the broker requeued it already.
    pub stale: bool,
    /// The epoch the task was dispatched in.
    pub epoch: u64,
    /// The newest epoch this worker has heard of (restarts bump it).
    pub current_epoch: u64,
    /// `warren cancel` named the key while this worker ran.
    pub cancelled: bool,
    /// This worker runs, or recently ran, the same execution.
    pub known: bool,
}

/// The decision on arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnArrival {
    /// Answer the message without running (it is settled elsewhere).
    Answer,
    /// Answer it with the execution this worker already has.
    FromMemory,
    /// Queue it for a slot.
    Queue,
}

/// Decides on arrival.
pub fn on_arrival(a: Arrival) -> OnArrival {
    if a.stale || a.epoch < a.current_epoch || a.cancelled {
        OnArrival::Answer
    } else if a.known {
        OnArrival::FromMemory
    } else {
        OnArrival::Queue
    }
}

/// What the runner knows once the task holds a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeforeRun {
    /// Its channel closed while it waited (a stopped or cut-off worker).
    pub stale: bool,
    /// The drain says to give its message back ([`crate::drain::Pack`]).
    pub give_back: bool,
}

/// The decision before running, without Redis: `None` means ask Redis
/// ([`after_start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Run the function.
    Run,
    /// Do not run; answer the message (its outcome is someone else's).
    Skip,
    /// Do not run; give the message back (draining).
    GiveBack,
    /// Do not run; it ends as `KilledWorker` after this many deaths.
    Killed(u32),
}

/// Decides once a slot is held, before the start is recorded.
pub fn before_run(b: BeforeRun) -> Option<Begin> {
    if b.stale {
        Some(Begin::Skip)
    } else if b.give_back {
        Some(Begin::GiveBack)
    } else {
        None
    }
}

/// Decides from the start recorded in Redis. A start that could not be
/// recorded runs anyway (execution is at-least-once); it only goes uncounted.
pub fn after_start<E>(start: Result<Start, E>, allowed_failures: u32) -> Begin {
    match start {
        Ok(Start::Skip) => Begin::Skip,
        Ok(Start::Run(n)) if n > allowed_failures + 1 => Begin::Killed(n - 1),
        Ok(Start::Run(_)) | Err(_) => Begin::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Arrival {
        Arrival {
            stale: false,
            epoch: 3,
            current_epoch: 3,
            cancelled: false,
            known: false,
        }
    }

    #[test]
    fn a_fresh_task_queues_for_a_slot() {
        assert_eq!(on_arrival(fresh()), OnArrival::Queue);
        // A message from a later epoch than we heard of is current too.
        assert_eq!(
            on_arrival(Arrival {
                epoch: 4,
                ..fresh()
            }),
            OnArrival::Queue
        );
    }

    #[test]
    fn stale_cancelled_and_pre_restart_copies_are_answered_without_running() {
        assert_eq!(
            on_arrival(Arrival {
                stale: true,
                ..fresh()
            }),
            OnArrival::Answer
        );
        assert_eq!(
            on_arrival(Arrival {
                cancelled: true,
                ..fresh()
            }),
            OnArrival::Answer
        );
        assert_eq!(
            on_arrival(Arrival {
                epoch: 2,
                ..fresh()
            }),
            OnArrival::Answer
        );
        // Even when this worker ran it: a cancel wins over memory.
        let both = Arrival {
            cancelled: true,
            known: true,
            ..fresh()
        };
        assert_eq!(on_arrival(both), OnArrival::Answer);
    }

    #[test]
    fn a_redelivered_copy_of_a_known_run_is_answered_from_memory() {
        assert_eq!(
            on_arrival(Arrival {
                known: true,
                ..fresh()
            }),
            OnArrival::FromMemory
        );
    }

    #[test]
    fn holding_a_slot_a_stale_copy_is_skipped_and_a_drain_gives_back() {
        let b = |stale, give_back| before_run(BeforeRun { stale, give_back });
        assert_eq!(b(false, false), None);
        assert_eq!(b(true, false), Some(Begin::Skip));
        assert_eq!(b(false, true), Some(Begin::GiveBack));
        assert_eq!(b(true, true), Some(Begin::Skip));
    }

    #[test]
    fn starts_beyond_the_allowed_failures_end_as_killed_worker() {
        let ok = |s| after_start::<()>(Ok(s), 3);
        assert_eq!(ok(Start::Run(1)), Begin::Run);
        assert_eq!(ok(Start::Run(4)), Begin::Run);
        assert_eq!(ok(Start::Run(5)), Begin::Killed(4));
        assert_eq!(ok(Start::Skip), Begin::Skip);
        assert_eq!(after_start::<()>(Ok(Start::Run(2)), 0), Begin::Killed(1));
    }

    #[test]
    fn a_start_redis_could_not_record_still_runs() {
        assert_eq!(after_start(Err("Redis down"), 3), Begin::Run);
    }
}

//! The scheduler's decisions, apart from Redis and RabbitMQ: what a worker's
//! outcome does to its future, what a work message that hit the delivery
//! limit does, and how long a submit waits for a dependency still in flight.
//! The intake gathers the facts and applies these.

use std::time::Duration;

use warren_core::messages::{Outcome, TaskFailure, TaskResult, Terminal, WorkMessage};
use warren_core::store::Transition;

/// How long a submission whose dependencies are still in flight (in a batch
/// another scheduler has not recorded yet) is deferred before they count as
/// unknown.
pub const DEFER_FOR: Duration = Duration::from_secs(2);
/// The pause between tries of a deferred submission.
pub const DEFER_PAUSE: Duration = Duration::from_millis(20);

/// The transition a worker's outcome asks for: a value finishes the future;
/// an error fails it for good unless it is retryable, in which case the store
/// retries it while it has retries left (the attempt keeps a stale report
/// from counting twice).
pub fn transition(outcome: Outcome) -> (String, Transition) {
    let t = match outcome.result {
        TaskResult::Ok(value) => Transition::Terminal(Terminal::Finished { value }),
        TaskResult::Err(error) if !error.is_retryable() => {
            Transition::Terminal(Terminal::Error { error })
        }
        TaskResult::Err(error) => Transition::Failed {
            error,
            attempt: outcome.attempt,
        },
    };
    (outcome.key, t)
}

/// A task whose message reached the work queue's delivery limit (the
/// backstop behind the starts count): it ends as `KilledWorker`.
pub fn killed(msg: WorkMessage) -> (String, Transition) {
    let error = TaskFailure::killed_worker(&msg.key, &msg.func, None);
    (msg.key, Transition::Terminal(Terminal::Error { error }))
}

/// The deferral of one submission: only a client that flagged dependencies in
/// flight is deferred, for at most [`DEFER_FOR`], in steps of [`DEFER_PAUSE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    waited: Duration,
}

impl Deferral {
    /// A submission's deferral; without dependencies in flight it never defers.
    pub fn new(deps_in_flight: bool) -> Self {
        Self {
            waited: if deps_in_flight {
                Duration::ZERO
            } else {
                DEFER_FOR
            },
        }
    }

    /// Whether tasks with unknown dependencies may be put off (else they
    /// fail with `UnknownFuture` now).
    pub fn may_defer(&self) -> bool {
        self.waited < DEFER_FOR
    }

    /// After a try that left `deferred` tasks unrecorded: the pause before
    /// the next try, or `None` when nothing is left.
    pub fn next(&mut self, deferred: usize) -> Option<Duration> {
        if deferred == 0 {
            return None;
        }
        self.waited += DEFER_PAUSE;
        Some(DEFER_PAUSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(result: TaskResult) -> Outcome {
        Outcome {
            key: "k-1".into(),
            result,
            attempt: 2,
        }
    }

    #[test]
    fn a_value_finishes_the_future() {
        let (key, t) = transition(outcome(TaskResult::Ok(json!(7))));
        assert_eq!(key, "k-1");
        assert_eq!(
            t,
            Transition::Terminal(Terminal::Finished { value: json!(7) })
        );
    }

    #[test]
    fn a_retryable_error_asks_for_a_retry_of_its_attempt() {
        let error = TaskFailure::new("ValueError", "bad", "tb");
        assert!(error.is_retryable());
        let (_, t) = transition(outcome(TaskResult::Err(error.clone())));
        assert_eq!(t, Transition::Failed { error, attempt: 2 });
    }

    #[test]
    fn an_error_that_retrying_cannot_cure_is_final() {
        let error = TaskFailure::killed_worker("k-1", "f", Some(3));
        assert!(!error.is_retryable());
        let (_, t) = transition(outcome(TaskResult::Err(error.clone())));
        assert_eq!(t, Transition::Terminal(Terminal::Error { error }));
    }

    #[test]
    fn a_message_past_the_delivery_limit_is_killed_worker() {
        let msg: WorkMessage = serde_json::from_value(json!({
            "v": 1, "key": "k-1", "func": "f", "args": [], "epoch": 0, "attempt": 0
        }))
        .unwrap();
        let (key, t) = killed(msg);
        assert_eq!(key, "k-1");
        assert!(
            matches!(t, Transition::Terminal(Terminal::Error { error }) if error.kind == "KilledWorker")
        );
    }

    #[test]
    fn without_dependencies_in_flight_nothing_is_deferred() {
        let d = Deferral::new(false);
        assert!(!d.may_defer());
    }

    #[test]
    fn a_deferral_retries_in_steps_until_its_limit_then_stops_deferring() {
        let mut d = Deferral::new(true);
        let mut tries = 0;
        while d.may_defer() {
            assert_eq!(d.next(3), Some(DEFER_PAUSE));
            tries += 1;
        }
        assert_eq!(
            tries,
            (DEFER_FOR.as_millis() / DEFER_PAUSE.as_millis()) as usize
        );
        // Whatever is still unknown is then submitted for real.
        assert_eq!(d.next(0), None);
    }
}

//! Draining: how a worker stops without a task running twice.
//!
//! Deployment tools stop processes with SIGTERM and a grace period. A worker
//! that died there and then would rerun its running tasks elsewhere, and count
//! each as a run that died (`allowed_failures`). On the first SIGTERM or
//! Ctrl-C a worker therefore drains: it cancels its consumers at once (the
//! management UI shows them gone), gives back every message it holds but has
//! not started (a message given back never counts: nothing recorded its
//! start), finishes the tasks it runs within `drain_timeout_secs`, reports
//! them, and exits 0. A second signal, or the timeout, is a plain kill.
//!
//! The rules for one message live in [`Pack`], apart from any transport: a
//! message may carry a pack of tasks and is answered once, so it is given
//! back only if none of its tasks started; otherwise its tasks run.

use std::time::Duration;

use tracing::info;

/// What to do with a task that is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run it.
    Run,
    /// Draining, and nothing of its message ran: give the message back.
    GiveBack,
}

/// How a message is answered once every task of it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Tasks of the message are still to be answered.
    NotYet,
    /// Every task ran or was skipped: ack.
    Ack,
    /// Tasks were given back: requeue the message (its skipped tasks are
    /// skipped again wherever it goes).
    Requeue,
}

/// The state of one work message's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    remaining: usize,
    started: bool,
    given_back: bool,
}

impl Pack {
    /// A message of `tasks` tasks, none answered.
    pub fn new(tasks: usize) -> Self {
        Self {
            remaining: tasks,
            started: false,
            given_back: false,
        }
    }

    /// Decides for a task about to start (or waiting for a slot when the
    /// drain began). Once one task of the message started, the others run
    /// too, since the message can only be acked whole; once one was given
    /// back, none starts.
    pub fn before_start(&mut self, draining: bool) -> Start {
        if self.given_back || (draining && !self.started) {
            self.given_back = true;
            Start::GiveBack
        } else {
            self.started = true;
            Start::Run
        }
    }

    /// One task is answered: reported, skipped, or given back.
    pub fn answered(&mut self) -> Answer {
        self.remaining = self.remaining.saturating_sub(1);
        match (self.remaining, self.given_back) {
            (0, true) => Answer::Requeue,
            (0, false) => Answer::Ack,
            _ => Answer::NotYet,
        }
    }
}

/// The drain itself (started by the first signal) is the one every warren
/// process shares.
pub use warren_core::shutdown::Drain;

/// Waits, once the drain has begun, until `unanswered()` is 0 or `timeout`
/// passes; says which (false: timed out with messages unanswered).
pub async fn until_drained(
    drain: &Drain,
    timeout: Duration,
    unanswered: impl Fn() -> usize,
) -> bool {
    drain.started().await;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut said = tokio::time::Instant::now();
    loop {
        let left = unanswered();
        if left == 0 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        if said.elapsed() >= Duration::from_secs(5) {
            info!(messages = left, "draining: waiting for running tasks");
            said = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_none_of_whose_tasks_started_goes_back_whole() {
        let mut p = Pack::new(3);
        assert_eq!(p.before_start(true), Start::GiveBack);
        assert_eq!(p.answered(), Answer::NotYet);
        // A task of it that gets a slot later does not start either.
        assert_eq!(p.before_start(false), Start::GiveBack);
        assert_eq!(p.answered(), Answer::NotYet);
        assert_eq!(p.answered(), Answer::Requeue);
    }

    #[test]
    fn once_a_task_of_a_message_started_the_rest_run_even_while_draining() {
        let mut p = Pack::new(2);
        assert_eq!(p.before_start(false), Start::Run);
        assert_eq!(p.before_start(true), Start::Run);
        assert_eq!(p.answered(), Answer::NotYet);
        assert_eq!(p.answered(), Answer::Ack);
    }

    #[test]
    fn without_a_drain_every_task_runs_and_the_message_is_acked() {
        let mut p = Pack::new(1);
        assert_eq!(p.before_start(false), Start::Run);
        assert_eq!(p.answered(), Answer::Ack);
        // Skipped tasks (never started) are answered too.
        let mut skipped = Pack::new(2);
        assert_eq!(skipped.answered(), Answer::NotYet);
        assert_eq!(skipped.answered(), Answer::Ack);
    }

    #[tokio::test]
    async fn the_drain_ends_when_nothing_is_unanswered_or_at_its_timeout() {
        let drain = Drain::new();
        drain.start();
        drain.start();
        assert!(until_drained(&drain, Duration::from_secs(5), || 0).await);
        assert!(!until_drained(&drain, Duration::from_millis(50), || 1).await);
    }
}

//! Staying up when RabbitMQ or Redis goes away.
//!
//! Every long-running warren process has the same shape: connect, declare,
//! consume until something breaks. [`supervise`] runs that connected phase again
//! and again, with exponential backoff, until it ends cleanly. Rebuilding every
//! channel and consumer from scratch after a failure is simpler and more
//! predictable than patching them in place (lapin's auto-recovery would still
//! need every consumer re-created by hand), and it is safe because nothing lives
//! only in the process: unacked messages are redelivered by RabbitMQ, state is in
//! Redis, and every Redis transition is idempotent.
//!
//! Redis hiccups shorter than [`crate::store`]'s retry window never reach this
//! loop: `ConnectionManager` reconnects and the store retries the command.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Exponential backoff between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; the next one is twice as long (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the shortest delay (after a healthy run).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(10))
    }
}

/// A connected phase that ran this long was healthy: the next failure starts
/// the backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Runs `connected` until it returns `Ok`, logging each failure and retrying
/// with backoff. `what` names the component in the logs.
pub async fn supervise<F, Fut, E>(what: &str, mut connected: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut backoff = Backoff::default();
    let mut failures: u64 = 0;
    loop {
        let started = Instant::now();
        match connected().await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff.reset();
                }
                failures += 1;
                let delay = backoff.next_delay();
                warn!(
                    component = what,
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "{e:#}; reconnecting"
                );
                tokio::time::sleep(delay).await;
                info!(component = what, "reconnecting");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let seen: Vec<u64> = (0..4).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(seen, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    // Real time (0.6 s of backoff): tokio's paused clock needs its
    // `test-util` feature, and a feature only a test enables makes `cargo
    // test` build tokio and everything above it a second time.
    #[tokio::test]
    async fn supervise_retries_until_success() {
        let mut calls = 0;
        supervise("test", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err("boom") } else { Ok(()) } }
        })
        .await;
        assert_eq!(calls, 3);
    }
}

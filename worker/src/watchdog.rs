//! Noticing that this process itself was stopped (SIGSTOP, a frozen VM).
//!
//! While a worker is stopped, the broker closes its connection (heartbeats)
//! and gives its messages to other workers. When it resumes, the deliveries
//! it still buffers belong to that closed channel and must not start, but
//! the threads wake in no particular order: a slot may be handed to a
//! buffered task before lapin's I/O thread has read the closed socket and
//! marked the channel. A ticker that finds its own tick late says "this
//! process was stopped"; a task about to start after such a stall first
//! gives lapin a moment to catch up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the ticker ticks.
const TICK: Duration = Duration::from_millis(100);
/// A tick this late means the process was stopped or starved.
const STALL: Duration = Duration::from_secs(2);
/// How long a start waits after a stall for the connection's state to settle.
const SETTLE: Duration = Duration::from_millis(500);

/// The worker's sense of having been stopped.
#[derive(Debug)]
pub struct Watchdog {
    origin: Instant,
    /// When the ticker last ticked (ms since `origin`).
    last_tick: AtomicU64,
    /// Until when a start must settle first (ms since `origin`).
    settle_until: AtomicU64,
}

impl Watchdog {
    /// A watchdog whose ticker runs on the current tokio runtime.
    pub fn start() -> Arc<Self> {
        let dog = Arc::new(Self {
            origin: Instant::now(),
            last_tick: AtomicU64::new(0),
            settle_until: AtomicU64::new(0),
        });
        let ticker = dog.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                let now = ticker.now_ms();
                let last = ticker.last_tick.swap(now, Ordering::SeqCst);
                if now.saturating_sub(last) > STALL.as_millis() as u64 {
                    ticker.mark_stall(now);
                }
            }
        });
        dog
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn mark_stall(&self, now: u64) {
        self.settle_until
            .fetch_max(now + SETTLE.as_millis() as u64, Ordering::SeqCst);
    }

    /// Waits out the settling time if the process was just stopped (seen by
    /// the ticker, or by a tick that is late now); returns at once otherwise.
    pub async fn settle(&self) {
        let now = self.now_ms();
        if now.saturating_sub(self.last_tick.load(Ordering::SeqCst)) > STALL.as_millis() as u64 {
            self.mark_stall(now);
        }
        let until = self.settle_until.load(Ordering::SeqCst);
        if until > now {
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_stall_no_wait_and_a_stall_waits_once() {
        let dog = Watchdog::start();
        tokio::time::sleep(TICK * 2).await;
        let t = Instant::now();
        dog.settle().await;
        assert!(t.elapsed() < SETTLE / 2);
        // The ticker saw its own tick late: the next start settles first.
        dog.mark_stall(dog.now_ms());
        let t = Instant::now();
        dog.settle().await;
        assert!(t.elapsed() >= SETTLE / 2, "{:?}", t.elapsed());
    }
}

//! Stopping on SIGTERM without losing or repeating work: the drain every
//! warren process shares.
//!
//! Deployment tools stop processes with SIGTERM and a grace period
//! (Kubernetes: 30 s, systemd: 90 s). On the first SIGTERM or Ctrl-C a
//! process starts its [`Drain`]: it takes nothing new and finishes what it
//! holds (a worker its running tasks, a scheduler its scripts and publishes
//! in flight), then exits 0. A second signal exits at once, as the kill it
//! was before draining existed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tracing::{info, warn};

/// A process's drain: started by the first signal, shared by its parts.
#[derive(Debug, Default)]
pub struct Drain {
    started: AtomicBool,
    notify: Notify,
}

impl Drain {
    /// A drain not started.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts the drain (idempotent).
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    /// Whether the drain has begun.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Resolves once the drain has begun.
    pub async fn started(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_started() {
                return;
            }
            notified.await;
        }
    }

    /// Starts the drain on the first SIGTERM or SIGINT; a second one exits
    /// at once, as the kill it was before draining existed.
    pub fn on_signals(self: &Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let drain = self.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let code = tokio::select! {
                    _ = term.recv() => 143,
                    _ = int.recv() => 130,
                };
                seen += 1;
                if seen == 1 {
                    info!(
                        "draining: taking nothing new, finishing what is in hand (signal again to stop now)"
                    );
                    drain.start();
                } else {
                    warn!("stopping now: what was in hand is redelivered elsewhere");
                    std::process::exit(code);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_starts_once_and_wakes_every_waiter() {
        let drain = Drain::new();
        assert!(!drain.is_started());
        let waiter = tokio::spawn({
            let d = drain.clone();
            async move { d.started().await }
        });
        drain.start();
        drain.start();
        assert!(drain.is_started());
        waiter.await.unwrap();
        // A waiter that comes after the start returns at once.
        drain.started().await;
    }
}

//! How completions reach a client.
//!
//! Each client owns an exclusive, auto-deleted reply queue. The scheduler sends
//! it `Done` events for every future it watches (its own submissions, and keys it
//! attached to through the `watch` script), `Submitted` acknowledgements, and
//! restart progress. This module routes those events to whoever awaits them.
//! Events are a fast path, not the only path: a waiter that hears nothing for a
//! while asks Redis again (see `Client::outcomes`), so a lost event costs
//! latency, never a hang.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::StreamExt;
use lapin::Consumer;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;
use warren_core::messages::{ClientEvent, ClientEvents, Refusal, Terminal, decode};

/// Fired with the tasks a scheduler refused of a batch it recorded.
type AckSender = oneshot::Sender<Vec<Refusal>>;

/// Routes reply-queue events to waiters.
#[derive(Default)]
pub struct Events {
    futures: Mutex<HashMap<String, watch::Sender<Option<Terminal>>>>,
    /// Each awaited acknowledgement, with the generation of the link whose
    /// reply queue it is expected on.
    batches: Mutex<HashMap<String, (u64, AckSender)>>,
    restart: Mutex<Option<mpsc::UnboundedSender<ClientEvent>>>,
}

impl Events {
    /// A receiver that sees `key`'s final state once known.
    pub fn subscribe(&self, key: &str) -> watch::Receiver<Option<Terminal>> {
        let mut map = self.futures.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Records `key`'s final state for whoever awaits it (the first one wins:
    /// states are final). Nobody subscribed means nobody waits: the event is
    /// dropped, and a later waiter finds the state in Redis when it subscribes.
    pub fn resolve(&self, key: &str, terminal: Terminal) {
        let map = self.futures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(key) {
            tx.send_if_modified(|cur| {
                if cur.is_none() {
                    *cur = Some(terminal);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Drops the entries of `keys` that are final and that nobody awaits, so a
    /// client gathering millions of futures keeps only what it still waits for.
    /// A later `result()` of a dropped key asks Redis, which knows the answer.
    pub fn release(&self, keys: &[String]) {
        let mut map = self.futures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if map
                .get(k)
                .is_some_and(|tx| tx.receiver_count() == 0 && tx.borrow().is_some())
            {
                map.remove(k);
            }
        }
    }

    /// How many futures the client holds an entry for.
    pub fn len(&self) -> usize {
        self.futures.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the client holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks every known future cancelled (after a restart, as dask does).
    pub fn cancel_all(&self) {
        let map = self.futures.lock().unwrap_or_else(|p| p.into_inner());
        for tx in map.values() {
            tx.send_replace(Some(Terminal::Cancelled));
        }
    }

    /// A receiver fired when the scheduler acknowledges submit batch
    /// `batch` on the reply queue of link `generation`, with the tasks it
    /// refused; dropped (unfired) when that queue's consumer ends.
    pub fn expect_batch(&self, batch: &str, generation: u64) -> oneshot::Receiver<Vec<Refusal>> {
        let (tx, rx) = oneshot::channel();
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(batch.to_string(), (generation, tx));
        rx
    }

    /// Routes restart events to the returned receiver until the next call.
    pub fn expect_restart(&self) -> mpsc::UnboundedReceiver<ClientEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.restart.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }

    fn dispatch(&self, event: ClientEvent) {
        match event {
            ClientEvent::Done { key, terminal } => self.resolve(&key, terminal),
            ClientEvent::Submitted { batch, refused } => {
                if let Some((_, tx)) = self
                    .batches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&batch)
                {
                    let _ = tx.send(refused);
                }
            }
            e @ (ClientEvent::Restarted { .. } | ClientEvent::WorkerReady { .. }) => {
                if let Some(tx) = self
                    .restart
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                {
                    let _ = tx.send(e);
                }
            }
        }
    }

    /// Consumes the reply queue of link `generation` until its connection
    /// closes.
    pub async fn consume(
        &self,
        mut consumer: Consumer,
        generation: u64,
        auth: warren_core::msgauth::Auth,
    ) {
        while let Some(delivery) = consumer.next().await {
            let Ok(delivery) = delivery else { break };
            // Anyone who can publish to this queue could answer for a
            // scheduler: with a key, only signed events count.
            if let Err(why) = auth.check(
                warren_core::msgauth::Family::Events,
                &delivery.data,
                &delivery.properties,
            ) {
                warn!(reason = %why, "ignoring an event on the reply queue");
                continue;
            }
            match decode::<ClientEvents>(&delivery.data) {
                Ok(batch) => batch.events.into_iter().for_each(|e| self.dispatch(e)),
                Err(e) => warn!(error = %e, "ignoring an undecodable event on the reply queue"),
            }
        }
        self.queue_closed(generation);
    }

    /// Wakes the waiters of link `generation`'s queue and older ones: nothing
    /// more will arrive there. A newer link's waiters are not this queue's.
    fn queue_closed(&self, generation: u64) {
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (g, _)| *g > generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_queue_wakes_its_own_waiters_and_older_ones_only() {
        let events = Events::default();
        let mut old = events.expect_batch("a", 0);
        let mut current = events.expect_batch("b", 1);
        let mut newer = events.expect_batch("c", 2);
        events.queue_closed(1);
        assert!(
            old.try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Closed)
        );
        assert!(
            current
                .try_recv()
                .is_err_and(|e| e == oneshot::error::TryRecvError::Closed)
        );
        assert_eq!(newer.try_recv(), Err(oneshot::error::TryRecvError::Empty));
        events.dispatch(ClientEvent::Submitted {
            batch: "c".into(),
            refused: Vec::new(),
        });
        assert_eq!(newer.try_recv(), Ok(Vec::new()));
    }
}

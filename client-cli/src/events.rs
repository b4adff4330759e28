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

/// Routes reply-queue events to waiters.
#[derive(Default)]
pub struct Events {
    futures: Mutex<HashMap<String, watch::Sender<Option<Terminal>>>>,
    batches: Mutex<HashMap<String, oneshot::Sender<Vec<Refusal>>>>,
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
    /// `batch`, with the tasks it refused.
    pub fn expect_batch(&self, batch: &str) -> oneshot::Receiver<Vec<Refusal>> {
        let (tx, rx) = oneshot::channel();
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(batch.to_string(), tx);
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
                if let Some(tx) = self
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

    /// Consumes the reply queue until the connection closes.
    pub async fn consume(&self, mut consumer: Consumer) {
        while let Some(delivery) = consumer.next().await {
            let Ok(delivery) = delivery else { break };
            match decode::<ClientEvents>(&delivery.data) {
                Ok(batch) => batch.events.into_iter().for_each(|e| self.dispatch(e)),
                Err(e) => warn!(error = %e, "ignoring an undecodable event on the reply queue"),
            }
        }
        // Wake every waiter: nothing more will arrive on this queue.
        self.batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

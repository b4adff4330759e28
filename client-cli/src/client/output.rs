//! Forwarded output: what the namespace's tasks print, as they print it
//! (see `warren_core::store::output`), for a client that shows it.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::debug;
use warren_core::store::output::Chunk;

use super::Client;

/// How long after a lost subscription the next one is tried.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

impl Client {
    /// What the namespace's tasks print from now on, as `(key, chunk)`,
    /// until the receiver is dropped. A lost connection is subscribed again
    /// after a second; what was printed meanwhile is not forwarded (it is
    /// kept with each task's result: `logs`).
    pub async fn output(&self) -> mpsc::UnboundedReceiver<(String, Chunk)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            while !tx.is_closed() {
                match store.output().await {
                    Ok(stream) => {
                        let mut stream = std::pin::pin!(stream);
                        while let Some(item) = stream.next().await {
                            if tx.send(item).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, "cannot subscribe to tasks' output"),
                }
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            }
        });
        rx
    }
}

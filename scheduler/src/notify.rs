//! Telling clients what happened to the futures they watch.
//!
//! Events go to each client's exclusive reply queue through the default exchange,
//! grouped into one message per reply queue per scheduler step. They are not
//! confirmed: a client that has gone away has no queue and the event is dropped,
//! and a client that missed one finds the final state in Redis when it polls.
//! `Done` events carry values, so a step's events are split to stay under the
//! broker's message limit: one publish over it would close this channel.

use std::collections::BTreeMap;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection};
use warren_core::messages::{CONTENT_TYPE, ClientEvent, ClientEvents, PROTOCOL_VERSION};
use warren_core::sizing;
use warren_core::store::Notification;

/// Room left in a message for `{"v":1,"events":[...]}` around the events.
const ENVELOPE: usize = 64;

/// Publishes [`ClientEvents`] to reply queues.
#[derive(Clone)]
pub struct Notifier {
    ch: Channel,
    /// The largest message body to publish (setting `max_message_bytes`).
    budget: usize,
}

/// Events collected during one step, per reply queue.
#[derive(Default)]
pub struct Outgoing {
    by_queue: BTreeMap<String, Vec<ClientEvent>>,
}

impl Outgoing {
    /// Adds one event for `queue`.
    pub fn push(&mut self, queue: &str, event: ClientEvent) {
        if !queue.is_empty() {
            self.by_queue
                .entry(queue.to_string())
                .or_default()
                .push(event);
        }
    }

    /// Adds a `Done` event for every watcher of every notification.
    pub fn extend(&mut self, notes: Vec<Notification>) {
        for n in notes {
            for w in &n.watchers {
                self.push(
                    w,
                    ClientEvent::Done {
                        key: n.key.clone(),
                        terminal: n.terminal.clone(),
                    },
                );
            }
        }
    }
}

impl Notifier {
    /// A notifier on its own channel, publishing messages of at most
    /// `max_message_bytes`.
    pub async fn new(conn: &Connection, max_message_bytes: usize) -> anyhow::Result<Self> {
        Ok(Self {
            ch: conn.create_channel().await?,
            budget: max_message_bytes.saturating_sub(ENVELOPE),
        })
    }

    /// Sends everything collected.
    pub async fn send(&self, out: Outgoing) -> anyhow::Result<()> {
        let batches = out.by_queue.into_iter().flat_map(|(queue, events)| {
            let size = |e: &ClientEvent| sizing::json_len(e) + 1;
            sizing::split_by_bytes(events, size, usize::MAX, self.budget)
                .into_iter()
                .map(move |batch| (queue.clone(), batch))
        });
        for (queue, events) in batches {
            let body = serde_json::to_vec(&ClientEvents {
                v: PROTOCOL_VERSION,
                events,
            })?;
            self.ch
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_content_type(CONTENT_TYPE.into()),
                )
                .await?;
        }
        Ok(())
    }
}

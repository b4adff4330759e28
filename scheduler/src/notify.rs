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
use tracing::warn;
use warren_core::message_limit::MessageLimit;
use warren_core::messages::{CONTENT_TYPE, ClientEvent, ClientEvents, PROTOCOL_VERSION};
use warren_core::msgauth::{Auth, Family};
use warren_core::store::Notification;
use warren_core::topology::Topology;
use warren_core::{amqp, sizing};

/// Room left in a message for `{"v":1,"events":[...]}` around the events.
const ENVELOPE: usize = 64;

/// Publishes [`ClientEvents`] to reply queues.
#[derive(Clone)]
pub struct Notifier {
    ch: Channel,
    /// The largest message body to publish (setting `max_message_bytes`,
    /// or the broker's own limit once known).
    limit: MessageLimit,
    /// Signs the events (clients check them).
    auth: Auth,
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
    /// A notifier on its own channel, publishing messages within the
    /// topology's limit, signed with its key.
    pub async fn new(conn: &Connection, topology: &Topology) -> anyhow::Result<Self> {
        Ok(Self {
            ch: conn.create_channel().await?,
            limit: topology.message_limit().clone(),
            auth: topology.auth().clone(),
        })
    }

    /// Sends everything collected.
    pub async fn send(&self, out: Outgoing) -> anyhow::Result<()> {
        let budget = self.limit.get().saturating_sub(ENVELOPE);
        let batches = out.by_queue.into_iter().flat_map(|(queue, events)| {
            let size = |e: &ClientEvent| sizing::json_len(e) + 1;
            sizing::split_by_bytes(events, size, usize::MAX, budget)
                .into_iter()
                .map(move |batch| (queue.clone(), batch))
        });
        for (queue, events) in batches {
            // Watchers are read from Redis: one that is no queue name is
            // skipped, not allowed to stop the notifier.
            let routing_key = match amqp::name(&queue) {
                Ok(k) => k,
                Err(e) => {
                    warn!(error = %e, "not notifying a watcher that is no queue name");
                    continue;
                }
            };
            let body = serde_json::to_vec(&ClientEvents {
                v: PROTOCOL_VERSION,
                events,
            })?;
            self.ch
                .basic_publish(
                    "".into(),
                    routing_key,
                    BasicPublishOptions::default(),
                    &body,
                    self.auth.sign(
                        Family::Events,
                        &body,
                        BasicProperties::default().with_content_type(CONTENT_TYPE.into()),
                    ),
                )
                .await?;
        }
        Ok(())
    }
}

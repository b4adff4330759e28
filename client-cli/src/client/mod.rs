//! The client: submit work, wait for it, restart.
//!
//! Submissions go to the scheduler through the durable `<ns>.submit` queue, in
//! batches (a `map` of 10,000 tasks is ten messages). `submit` and `map` return
//! at once: their specs join an in-order outgoing list, published by a
//! background task as soon as the caller lets the runtime run anything else,
//! so submits made back to back leave as one message (like dask's
//! `BatchedSend`). Nothing waits for the broker's confirm or the scheduler's
//! ack, so a chain of dependent submits pays no round trip per link. [`Client::flush`] waits until every
//! submission so far is confirmed by RabbitMQ and recorded by a scheduler, and
//! returns the first error. Everything that reads state flushes first
//! (`outcomes`, `gather`, `result`, `as_completed`, `wait`, `states`, `status`,
//! `exists`, `cancel`, `forget`, `restart`), so a future the caller reads
//! always exists. With 256 submit messages in flight, a submit flushes too. A
//! program that only submits must call `flush` before it exits. With `detach`
//! nothing waits for the scheduler; `flush` still waits for the broker's
//! confirm.
//!
//! Results arrive as events on the client's reply queue; status reads go
//! straight to Redis.
//!
//! The client is split by what a caller does: [`submit`] (submit, map, flush:
//! batching in [`batching`]), [`wait`] (gather, as_completed, wait: results as
//! they arrive), [`admin`] (cancel, forget, restart, info, workers, dead
//! letters). This file holds what they share; the RabbitMQ connection, which
//! a client replaces when its node goes, is [`link`].

mod admin;
mod batching;
mod blobs;
mod command;
mod coordination;
mod link;
mod output;
mod run;
mod schedules;
mod submit;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use link::Link;
use warren_core::messages::TaskSpec;
use warren_core::msgauth::Family;
use warren_core::store::Store;
use warren_core::topology::Topology;
use warren_core::{Settings, amqp};

pub use admin::{Info, QueueInfo, RestartReport};
pub use command::Logs;
pub use submit::SubmitOptions;
pub use wait::WaitMode;

use crate::error::Error;
use crate::events::Events;
use crate::future::Future;

/// A connection to a warren namespace. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    topology: Topology,
    /// The RabbitMQ connection of the moment.
    link: std::sync::RwLock<Arc<Link>>,
    /// Held while a new link is opened: one reconnection at a time.
    relinking: tokio::sync::Mutex<()>,
    store: Store,
    events: Arc<Events>,
    in_flight: std::sync::Mutex<InFlight>,
    /// Held while a flush awaits: a second flush waits for the first, so a
    /// flush that returns covers every submission made before it was called.
    flushing: tokio::sync::Mutex<()>,
    /// Submissions not yet published, in order, each with its `detach`.
    outgoing: std::sync::Mutex<Vec<(TaskSpec, bool)>>,
    /// Held while `outgoing` is published, so batches leave in order.
    publishing: tokio::sync::Mutex<()>,
    /// A background publish of `outgoing` is on its way.
    publish_scheduled: std::sync::atomic::AtomicBool,
    /// The first error of a background publish, for the next flush.
    publish_error: std::sync::Mutex<Option<Error>>,
}

/// Submissions published but not yet known to be recorded by a scheduler.
#[derive(Default)]
struct InFlight {
    /// The messages themselves, to publish again on a new link.
    sent: Vec<submit::Sent>,
    confirms: Vec<amqp::PublisherConfirm>,
    acks: Vec<tokio::sync::oneshot::Receiver<Vec<warren_core::messages::Refusal>>>,
    tasks: usize,
    /// Keys of the tasks in those submissions.
    keys: std::collections::HashSet<String>,
    /// The oldest link generation they went out on: the link a failed
    /// confirm of theirs may blame (see `Client::flush`).
    oldest_generation: Option<u64>,
}

impl InFlight {
    /// Records that a message of this set went out on link `generation`.
    fn published_on(&mut self, generation: u64) {
        self.oldest_generation = Some(
            self.oldest_generation
                .map_or(generation, |g| g.min(generation)),
        );
    }
}

impl Client {
    /// Connects to RabbitMQ and Redis and opens this client's reply queue.
    pub async fn connect(settings: Settings) -> Result<Self, Error> {
        settings.validate()?;
        let topology = Topology::from_settings(&settings).with_keys(settings.keyring()?);
        let events = Arc::new(Events::default());
        let link = Link::open(&settings, &topology, &events, 0).await?;
        let store = Store::connect(&settings).await?;
        // What a refused publish taught any process of the namespace.
        store.sync_message_limit(topology.message_limit()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                topology,
                link: std::sync::RwLock::new(Arc::new(link)),
                relinking: tokio::sync::Mutex::new(()),
                store,
                events,
                in_flight: std::sync::Mutex::new(InFlight::default()),
                flushing: tokio::sync::Mutex::new(()),
                outgoing: std::sync::Mutex::new(Vec::new()),
                publishing: tokio::sync::Mutex::new(()),
                publish_scheduled: std::sync::atomic::AtomicBool::new(false),
                publish_error: std::sync::Mutex::new(None),
            }),
        })
    }

    /// When a request made now must have been confirmed and answered.
    fn request_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
            + Duration::from_secs(self.inner.settings.request_timeout_secs.max(1))
    }

    /// How many futures this client keeps an entry for (final futures are
    /// released once they have been awaited).
    pub fn tracked(&self) -> usize {
        self.inner.events.len()
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// A handle on an existing future (e.g. a key printed by `warren submit`).
    pub fn future(&self, key: &str) -> Future {
        Future::new(key.to_string(), self.clone())
    }

    fn unknown(&self, key: &str) -> Error {
        Error::UnknownFuture {
            key: key.to_string(),
            namespace: self.inner.settings.namespace.clone(),
        }
    }

    /// Schedulers serving this namespace (consumers of its submit queue).
    pub async fn scheduler_count(&self) -> u32 {
        self.submit_consumers().await.unwrap_or(0)
    }

    /// Schedulers consuming the submit queue, if RabbitMQ says.
    async fn submit_consumers(&self) -> Option<u32> {
        self.queue_stats(&self.inner.topology.submit_queue())
            .await
            .map(|(_, consumers)| consumers)
    }

    /// Ready messages and consumers of a queue; `None` if it does not exist
    /// (or RabbitMQ cannot say).
    async fn queue_stats(&self, name: &str) -> Option<(u32, u32)> {
        amqp::queue_stats(&self.link().conn, name).await
    }

    /// Publishes a request to the scheduler, with our reply queue if `reply`,
    /// and waits for the broker's confirm (on a new link if the node goes).
    async fn publish_request(&self, body: &[u8], reply: bool) -> Result<(), Error> {
        let mut relinks = 0;
        loop {
            let link = self.link();
            let confirmed = match self.publish_on(&link, body, reply).await {
                Ok(confirm) => {
                    self.await_confirms(vec![confirm], 1, self.request_deadline())
                        .await
                }
                Err(e) => Err(e),
            };
            match confirmed {
                Err(e) if (!link.alive() || e.is_nack()) && relinks < link::RELINKS => {
                    relinks += 1;
                    self.recover(link.generation, relinks).await?;
                }
                done => return done,
            }
        }
    }

    /// Publishes a request to the scheduler on the current link, opening a
    /// new one first if its connection closed; the caller awaits the confirm.
    /// Also returns the generation of the link it went out on.
    async fn publish(
        &self,
        body: &[u8],
        reply: bool,
    ) -> Result<(amqp::PublisherConfirm, u64), Error> {
        let mut relinks = 0;
        loop {
            let link = self.link();
            match self.publish_on(&link, body, reply).await {
                Ok(confirm) => return Ok((confirm, link.generation)),
                Err(_) if !link.alive() && relinks < link::RELINKS => {
                    relinks += 1;
                    self.recover(link.generation, relinks).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes a request on `link`.
    async fn publish_on(
        &self,
        link: &Link,
        body: &[u8],
        reply: bool,
    ) -> Result<amqp::PublisherConfirm, Error> {
        let mut props = amqp::json_properties(&[]);
        if reply {
            props = props.with_reply_to(amqp::name(&link.reply_queue)?);
        }
        let props = self.inner.topology.auth().sign(Family::Submit, body, props);
        Ok(amqp::publish(
            &link.publish,
            "",
            &self.inner.topology.submit_queue(),
            body,
            props,
        )
        .await?)
    }
}

//! The client's RabbitMQ connection, replaced whole when it drops.
//!
//! A client lives as long as its caller's program, a notebook say, while the
//! RabbitMQ node it happens to be connected to can die under it. Schedulers
//! and workers rebuild everything on a connection error
//! (`warren_core::reconnect`); a client cannot start over, because callers
//! hold its futures and wait on them. So what hangs on the connection is one
//! value, [`Link`]: the connection, its publishing channel and its reply
//! queue. When a publish or a confirm fails and the link's connection is
//! closed, the client opens a new link (trying every node of `amqp_url`),
//! publishes again what was not yet recorded, and carries on.
//!
//! Why publishing again is safe: a submission is idempotent (the scheduler's
//! `submit.lua` records a key once), and a restart or cancel asks for what
//! is already so. What was in flight on the old link is kept until a
//! scheduler acknowledged it (see `InFlight`).
//!
//! Events for the old reply queue are lost with it; waiters already ask
//! Redis when events stay silent, and that ask registers the new reply queue
//! as a watcher, so events flow again.

use std::sync::Arc;

use lapin::{Channel, Connection};
use tracing::warn;
use warren_core::{Settings, amqp, topology::Topology};

use super::Client;
use crate::error::Error;
use crate::events::Events;

/// One connection to RabbitMQ and what the client opened on it.
pub(super) struct Link {
    pub(super) conn: Connection,
    /// Whether RabbitMQ blocks this connection's publishes (an alarm).
    pub(super) blocked: amqp::Blocked,
    pub(super) publish: Channel,
    pub(super) reply_queue: String,
    /// Counts the links this client opened; events of an old link's queue
    /// never touch a newer link's waiters.
    pub(super) generation: u64,
}

impl Link {
    /// Connects (to the first node of `amqp_url` that answers, waiting for one
    /// within `request_timeout_secs` when several are named), declares the
    /// topology and opens the reply queue, whose events go to `events`.
    pub(super) async fn open(
        settings: &Settings,
        topology: &Topology,
        events: &Arc<Events>,
        generation: u64,
    ) -> Result<Self, Error> {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("warren-client {host}:{}", std::process::id());
        let patience = std::time::Duration::from_secs(settings.request_timeout_secs);
        let (conn, blocked) = amqp::connect_riding(settings, &name, patience).await?;
        // A scheduler declares the topology; a client declares it only when
        // it starts first. Asking first (a passive declare needs no rights)
        // lets a client run as a user that may not declare or delete shared
        // queues (`warren access --role client`).
        if amqp::queue_stats(&conn, &topology.submit_queue())
            .await
            .is_none()
        {
            let setup = conn.create_channel().await?;
            topology
                .declare(&setup, &[])
                .await
                .map_err(|e| refused_declare(e, topology))?;
        }
        let publish = amqp::confirm_channel(&conn).await?;
        let consume = conn.create_channel().await?;
        let tag = format!("warren-client@{host}:{}", std::process::id());
        let name = amqp::private_queue_name(topology.namespace(), "client");
        let (reply_queue, consumer) = amqp::private_queue(&consume, &name, None, &tag).await?;
        let ev = events.clone();
        let auth = topology.auth().clone();
        tokio::spawn(async move { ev.consume(consumer, generation, auth).await });
        Ok(Self {
            conn,
            blocked,
            publish,
            reply_queue,
            generation,
        })
    }

    /// Whether the connection is still up.
    pub(super) fn alive(&self) -> bool {
        self.conn.status().connected()
    }
}

/// A topology declaration RabbitMQ refused for want of rights says what to
/// do: the user is a client's, and a scheduler declares the topology.
fn refused_declare(e: warren_core::error::Error, topology: &Topology) -> Error {
    let text = e.to_string();
    if warren_core::error::amqp_refused(&text) {
        Error::CannotDeclare {
            cause: text,
            queue: topology.submit_queue(),
            namespace: topology.namespace().to_string(),
        }
    } else {
        e.into()
    }
}

/// Links a client opens after its first before it gives up on one call:
/// with [`Client::recover`]'s waits, about 13 s of a broker that nacks.
pub(super) const RELINKS: u32 = 10;

/// The wait after a nack, times the attempt (at most 8 times).
const NACK_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

impl Client {
    /// The current link.
    pub(super) fn link(&self) -> Arc<Link> {
        self.inner
            .link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What every publisher does after a publish or confirm on link
    /// generation `failed` failed, before its `attempt`-th try (from 1): it
    /// replaces that link, having first waited if its connection is still
    /// up. A link another caller already replaced is left alone: the failure
    /// was the old link's, and the caller publishes again on the new one.
    ///
    /// Up, yet failed, means refused: a quorum queue whose leader died nacks
    /// until it has a new one, and a channel that first published while the
    /// leader was dying goes on nacking (RabbitMQ 3.10: 10 tries over 11 s on
    /// one channel, in cluster_chaos), while a fresh connection 0.8 s later
    /// was confirmed. So wait, then publish on a fresh link.
    pub(super) async fn recover(&self, failed: u64, attempt: u32) -> Result<(), Error> {
        let link = self.link();
        if link.generation != failed {
            return Ok(());
        }
        if link.alive() {
            tokio::time::sleep(NACK_BACKOFF * attempt.min(8)).await;
        }
        self.relink(failed).await
    }

    /// Replaces link `failed` (whose connection closed, or whose channel
    /// nacks) with a new one, unless another caller already did.
    pub(super) async fn relink(&self, failed: u64) -> Result<(), Error> {
        let _one_at_a_time = self.inner.relinking.lock().await;
        if self.link().generation != failed {
            return Ok(());
        }
        let link = Link::open(
            &self.inner.settings,
            &self.inner.topology,
            &self.inner.events,
            failed + 1,
        )
        .await?;
        warn!(
            namespace = %self.inner.settings.namespace,
            "the client's RabbitMQ link failed; reconnected (submissions in flight are sent again)"
        );
        let old = std::mem::replace(
            &mut *self.inner.link.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(link),
        );
        // A link replaced while its connection is up (its channel nacked)
        // must not stay open beside the new one.
        if old.alive() {
            let close = old.conn.close(200, "replaced by a new link".into());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), close).await;
        }
        Ok(())
    }
}

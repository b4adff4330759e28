//! The control broadcast: every worker hears every cancel and restart on a
//! private queue bound to the namespace's control exchange.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use lapin::{Channel, Connection, Consumer};
use tracing::{debug, info, warn};
use warren_core::amqp;
use warren_core::messages::{ClientEvent, ClientEvents, Control, PROTOCOL_VERSION, decode};
use warren_core::msgauth::Family;
use warren_core::topology::Topology;

use crate::shared::Shared;

/// A private queue bound to the control exchange: every worker gets every broadcast.
pub(crate) async fn control_consumer(
    conn: &Connection,
    topology: &Topology,
    identity: &str,
) -> anyhow::Result<Consumer> {
    let ch = conn.create_channel().await?;
    let tag = format!("warren-worker@{identity}/control");
    let name = amqp::private_queue_name(topology.namespace(), "control");
    let (_, consumer) =
        amqp::private_queue(&ch, &name, Some(&topology.control_exchange()), &tag).await?;
    Ok(consumer)
}

/// Applies control broadcasts until the consumer ends.
pub(crate) async fn control_loop(
    mut consumer: Consumer,
    reply: Channel,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        // A forged broadcast (a Restart, a Cancel) changes nothing.
        if let Err(why) =
            shared
                .topology
                .auth()
                .check(Family::Control, &delivery.data, &delivery.properties)
        {
            warn!(reason = %why, "ignoring a control message");
            continue;
        }
        match decode::<Control>(&delivery.data) {
            Ok(Control::Cancel { keys, .. }) => {
                debug!(keys = keys.len(), "cancel");
                shared.cancel(&keys);
            }
            Ok(Control::Restart {
                epoch: e, reply_to, ..
            }) => {
                shared.epoch.fetch_max(e, Ordering::SeqCst);
                shared.stop_all();
                info!(epoch = e, "restart: dropping older work");
                if let Some(hook) = shared.on_restart.clone()
                    && let Err(e) = tokio::task::spawn_blocking(move || hook()).await
                {
                    warn!(error = %e, "the restart hook failed");
                }
                let body = serde_json::to_vec(&ClientEvents {
                    v: PROTOCOL_VERSION,
                    events: vec![ClientEvent::WorkerReady {
                        worker: shared.identity.clone(),
                    }],
                })?;
                // Only a client queue of this namespace is answered: a
                // forged restart must not make every worker publish elsewhere.
                if !warren_core::limits::is_client_queue(shared.topology.namespace(), &reply_to) {
                    warn!(reply_to = %warren_core::taskkey::shown(&reply_to), "not answering a restart whose reply_to is no client queue of this namespace");
                    continue;
                }
                reply
                    .basic_publish(
                        "".into(),
                        amqp::name(&reply_to)?,
                        Default::default(),
                        &body,
                        shared.topology.auth().sign(
                            Family::Events,
                            &body,
                            amqp::json_properties(&[]),
                        ),
                    )
                    .await?;
            }
            Err(e) => warn!(error = %e, "ignoring an undecodable control message"),
        }
    }
    anyhow::bail!("the control consumer ended")
}

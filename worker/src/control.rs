//! The control broadcast: every worker hears every cancel, restart and run
//! on a private queue bound to the namespace's control exchange.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use lapin::{Channel, Connection, Consumer};
use serde_json::Value;
use tracing::{debug, info, warn};
use warren_core::amqp;
use warren_core::messages::{
    ClientEvent, ClientEvents, Control, PROTOCOL_VERSION, TaskFailure, decode,
};
use warren_core::msgauth::Family;
use warren_core::store::Store;
use warren_core::topology::Topology;

use crate::registry::CallSite;
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
    store: Store,
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
        let decoded = decode::<Control>(&delivery.data)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(|()| c));
        match decoded {
            Ok(Control::Run { id, func, args, .. }) => {
                // Only where the function lives: a run of Python code is no
                // Rust worker's business.
                if shared.functions.contains(&func) {
                    tokio::spawn(run(shared.clone(), store.clone(), id, func, args));
                }
            }
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

/// Runs a client's `run` call outside the task slots (as dask's
/// `Client.run`: setup and inspection, not results), and keeps this
/// worker's outcome under the run's id.
async fn run(shared: Arc<Shared>, store: Store, id: String, func: String, args: Vec<Value>) {
    let registry = shared.registry.clone();
    let identity = shared.identity.clone();
    let run_id = id.clone();
    let called = tokio::task::spawn_blocking(move || {
        let site = CallSite {
            key: &run_id,
            worker: &identity,
            seat: None,
        };
        crate::cancel::with_flag(Arc::new(AtomicBool::new(false)), || {
            registry.call(&func, args, site)
        })
    })
    .await;
    let outcome = match called {
        Ok(Ok(value)) => serde_json::json!({ "ok": value }),
        Ok(Err(failure)) => serde_json::json!({ "error": failure }),
        Err(e) => {
            serde_json::json!({ "error": TaskFailure::new("WorkerError", e.to_string(), "") })
        }
    };
    info!(run = %id, "ran a client's run call");
    if let Err(e) = store
        .put_run_outcome(&id, &shared.identity, &outcome.to_string())
        .await
    {
        warn!(run = %id, error = %e, "could not keep the outcome of a run");
    }
}

//! `run`: a function once on every worker that has it (dask's `Client.run`),
//! for setting up or inspecting workers rather than computing results.
//!
//! The call goes straight to the control exchange, which every worker hears
//! (no scheduler is involved, as none holds state about it), signed like
//! the scheduler's own broadcasts. Each worker that runs the function keeps
//! its outcome in Redis under the run's id (`P run:<id>`), so the client
//! collects answers by reading one hash, and a worker that dies mid-run is
//! simply missing from it.

use std::collections::HashMap;

use serde_json::Value;
use warren_core::amqp;
use warren_core::messages::{Control, PROTOCOL_VERSION};
use warren_core::msgauth::Family;

use super::Client;
use crate::error::Error;

impl Client {
    /// Broadcasts `func(args)` to every worker; returns the run's id, under
    /// which [`Client::run_outcomes`] finds each worker's outcome.
    pub async fn run(&self, func: &str, args: Vec<Value>) -> Result<String, Error> {
        // What the call refers to (a function sent as code) is stored first.
        self.flush().await?;
        let id = format!("run-{}", uuid::Uuid::new_v4().simple());
        let control = Control::Run {
            v: PROTOCOL_VERSION,
            id: id.clone(),
            func: func.to_string(),
            args,
        };
        control.validate().map_err(Error::InvalidArgument)?;
        let body = serde_json::to_vec(&control)?;
        let props =
            self.inner
                .topology
                .auth()
                .sign(Family::Control, &body, amqp::json_properties(&[]));
        let link = self.link();
        let confirm = amqp::publish(
            &link.publish,
            &self.inner.topology.control_exchange(),
            "",
            &body,
            props,
        )
        .await?;
        self.await_confirms(vec![confirm], 1, self.request_deadline())
            .await?;
        Ok(id)
    }

    /// The outcomes of run `id` so far, by worker (`host:pid`): each a JSON
    /// object, `{"ok": value}` or `{"error": {type, message, traceback}}`.
    pub async fn run_outcomes(&self, id: &str) -> Result<HashMap<String, String>, Error> {
        Ok(self.inner.store.run_outcomes(id).await?)
    }
}

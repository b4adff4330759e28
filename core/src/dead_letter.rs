//! Moving a message nobody can process to `<ns>.dead`: the one way every
//! component dead-letters (the scheduler's malformed requests and reports, a
//! worker's undecodable work).
//!
//! The copy keeps the original's headers, reply queue and timestamp and
//! gains the reason and the queue it came from, so `warren dead` can show it
//! and replay it. The original is acked only once the copy is confirmed: a
//! crash in between leaves two copies, never none.

use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use tracing::warn;

use crate::amqp;
use crate::error::Result;
use crate::topology::{DEAD_ROUTING_KEY, ORIGIN_HEADER, REASON_HEADER, Topology};

/// Publishes `delivery` to the dead-letter exchange with `reason`, waits for
/// the confirm on `ch` (a confirm channel), then acks the original.
pub async fn dead_letter(
    ch: &Channel,
    topology: &Topology,
    delivery: Delivery,
    reason: &str,
) -> Result<()> {
    warn!(
        reason,
        bytes = delivery.data.len(),
        origin = %delivery.routing_key,
        "dead-lettering a message that cannot be processed"
    );
    let origin = delivery.routing_key.to_string();
    let mut props = amqp::dead_letter_properties(
        &[(REASON_HEADER, reason), (ORIGIN_HEADER, &origin)],
        &delivery.properties,
        &delivery.data,
    );
    if let Some(reply_to) = delivery.properties.reply_to() {
        props = props.with_reply_to(reply_to.clone());
    }
    let confirm = amqp::publish(
        ch,
        &topology.dead_letter_exchange(),
        DEAD_ROUTING_KEY,
        &delivery.data,
        props,
    )
    .await?;
    amqp::confirmed(vec![confirm], "the dead-letter exchange").await?;
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

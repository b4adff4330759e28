//! The broker's floor under warren's latencies, measured in the same run.
//!
//! A `submit(inc).result()` crosses RabbitMQ four times (client → scheduler
//! → worker → scheduler → client), and each link of a chain twice (worker →
//! scheduler → worker). No change inside warren's own processes can make a
//! round trip cheaper than four hops, or a chain faster than one link per
//! two hops. So the report sets the issue's latency targets against what the
//! broker alone costs on this machine at this moment: one persistent message
//! bounced between two connections through two durable queues, published
//! on confirm channels and acked by hand, as warren's processes do.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use warren_core::{Settings, amqp};

/// The median time of one hop through the broker.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub hop_ms: f64,
}

/// How long one bounce may take before the measurement gives up.
const BOUNCE_LIMIT: Duration = Duration::from_secs(10);

/// Bounces a message `rounds` times (after 50 to warm up) and halves the
/// median round.
pub async fn measure(settings: &Settings, rounds: usize) -> Result<Floor> {
    let here = amqp::connect(settings, "warren-compare floor").await?;
    let there = amqp::connect(settings, "warren-compare floor echo").await?;
    let ping = format!("{}.floor-ping", settings.namespace);
    let pong = format!("{}.floor-pong", settings.namespace);
    let setup = here.create_channel().await?;
    for q in [&ping, &pong] {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        setup
            .queue_declare(q.as_str().into(), durable, FieldTable::default())
            .await
            .with_context(|| format!("declaring {q}"))?;
    }
    let echo = tokio::spawn(echo(
        amqp::confirm_channel(&there).await?,
        consumer(&there.create_channel().await?, &ping).await?,
        pong.clone(),
    ));
    let measured = bounce(&here, &ping, &pong, rounds).await;
    echo.abort();
    for q in [&ping, &pong] {
        let _ = setup
            .queue_delete(q.as_str().into(), Default::default())
            .await;
    }
    let _ = here.close(200, "floor measured".into()).await;
    let _ = there.close(200, "floor measured".into()).await;
    let mut rounds = measured?;
    rounds.sort();
    let median = rounds[rounds.len() / 2];
    Ok(Floor {
        hop_ms: median.as_secs_f64() * 1000.0 / 2.0,
    })
}

async fn consumer(ch: &Channel, queue: &str) -> Result<lapin::Consumer> {
    ch.basic_consume(
        queue.into(),
        "warren-compare-floor".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .with_context(|| format!("consuming {queue}"))
}

/// Sends `ping` messages and times each until it comes back on `pong`.
async fn bounce(conn: &Connection, ping: &str, pong: &str, rounds: usize) -> Result<Vec<Duration>> {
    let publish = amqp::confirm_channel(conn).await?;
    let mut back = consumer(&conn.create_channel().await?, pong).await?;
    let body =
        br#"{"v":1,"key":"inc-0123456789abcdef0123456789abcdef","func":"inc","args":[12345]}"#;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 50 {
        let t = Instant::now();
        let _confirm = amqp::publish(&publish, "", ping, body, amqp::json_properties(&[])).await?;
        let delivery = tokio::time::timeout(BOUNCE_LIMIT, back.next())
            .await
            .with_context(|| format!("bounce {i} did not come back within {BOUNCE_LIMIT:?}"))?
            .context("the pong consumer ended")??;
        let took = t.elapsed();
        delivery.acker.ack(BasicAckOptions::default()).await?;
        if i >= 50 {
            times.push(took);
        }
    }
    Ok(times)
}

/// Publishes every message `incoming` delivers to `pong`, then acks it.
async fn echo(publish: Channel, mut incoming: lapin::Consumer, pong: String) -> Result<()> {
    while let Some(delivery) = incoming.next().await {
        let delivery = delivery?;
        let _confirm = amqp::publish(
            &publish,
            "",
            &pong,
            &delivery.data,
            amqp::json_properties(&[]),
        )
        .await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

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
//!
//! Redis is on the same paths: a round trip runs three scripts one after
//! another (`submit.lua`, the worker's `start.lua`, `complete.lua`), a chain
//! link two (`start.lua`, `complete.lua`), each a round trip the next step
//! waits for. The floor adds the median round trip of the cheapest script
//! (`return 1`), so it stays a lower bound: warren's scripts do more.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use warren_core::store::Store;
use warren_core::{Settings, amqp};

/// The median time of one hop through the broker, and of one script
/// round trip to Redis.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub hop_ms: f64,
    pub script_ms: f64,
}

impl Floor {
    /// The least a `submit(inc).result()` can take: four hops, three scripts.
    pub fn round_trip_ms(&self) -> f64 {
        4.0 * self.hop_ms + 3.0 * self.script_ms
    }

    /// The most links of a chain a second: two hops and two scripts each.
    pub fn chain_per_s(&self) -> f64 {
        1000.0 / (2.0 * self.hop_ms + 2.0 * self.script_ms)
    }
}

/// How long one bounce may take before the measurement gives up.
const BOUNCE_LIMIT: Duration = Duration::from_secs(10);

/// Bounces a message `rounds` times (after [`WARM_UP`]) and halves the
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
    let mut deleted = Ok(());
    for q in [&ping, &pong] {
        let gone = setup
            .queue_delete(q.as_str().into(), Default::default())
            .await
            .with_context(|| format!("deleting the queue {q}"));
        deleted = deleted.and(gone.map(|_| ()));
    }
    let _ = here.close(200, "floor measured".into()).await;
    let _ = there.close(200, "floor measured".into()).await;
    let rounds_taken = measured?;
    deleted?;
    Ok(Floor {
        hop_ms: median_ms(rounds_taken) / 2.0,
        script_ms: script_round_trip(settings, rounds).await?,
    })
}

/// The median of `times`, in milliseconds.
fn median_ms(times: Vec<Duration>) -> f64 {
    crate::workloads::median(times.iter().map(|t| t.as_secs_f64() * 1000.0).collect())
}

/// The median round trip of `EVAL "return 1" 0` over `rounds` calls (after
/// [`WARM_UP`]), on the connection warren's processes use
/// (`ConnectionManager`, through the store).
async fn script_round_trip(settings: &Settings, rounds: usize) -> Result<f64> {
    let mut redis = Store::connect(settings)
        .await
        .context("connecting to Redis")?
        .connection();
    let script = redis::Script::new("return 1");
    let times = after_warm_up(rounds, async |i| {
        let t = Instant::now();
        let one: i64 = script
            .invoke_async(&mut redis)
            .await
            .with_context(|| format!("script round trip {i}"))?;
        anyhow::ensure!(one == 1, "the script returned {one}");
        Ok(t.elapsed())
    })
    .await?;
    Ok(median_ms(times))
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
    after_warm_up(rounds, async |i| {
        let t = Instant::now();
        let _confirm = amqp::publish(&publish, "", ping, body, amqp::json_properties(&[])).await?;
        let delivery = tokio::time::timeout(BOUNCE_LIMIT, back.next())
            .await
            .with_context(|| format!("bounce {i} did not come back within {BOUNCE_LIMIT:?}"))?
            .context("the pong consumer ended")??;
        let took = t.elapsed();
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(took)
    })
    .await
}

/// Untimed rounds first, so that connections, scripts and queues are warm.
const WARM_UP: usize = 50;

/// Runs `round` [`WARM_UP`] + `rounds` times and keeps the last `rounds`
/// durations it returns (each round times what it measures itself).
async fn after_warm_up(
    rounds: usize,
    mut round: impl AsyncFnMut(usize) -> Result<Duration>,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..WARM_UP + rounds {
        let took = round(i).await?;
        if i >= WARM_UP {
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

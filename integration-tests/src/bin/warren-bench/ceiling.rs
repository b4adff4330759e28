//! Row 1: the broker's own ceiling, as a reference for the rows after it.

use super::*;

/// The broker's ceiling through one durable queue of the configured type.
pub(crate) struct Ceiling {
    /// Published with confirms (windowed), msg/s.
    pub(crate) publish: f64,
    /// Consumed with one manual ack each, msg/s.
    pub(crate) consume: f64,
    /// Messages / (publish time + consume time): each message published and consumed.
    pub(crate) combined: f64,
}

/// Declares `<ns>.bench-ceiling`, measures it, and deletes it whatever happened.
pub(crate) async fn broker_ceiling(settings: &Settings, n: usize) -> Result<Ceiling> {
    let conn = amqp::connect(settings, "warren-bench ceiling")
        .await
        .context("connecting to RabbitMQ")?;
    let queue = format!("{}.bench-ceiling", settings.namespace);
    let ch = conn
        .create_channel()
        .await
        .context("opening a channel for the ceiling queue")?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from(settings.queue_type.as_str())),
    );
    let declare_options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), declare_options, arguments)
        .await
        .with_context(|| format!("declaring the queue {queue}"))?;
    let measured = measure_ceiling(&conn, &queue, n).await;
    let deleted = ch
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "bench done".into()).await;
    let ceiling = measured?;
    deleted.with_context(|| format!("deleting the queue {queue}"))?;
    Ok(ceiling)
}

/// Publishes `n` persistent messages in confirmed windows, then consumes them.
pub(crate) async fn measure_ceiling(
    conn: &lapin::Connection,
    queue: &str,
    n: usize,
) -> Result<Ceiling> {
    // About the size of a work message for `inc`.
    let body = br#"{"v":1,"key":"inc-0123456789abcdef0123456789abcdef","func":"inc","args":[12345],"epoch":0,"pad":"................................................................"}"#;
    let publish_ch = amqp::confirm_channel(conn)
        .await
        .context("opening a confirm channel")?;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let window = CONFIRM_WINDOW.min(n - sent);
        let mut confirms = Vec::with_capacity(window);
        for _ in 0..window {
            let props = amqp::json_properties(&[]);
            confirms.push(amqp::publish(&publish_ch, "", queue, body, props).await?);
        }
        amqp::confirmed(confirms, queue)
            .await
            .context("awaiting publisher confirms")?;
        sent += window;
    }
    let publish_time = t.elapsed();
    let consume_time = consume_all(conn, queue, n).await?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    Ok(Ceiling {
        publish: rate(publish_time),
        consume: rate(consume_time),
        combined: rate(publish_time + consume_time),
    })
}

/// Consumes `n` messages from `queue`, acking each; returns the time taken.
pub(crate) async fn consume_all(
    conn: &lapin::Connection,
    queue: &str,
    n: usize,
) -> Result<Duration> {
    let ch = conn
        .create_channel()
        .await
        .context("opening a consume channel")?;
    ch.basic_qos(CEILING_PREFETCH, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;
    let t = Instant::now();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "warren-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    for i in 0..n {
        let delivery = tokio::time::timeout(limits::DELIVERY, consumer.next())
            .await
            .with_context(|| format!("message {i} of {n} did not arrive"))?
            .context("the consumer ended")?
            .context("receiving a message")?;
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .context("acking")?;
    }
    let took = t.elapsed();
    let _ = ch.close(200, "done".into()).await;
    Ok(took)
}

/// Row 1.
pub(crate) fn ceiling_row(
    n: usize,
    c: &Ceiling,
    queue_type: warren_core::topology::QueueType,
) -> Row {
    Row {
        id: "1",
        what: format!(
            "broker ceiling: {} persistent msgs through one durable {queue_type} queue, confirms per {CONFIRM_WINDOW}, manual acks",
            thousands(n as u64)
        ),
        value: format!(
            "{} msg/s published+consumed (publish {}/s, consume {}/s)",
            thousands(c.combined as u64),
            thousands(c.publish as u64),
            thousands(c.consume as u64)
        ),
        target: "(reference)".into(),
        verdict: Verdict::Info,
        others: None,
    }
}

//! One big task must not stop a namespace (issue 16, point 1).
//!
//! Values are inlined into work messages, so a task whose dependencies are
//! big makes a big message. RabbitMQ closes the channel of a publish over its
//! `max_message_size`; a dispatcher that retried it stopped every task of the
//! namespace behind it. These tests run on a private RabbitMQ node whose limit
//! is 1.5 MB (changing the shared broker's would touch every other test).

use std::time::{Duration, Instant};

use serde_json::json;
use warren_client::{Client, Error, Future};
use warren_integration_tests::{Cluster, ClusterOptions, PrivateRabbit};

const BROKER_LIMIT: usize = 1_500_000;
const PAYLOAD_LIMIT: usize = 1_000_000;

async fn cluster(rabbit: &PrivateRabbit) -> Cluster {
    Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 2,
        env: vec![
            ("WARREN_AMQP_URL".into(), rabbit.amqp_url()),
            ("WARREN_MAX_MESSAGE_BYTES".into(), BROKER_LIMIT.to_string()),
            ("WARREN_MAX_PAYLOAD_BYTES".into(), PAYLOAD_LIMIT.to_string()),
        ],
        ..Default::default()
    })
    .await
}

async fn failure_of(f: &Future) -> warren_core::messages::TaskFailure {
    match tokio::time::timeout(Duration::from_secs(60), f.result()).await {
        Ok(Err(Error::Task { failure, .. })) => failure,
        other => panic!("expected {} to fail, got {other:?}", f.key()),
    }
}

/// `inc 1` is 2 within a few seconds: dispatch goes on.
async fn still_dispatching(client: &Client) {
    let started = Instant::now();
    let f = client.submit("inc", (1,)).await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(20), f.result())
        .await
        .expect("a small task behind the big one must not wait")
        .unwrap();
    assert_eq!(v, json!(2));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_too_big_to_publish_fails_alone_and_the_namespace_goes_on() {
    let rabbit = PrivateRabbit::start(&[&format!("max_message_size = {BROKER_LIMIT}")]);
    let c = cluster(&rabbit).await;
    let client = c.client().await;

    // The chain: `add_them @P @P` doubling a 100,000-character string.
    let mut p = client
        .submit("identity", ("x".repeat(100_000),))
        .await
        .unwrap();
    let mut links = vec![p.clone()];
    for _ in 0..4 {
        p = client.submit("add_them", (&p, &p)).await.unwrap();
        links.push(p.clone());
    }
    let after = client.submit("inc", (&links[0],)).await;
    // 100k, 200k, 400k and 800k characters finish; the next link would be a
    // 1.6 MB work message, over the broker's 1.5 MB.
    for (i, f) in links[..4].iter().enumerate() {
        let v = tokio::time::timeout(Duration::from_secs(60), f.result())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.as_str().map(str::len), Some(100_000 << i));
    }
    let failure = failure_of(&links[4]).await;
    assert_eq!(failure.kind, "PayloadTooLarge", "{failure:?}");
    for needle in [
        links[4].key(),
        "over the limit of 1500000 bytes",
        "max_message_bytes",
    ] {
        assert!(
            failure.message.contains(needle),
            "{needle}: {}",
            failure.message
        );
    }
    // A dependent of it ends too, rather than waiting for ever.
    let dependent = client.submit("inc", (&links[4],)).await.unwrap();
    let _ = failure_of(&dependent).await;
    // `inc("x...")` is a TypeError: it ran, so it was published.
    assert_eq!(failure_of(&after.unwrap()).await.kind, "TypeError");
    still_dispatching(&client).await;

    // The CLI says it: exit 1, the kind and the sizes.
    let out = c.warren(&["result", links[4].key()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PayloadTooLarge") && err.contains("1500000"),
        "{err}"
    );
    // Nothing was dead-lettered: the task failed as a task.
    assert_eq!(c.queue_depth(&c.topology().dead_queue()).await, 0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_over_max_payload_bytes_is_the_tasks_error_at_the_worker() {
    let rabbit = PrivateRabbit::start(&[&format!("max_message_size = {BROKER_LIMIT}")]);
    let c = cluster(&rabbit).await;
    let client = c.client().await;
    let half = client
        .submit("identity", ("y".repeat(600_000),))
        .await
        .unwrap();
    // Each argument fits; their sum (1.2 MB) is over max_payload_bytes (1 MB)
    // and fits in a broker message, so only the worker can refuse it.
    let big = client.submit("add_them", (&half, &half)).await.unwrap();
    let failure = failure_of(&big).await;
    assert_eq!(failure.kind, "PayloadTooLarge", "{failure:?}");
    for needle in [
        "is 1200002 bytes",
        "limit of 1000000 bytes",
        "max_payload_bytes",
    ] {
        assert!(
            failure.message.contains(needle),
            "{needle}: {}",
            failure.message
        );
    }
    // Big results finishing together (two slots, 800 kB each) are reported,
    // and told to the client, in several messages, never one over the
    // broker's 1.5 MB.
    let parts: Vec<Future> = {
        let mut v = Vec::new();
        for i in 0..4 {
            let s = format!("{i}{}", "z".repeat(800_000));
            v.push(client.submit("identity", (s,)).await.unwrap());
        }
        v
    };
    let values = tokio::time::timeout(Duration::from_secs(60), client.gather(&parts))
        .await
        .expect("big results must arrive")
        .unwrap();
    assert_eq!(values.len(), 4);
    for (i, v) in values.iter().enumerate() {
        assert!(v.as_str().unwrap().starts_with(&i.to_string()));
    }
    still_dispatching(&client).await;
    c.shutdown().await;
}

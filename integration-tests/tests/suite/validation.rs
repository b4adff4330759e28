//! One validation for a task, in `core` (issue 16, point 2): the client
//! applies it before sending, so the CLI fails at once with the reason, and
//! the scheduler applies it on receipt, refusing a bad task alone and
//! telling its client which and why.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use warren_core::amqp;
use warren_core::messages::{ClientEvent, ClientEvents, ClientRequest, PROTOCOL_VERSION, TaskSpec};
use warren_integration_tests::{Cluster, ok_stdout};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_the_scheduler_would_refuse_fail_at_the_cli_at_once_and_send_nothing() {
    let c = Cluster::start(1, 1).await;
    let nested = (0..126).fold("1".to_string(), |v, _| format!("[{v}]"));
    let long_name = "f".repeat(230);
    for args in [
        vec!["submit", "--allow-unserved", long_name.as_str(), "1"],
        vec!["submit", "identity", nested.as_str()],
        vec!["map", "identity", "1", nested.as_str(), "3"],
    ] {
        let started = Instant::now();
        let out = c.warren(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("must be 1-250 bytes") || err.contains("nested 126 deep"),
            "{err}"
        );
        assert!(
            err.len() < 2_000,
            "the error echoes too much: {} bytes",
            err.len()
        );
    }
    // Nothing of the map was sent: its good tasks are not recorded either.
    let info = c.client().await.info().await.unwrap();
    assert_eq!(info.stats.count("submitted"), 0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_refuses_a_bad_task_alone_and_says_so_to_its_client() {
    let c = Cluster::start(1, 1).await;
    let topo = c.topology();
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    let replies = conn.create_channel().await.unwrap();
    let name = amqp::private_queue_name(&c.settings.namespace, "client");
    let (reply_queue, mut consumer) = amqp::private_queue(&replies, &name, None, "validation-test")
        .await
        .unwrap();
    let task = |key: &str| TaskSpec::new(key, "inc", vec![json!(41)]);
    // What an older or foreign client might send: one key too long.
    let body = serde_json::to_vec(&ClientRequest::Submit {
        v: PROTOCOL_VERSION,
        batch: "b1".into(),
        tasks: vec![task("good-one"), task(&"k".repeat(300))],
        deps_in_flight: false,
    })
    .unwrap();
    let props = amqp::json_properties(&[]).with_reply_to(reply_queue.as_str().into());
    let confirm = amqp::publish(&ch, "", &topo.submit_queue(), &body, props)
        .await
        .unwrap();
    amqp::confirmed(vec![confirm], "test").await.unwrap();

    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(d)) = consumer.next().await {
            let events: ClientEvents = serde_json::from_slice(&d.data).unwrap();
            for e in events.events {
                if let ClientEvent::Submitted { batch, refused } = e {
                    assert_eq!(batch, "b1");
                    return refused;
                }
            }
        }
        panic!("the reply queue closed");
    })
    .await
    .expect("the scheduler answered");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].reason.contains("1-250 bytes"), "{refused:?}");
    // The good task of the same batch was recorded and runs.
    let v = ok_stdout(&c.warren(&["result", "--timeout", "20", "good-one"]));
    assert_eq!(v.trim(), "42");
    c.shutdown().await;
}

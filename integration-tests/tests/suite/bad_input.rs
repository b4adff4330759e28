//! Bad input gets a clear error naming the problem, and loses nothing.

use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use serde_json::json;
use warren_client::Error;
use warren_core::amqp;
use warren_core::topology::{ORIGIN_HEADER, REASON_HEADER};
use warren_integration_tests::{Cluster, fresh_settings, ok_stdout, run_cli};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn task_records(c: &Cluster) -> usize {
    let store = warren_core::store::Store::connect(&c.settings)
        .await
        .unwrap();
    let mut con = store.connection();
    let keys: Vec<String> = redis_keys(&mut con, &format!("{}:t:*", c.settings.namespace)).await;
    keys.len()
}

async fn redis_keys(con: &mut redis::aio::ConnectionManager, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_functions_wrong_arguments_and_panics_are_errors_not_dead_workers() {
    let mut c = Cluster::start(1, 1).await;
    let client = c.client().await;

    let f = client.submit("no_such_function", (1,)).await.unwrap();
    match f.result().await {
        Err(Error::Task { failure, .. }) => {
            assert_eq!(failure.kind, "UnknownFunction");
            assert!(
                failure.message.contains("\"no_such_function\""),
                "{}",
                failure.message
            );
            assert!(
                failure.message.contains("count_primes_less_than"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected UnknownFunction, got {other:?}"),
    }

    let f = client.submit("inc", (1, 2)).await.unwrap();
    match f.result().await {
        Err(Error::Task { failure, .. }) => {
            assert_eq!(failure.kind, "TypeError");
            assert_eq!(
                failure.message,
                "inc() takes 1 positional argument but 2 were given"
            );
        }
        other => panic!("expected TypeError, got {other:?}"),
    }

    let f = client.submit("raise_panic", ("deliberate",)).await.unwrap();
    match f.result().await {
        Err(Error::Task { failure, .. }) => {
            assert_eq!(failure.kind, "Panic");
            assert_eq!(failure.message, "deliberate");
            assert!(
                failure.traceback.contains("stock.rs"),
                "{}",
                failure.traceback
            );
        }
        other => panic!("expected a Panic error, got {other:?}"),
    }
    // The worker lives on and keeps working.
    assert!(c.worker_alive(0));
    let f = client.submit("inc", (1,)).await.unwrap();
    assert_eq!(f.result().await.unwrap(), json!(2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cli_input_is_refused_before_anything_is_written() {
    let c = Cluster::start(1, 1).await;

    let out = c.warren(&["submit", "inc", "{\"a\":"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not valid JSON"),
        "{}",
        stderr(&out)
    );

    let out = c.warren(&["submit", "inc", "@no-such-key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no future with key \"no-such-key\""),
        "{}",
        stderr(&out)
    );

    let out = c.warren(&["result", "no-such-key"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown future \"no-such-key\""),
        "{}",
        stderr(&out)
    );

    let out = c.warren(&["submit", "--key", "has space", "inc", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"has space\""), "{}", stderr(&out));

    let out = run_cli(
        &c.settings.namespace,
        &["submit", "identity", &"x".repeat(5000)],
        "",
        &[("WARREN_MAX_PAYLOAD_BYTES", "1000")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("exceeds the limit of 1000 bytes"),
        "{}",
        stderr(&out)
    );

    assert_eq!(task_records(&c).await, 0, "a refused command wrote a task");
    // A good submission still works.
    let k = ok_stdout(&c.warren(&["submit", "inc", "1"]));
    assert_eq!(ok_stdout(&c.warren(&["result", k.trim()])).trim(), "2");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_services_fail_fast_naming_the_url_but_not_the_password() {
    let ns = fresh_settings("it-down").namespace;
    let started = Instant::now();
    let out = run_cli(
        &ns,
        &["status", "x"],
        "",
        &[("WARREN_AMQP_URL", "amqp://guest:hunter2@127.0.0.1:1/%2f")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/%2f"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let out = run_cli(
        &ns,
        &["status", "x"],
        "",
        &[("WARREN_REDIS_URL", "redis://:hunter2@127.0.0.1:1/")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach Redis at redis://:***@127.0.0.1:1/"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    warren_integration_tests::cleanup(&fresh_settings_with(&ns)).await;
}

fn fresh_settings_with(ns: &str) -> warren_core::Settings {
    warren_core::Settings::load(None, &[("namespace", ns.to_string())]).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_dead_lettered_with_its_reason_and_the_scheduler_goes_on() {
    let c = Cluster::start(1, 1).await;
    let topo = c.topology();
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    for body in [
        &b"not json at all"[..],
        br#"{"kind":"submit","v":1}"#,
        br#"{"kind":"submit","v":42,"batch":"b","tasks":[]}"#,
    ] {
        let confirm = amqp::publish(
            &ch,
            "",
            &topo.submit_queue(),
            body,
            amqp::json_properties(&[]),
        )
        .await
        .unwrap();
        amqp::confirmed(vec![confirm], "test").await.unwrap();
    }
    // The scheduler keeps serving.
    let k = ok_stdout(&c.warren(&["submit", "inc", "1"]));
    assert_eq!(ok_stdout(&c.warren(&["result", k.trim()])).trim(), "2");

    let get = conn.create_channel().await.unwrap();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let msg = get
            .basic_get(topo.dead_queue().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a dead-lettered message");
        let headers = msg
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        let reason = headers
            .inner()
            .get(REASON_HEADER)
            .and_then(|v| v.as_long_string())
            .map(|s| s.to_string())
            .expect("the reason header");
        reasons.push(reason);
    }
    assert!(
        reasons[0].contains("undecodable client request"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("missing field"), "{reasons:?}");
    assert!(
        reasons[2].contains("unsupported protocol version 42"),
        "{reasons:?}"
    );

    // The same on the results queue (read by the scheduler) and a work queue
    // (read by workers): dead-lettered with the reason, consumers carry on.
    for (queue, reason) in [
        (topo.results_queue(), "undecodable worker report"),
        (topo.work_queue("default"), "undecodable work message"),
    ] {
        let confirm = amqp::publish(&ch, "", &queue, b"{oops", amqp::json_properties(&[]))
            .await
            .unwrap();
        amqp::confirmed(vec![confirm], "test").await.unwrap();
        let mut found = None;
        for _ in 0..100 {
            if let Some(msg) = get
                .basic_get(topo.dead_queue().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                let headers = msg
                    .delivery
                    .properties
                    .headers()
                    .clone()
                    .unwrap_or_default();
                let text = |h: &str| {
                    headers
                        .inner()
                        .get(h)
                        .and_then(|v| v.as_long_string())
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                };
                found = Some((text(REASON_HEADER), text(ORIGIN_HEADER)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (found, origin) = found.unwrap_or_else(|| panic!("nothing dead-lettered from {queue}"));
        assert!(found.contains(reason), "{queue}: {found}");
        assert_eq!(origin, queue, "the origin header names the queue");
    }
    let k = ok_stdout(&c.warren(&["submit", "inc", "2"]));
    assert_eq!(ok_stdout(&c.warren(&["result", k.trim()])).trim(), "3");
    c.shutdown().await;
}

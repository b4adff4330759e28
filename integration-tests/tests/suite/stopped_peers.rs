//! A process that stops answering (SIGSTOP, a hung host, a cut cable) is
//! found out in seconds, not minutes (issue 16, points 7 and 8).
//!
//! RabbitMQ's default heartbeat is 60 s and it waits two beats, so a stopped
//! worker held its prefetched tasks beside an idle worker for minutes, and a
//! stopped scheduler the reports of finished tasks. warren's connections ask
//! for 5 s heartbeats (core/src/amqp.rs), so the broker closes such a
//! connection and requeues what it held within about 10 s. A worker that
//! resumes must not then start the copies it still buffers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warren_client::SubmitOptions;
use warren_integration_tests::{Cluster, ClusterOptions, run_log, signal};

/// Longer than two 5 s heartbeats and the work left, far shorter than the
/// two minutes RabbitMQ's default heartbeat took.
const FOUND_OUT_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_worker_gives_back_its_tasks_in_seconds_and_runs_none_of_them_on_resume() {
    let c = Cluster::start_with(ClusterOptions {
        workers: 2,
        concurrency: 1,
        test_worker: true,
        ..Default::default()
    })
    .await;
    let log = std::env::temp_dir().join(format!("warren-runs-{}", c.settings.namespace));
    let _ = std::fs::remove_file(&log);
    let client = c.client().await;
    let n = 80;
    let args = (0..n)
        .map(|i| vec![json!(log.to_string_lossy()), json!(i), json!(100)])
        .collect();
    let futures = client
        .map_with("count_run", args, &SubmitOptions::default())
        .await
        .unwrap();
    // Both workers are busy and hold prefetched tasks.
    let deadline = Instant::now() + Duration::from_secs(30);
    while run_log(&log).len() < 4 {
        assert!(Instant::now() < deadline, "the tasks did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = c.pids()[1];
    signal(victim, "-STOP");
    let stopped = Instant::now();
    // Resume it as soon as the broker has dropped its consumer, while the
    // other worker still runs what was requeued: the copies the stopped one
    // buffered are not final yet, so only their dead channel says "don't".
    let work_queue = c.topology().work_queue("default");
    while c.queue_counts(&work_queue).await.1 > 1 {
        assert!(
            stopped.elapsed() < FOUND_OUT_WITHIN,
            "the broker did not drop the stopped worker within {FOUND_OUT_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let found_out = stopped.elapsed();
    signal(victim, "-CONT");
    let values = tokio::time::timeout(FOUND_OUT_WITHIN, client.gather(&futures))
        .await
        .unwrap_or_else(|_| {
            panic!("the stopped worker's tasks were not run elsewhere within {FOUND_OUT_WITHIN:?}")
        })
        .unwrap();
    let took = stopped.elapsed();
    eprintln!("the broker dropped the stopped worker {found_out:?} after the stop");
    let expected: Vec<Value> = (1..=n).map(|i| json!(i)).collect();
    assert_eq!(values, expected);
    eprintln!("the other worker finished everything {took:?} after the stop");
    // Resumed, the stopped worker finishes the one task it was running and
    // starts none of the copies it had buffered (the broker requeued them).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ran = run_log(&log);
    assert!(
        ran.len() <= n as usize + 1,
        "{} runs for {n} tasks: the resumed worker ran copies from its dead channel",
        ran.len()
    );
    let _ = std::fs::remove_file(&log);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_scheduler_does_not_hold_other_work_for_long() {
    let c = Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    let n = 300;
    let args = (0..n).map(|i| vec![json!(i), json!(10)]).collect();
    let futures = client
        .map_with("slow_inc", args, &SubmitOptions::default())
        .await
        .unwrap();
    // Stop one scheduler while reports flow: those delivered to it wait
    // until the broker takes them back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = c.pids()[0];
    signal(victim, "-STOP");
    let stopped = Instant::now();
    let values = tokio::time::timeout(FOUND_OUT_WITHIN, client.gather(&futures)).await;
    let took = stopped.elapsed();
    signal(victim, "-CONT");
    let values = values
        .unwrap_or_else(|_| {
            panic!(
                "reports held by the stopped scheduler were not applied within {FOUND_OUT_WITHIN:?}"
            )
        })
        .unwrap();
    let expected: Vec<Value> = (1..=n).map(|i| json!(i)).collect();
    assert_eq!(values, expected);
    eprintln!("the other scheduler finished everything {took:?} after the stop");
    c.shutdown().await;
}

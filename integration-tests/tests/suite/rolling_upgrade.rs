//! Restarting everything with SIGTERM, one process at a time, while a DAG of
//! long tasks runs (issue 17): every task finishes once, none ends as
//! `KilledWorker`, none runs twice. And a drained scheduler exits 0 at once,
//! its consumers and its heartbeat gone.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::json;
use warren_client::SubmitOptions;
use warren_core::store::Store;
use warren_integration_tests::{Cluster, ClusterOptions, run_log};

/// Longer than any drain here: a task runs 1.5 s.
const EXIT_WITHIN: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_every_worker_and_the_scheduler_loses_and_repeats_nothing() {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 2,
        concurrency: 2,
        test_worker: true,
        ..Default::default()
    })
    .await;
    let log = std::env::temp_dir().join(format!("warren-rolling-{}", c.settings.namespace));
    let _ = std::fs::remove_file(&log);
    let path = log.to_string_lossy().to_string();
    let client = c.client().await;
    let opts = SubmitOptions {
        pure: false,
        ..Default::default()
    };
    // 12 leaves of 1.5 s, each feeding one more task of 1.5 s: 24 runs on 4
    // slots, about 9 s of work, across which every process is replaced.
    let leaves = client
        .map_with(
            "count_run",
            (0..12)
                .map(|i| vec![json!(path), json!(i * 1000), json!(1500)])
                .collect(),
            &opts,
        )
        .await
        .unwrap();
    let mut seconds = Vec::new();
    for leaf in &leaves {
        let next = client
            .submit_with("count_run", (&path, leaf, 1500), &opts)
            .await
            .unwrap();
        seconds.push(next);
    }
    client.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while run_log(&log).is_empty() {
        assert!(Instant::now() < deadline, "no task started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for i in 0..c.worker_count() {
        let status = c.terminate_and_replace_worker(i, EXIT_WITHIN);
        assert!(
            status.is_some_and(|s| s.success()),
            "worker {i} did not drain and exit 0: {status:?}"
        );
        c.wait_for_workers(2).await;
    }
    let status = c.terminate_and_replace_scheduler(EXIT_WITHIN);
    assert!(
        status.is_some_and(|s| s.success()),
        "the scheduler did not drain and exit 0: {status:?}"
    );
    // And the new workers once more, while the second level runs.
    for i in 0..c.worker_count() {
        let status = c.terminate_and_replace_worker(i, EXIT_WITHIN);
        assert!(
            status.is_some_and(|s| s.success()),
            "worker {i}: {status:?}"
        );
        c.wait_for_workers(2).await;
    }

    let values = tokio::time::timeout(Duration::from_secs(120), client.gather(&seconds))
        .await
        .expect("the DAG did not finish within 120 s")
        .expect("a task failed (a KilledWorker?)");
    let expected: Vec<serde_json::Value> = (0..12).map(|i| json!(i * 1000 + 2)).collect();
    assert_eq!(values, expected);
    // Every task ran exactly once: leaves logged i*1000, dependents i*1000+1.
    let mut runs = run_log(&log);
    runs.sort();
    let mut once: Vec<i64> = (0..12).flat_map(|i| [i * 1000, i * 1000 + 1]).collect();
    once.sort();
    assert_eq!(runs, once, "a task ran twice, or not at all");
    let _ = std::fs::remove_file(&log);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_scheduler_which_exits_0_with_its_consumers_and_heartbeat_gone() {
    let mut c = Cluster::start(1, 1).await;
    let client = c.client().await;
    let f = client.submit("inc", (1,)).await.unwrap();
    assert_eq!(f.result().await.unwrap(), json!(2));
    let store = Store::connect(&c.settings).await.unwrap();
    let mut con = store.connection();
    let beats = store.keys().pattern("sched:");
    let live: Vec<String> = con.keys(&beats).await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");

    let termed = Instant::now();
    let status = c.terminate_scheduler(EXIT_WITHIN);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        termed.elapsed() < Duration::from_secs(5),
        "an idle scheduler took {:?} to drain",
        termed.elapsed()
    );
    // Its heartbeat is gone now, not 10 s later: nothing waits for it.
    let live: Vec<String> = con.keys(&beats).await.unwrap();
    assert!(live.is_empty(), "{live:?}");
    let submit = c.topology().submit_queue();
    assert_eq!(c.queue_counts(&submit).await.1, 0);

    // A request made meanwhile waits in RabbitMQ for the next scheduler.
    let g = client.submit("inc", (41,)).await.unwrap();
    c.start_scheduler();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), g.result())
            .await
            .expect("no answer after the new scheduler started")
            .unwrap(),
        json!(42)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduler_drained_while_reports_stream_in_exits_and_loses_nothing() {
    // The cancel's end of stream can arrive right behind a batch of worker
    // reports; read while batching, it was lost and the drain waited for a
    // delivery that never came (3 drains out of 6 hung, on this machine).
    let mut c = Cluster::start(2, 1).await;
    const TASKS: i64 = 10_000;
    let client = c.client().await;
    let impure = SubmitOptions {
        pure: false,
        ..Default::default()
    };
    let mut futures = Vec::new();
    for round in 0..4 {
        let args = (0..TASKS).map(|i| vec![json!(i)]).collect();
        futures.extend(client.map_with("inc", args, &impure).await.unwrap());
        client.flush().await.unwrap();
        // Reports are streaming in: workers finish faster than one
        // scheduler applies them, so they queue in its prefetch.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let termed = Instant::now();
        let status = c.terminate_scheduler(EXIT_WITHIN);
        assert!(
            status.is_some_and(|s| s.success()),
            "round {round}: {status:?}"
        );
        assert!(
            termed.elapsed() < Duration::from_secs(10),
            "round {round}: a scheduler applying reports took {:?} to drain",
            termed.elapsed()
        );
        c.start_scheduler();
    }
    let values = tokio::time::timeout(Duration::from_secs(120), client.gather(&futures))
        .await
        .expect("the tasks did not all finish within 120 s")
        .unwrap();
    let expected: Vec<serde_json::Value> =
        (0..4).flat_map(|_| (1..=TASKS).map(|i| json!(i))).collect();
    assert_eq!(values, expected);
    c.shutdown().await;
}

//! Failures of single pieces: a task that keeps killing its worker, a worker
//! killed mid-task, retries of failing tasks. Real processes, real kills.

use std::time::{Duration, Instant};

use serde_json::json;
use warren_client::{Error, SubmitOptions, Terminal};
use warren_integration_tests::{Cluster, ClusterOptions, ok_stdout};

fn test_cluster(workers: usize) -> ClusterOptions {
    ClusterOptions {
        workers,
        concurrency: 1,
        test_worker: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_kills_every_worker_ends_as_killed_worker() {
    let mut c = Cluster::start_with(test_cluster(2)).await;
    let client = c.client().await;
    let f = client.submit("crash", ()).await.unwrap();
    // Each delivery aborts a worker; keep replacing the dead, as a supervisor would.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kills = 0;
    let outcome = loop {
        assert!(
            Instant::now() < deadline,
            "no KilledWorker after {kills} worker deaths"
        );
        for i in 0..c.worker_count() {
            if !c.worker_alive(i) {
                kills += 1;
                c.kill_and_replace_worker(i);
            }
        }
        match tokio::time::timeout(Duration::from_millis(200), f.outcome()).await {
            Ok(o) => break o.unwrap(),
            Err(_) => continue,
        }
    };
    match outcome {
        Terminal::Error { error } => {
            assert_eq!(error.kind, "KilledWorker");
            assert!(error.message.contains(f.key()), "{}", error.message);
        }
        other => panic!("expected KilledWorker, got {other:?}"),
    }
    // The last death and the outcome can land between two polls: count again.
    for i in 0..c.worker_count() {
        if c.wait_for_worker_exit(i, Duration::from_millis(300)) {
            kills += 1;
            c.kill_and_replace_worker(i);
        }
    }
    // As dask's allowed-failures (default 3): the task is bad once it was on
    // more than 3 workers that died, i.e. on the 4th death.
    assert_eq!(
        kills,
        c.settings.allowed_failures + 1,
        "workers killed before KilledWorker"
    );
    // The message went through the dead-letter exchange and was consumed, not looping.
    assert_eq!(c.queue_depth(&c.topology().work_queue("default")).await, 0);
    assert_eq!(c.queue_depth(&c.topology().killed_queue()).await, 0);
    // And the cluster still works.
    c.wait_for_workers(2).await;
    let ok = client.submit("inc", (1,)).await.unwrap();
    assert_eq!(ok.result().await.unwrap(), json!(2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn work_of_a_worker_killed_mid_task_runs_elsewhere() {
    let mut c = Cluster::start_with(test_cluster(2)).await;
    let client = c.client().await;
    let futures = client
        .map_with(
            "slow_inc",
            (0..12).map(|i| vec![json!(i), json!(400)]).collect(),
            &SubmitOptions::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.kill_and_replace_worker(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.kill_and_replace_worker(1);
    let values = client.gather(&futures).await.unwrap();
    assert_eq!(values, (1..13).map(|i| json!(i)).collect::<Vec<_>>());
    c.shutdown().await;
}

/// dask counts a worker's death only against the tasks it was running. The
/// worker here holds up to 32 prefetched messages (the default for one slot)
/// and is killed `allowed_failures + 1` times, each time while running a
/// different task: under RabbitMQ's count of returns, every task prefetched
/// through all those deaths would have ended as KilledWorker. Here none does.
#[tokio::test(flavor = "multi_thread")]
async fn prefetched_tasks_of_killed_workers_are_not_counted_as_deaths() {
    let mut c = Cluster::start_with(test_cluster(1)).await;
    let client = c.client().await;
    let n = 40;
    let futures = client
        .map_with(
            "slow_inc",
            (0..n).map(|i| vec![json!(i), json!(100)]).collect(),
            &SubmitOptions::default(),
        )
        .await
        .unwrap();
    let keys: Vec<String> = futures.iter().map(|f| f.key().to_string()).collect();
    let finished = |states: Vec<warren_client::State>| {
        states
            .iter()
            .filter(|s| s.status() == warren_client::Status::Finished)
            .count()
    };
    let kills = c.settings.allowed_failures + 1;
    for _ in 0..kills {
        // Kill only after one more task finished: the one that died last
        // time has run to completion, so each death hits a different task.
        let before = finished(client.states(&keys).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        while finished(client.states(&keys).await.unwrap()) <= before {
            assert!(
                Instant::now() < deadline,
                "no progress after {before} tasks"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        c.kill_and_replace_worker(0);
    }
    let values = client.gather(&futures).await.unwrap();
    assert_eq!(values, (1..=n).map(|i| json!(i)).collect::<Vec<_>>());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_tasks_are_retried_and_the_final_error_keeps_every_attempt() {
    let c = Cluster::start_with(test_cluster(1)).await;
    let client = c.client().await;
    let dir = std::env::temp_dir().join(format!("warren-flaky-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let counter = |name: &str| dir.join(name).to_string_lossy().into_owned();

    // Fails twice, then succeeds on the third run: retries=2 is enough.
    let opts = SubmitOptions {
        retries: 2,
        ..Default::default()
    };
    let f = client
        .submit_with("flaky", (counter("a"), 2), &opts)
        .await
        .unwrap();
    assert_eq!(f.result().await.unwrap(), json!(3));

    // Fails four times: retries=2 runs it three times, and all three errors come back.
    let f = client
        .submit_with("flaky", (counter("b"), 4), &opts)
        .await
        .unwrap();
    match f.result().await {
        Err(Error::Task { failure, .. }) => {
            assert_eq!(failure.message, "failure 3 of 4");
            let earlier: Vec<&str> = failure
                .previous
                .iter()
                .map(|e| e.message.as_str())
                .collect();
            assert_eq!(earlier, vec!["failure 1 of 4", "failure 2 of 4"]);
        }
        other => panic!("expected the final error, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(dir.join("b")).unwrap(), "3");

    // Through the CLI.
    let cnt = counter("c");
    let key = ok_stdout(&c.warren(&[
        "submit",
        "--retries",
        "1",
        "flaky",
        &format!("\"{cnt}\""),
        "1",
    ]));
    assert_eq!(ok_stdout(&c.warren(&["result", key.trim()])).trim(), "2");
    let _ = std::fs::remove_dir_all(&dir);
    c.shutdown().await;
}

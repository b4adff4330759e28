//! Control over futures: cancel, wait, as_completed, exception and callbacks,
//! fire-and-forget, named queues, time limits, forget and expiry, ops views,
//! and restart with running tasks. Through the Rust client and the CLI.

use std::time::{Duration, Instant};

use serde_json::json;
use warren_client::{Error, Status, SubmitOptions, Terminal, WaitMode};
use warren_integration_tests::{Cluster, ClusterOptions, ok_stdout};

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

fn one_test_worker() -> ClusterOptions {
    ClusterOptions {
        workers: 1,
        concurrency: 1,
        test_worker: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_running_work_skips_queued_work_and_reaches_dependents() {
    let c = Cluster::start_with(one_test_worker()).await;
    let client = c.client().await;
    let marker = std::env::temp_dir().join(format!("warren-cancel-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);

    // One slot: `sleep` runs, `flaky` (which writes a file when it runs) waits behind it.
    let running = client.submit("sleep", (30,)).await.unwrap();
    let queued = client
        .submit("flaky", (marker.to_string_lossy(), 0))
        .await
        .unwrap();
    let dependent = client.submit("identity", (&running,)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let out = ok_stdout(&c.warren(&["cancel", running.key(), queued.key()]));
    assert_eq!(
        lines(&out),
        vec![
            format!("{} cancelled", running.key()),
            format!("{} cancelled", queued.key())
        ]
    );
    assert_eq!(dependent.status().await.unwrap().status, Status::Cancelled);
    assert!(matches!(
        running.result().await,
        Err(Error::Cancelled { .. })
    ));

    // The running sleep was interrupted: the single slot is free within moments.
    let started = Instant::now();
    let after = client.submit("inc", (1,)).await.unwrap();
    assert_eq!(after.result().await.unwrap(), json!(2));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The queued task was never started.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !marker.exists(),
        "a task cancelled before it began was started"
    );
    // Cancelling a final future changes nothing.
    after.cancel().await.unwrap();
    assert_eq!(after.result().await.unwrap(), json!(2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_and_as_completed_follow_the_order_tasks_finish() {
    let c = Cluster::start(1, 3).await;
    let client = c.client().await;
    let opts = SubmitOptions {
        pure: false,
        ..Default::default()
    };
    let slow = client.submit_with("sleep", (1.2,), &opts).await.unwrap();
    let fast = client.submit_with("sleep", (0.1,), &opts).await.unwrap();
    let mid = client.submit_with("sleep", (0.6,), &opts).await.unwrap();
    let keys: Vec<String> = [&slow, &fast, &mid]
        .iter()
        .map(|f| f.key().to_string())
        .collect();

    let (done, not_done) = client
        .wait(&keys, WaitMode::FirstCompleted, None)
        .await
        .unwrap();
    assert_eq!(done, vec![fast.key().to_string()]);
    assert_eq!(not_done.len(), 2);

    use futures::StreamExt;
    let order: Vec<String> = client
        .as_completed(&keys)
        .map(|r| r.unwrap().0)
        .collect()
        .await;
    assert_eq!(order, vec![fast.key(), mid.key(), slow.key()]);

    // The CLI: gather --as-completed prints in finishing order, wait times out with exit 3.
    let a = ok_stdout(&c.warren(&["submit", "--no-pure", "sleep", "0.8"]));
    let b = ok_stdout(&c.warren(&["submit", "--no-pure", "sleep", "0.1"]));
    let out = ok_stdout(&c.warren(&["gather", "--as-completed", a.trim(), b.trim()]));
    assert_eq!(
        lines(&out),
        vec![format!("{} null", b.trim()), format!("{} null", a.trim())]
    );
    let long = ok_stdout(&c.warren(&["submit", "--no-pure", "sleep", "5"]));
    let out = c.warren(&["wait", "--timeout", "0.3", long.trim(), b.trim()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} finished", b.trim())
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 futures final"));
    // Nothing final yet when the timeout passes: still a clean "timed out".
    let out = c.warren(&["wait", "--timeout", "0.2", long.trim()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 of 1 futures final"));
    let out = ok_stdout(&c.warren(&["wait", "--first", long.trim(), b.trim()]));
    assert_eq!(out.trim(), format!("{} finished", b.trim()));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exceptions_tracebacks_and_done_callbacks_without_raising() {
    let c = Cluster::start(1, 1).await;
    let client = c.client().await;
    let bad = client.submit("goes_wrong", ()).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    bad.add_done_callback(move |t| {
        let _ = tx.send(t);
    });
    let called = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(called, Ok(Terminal::Error { .. })));
    let e = bad.exception().await.unwrap().expect("an exception");
    assert_eq!(e.kind, "ZeroDivisionError");
    assert!(
        bad.traceback()
            .await
            .unwrap()
            .unwrap()
            .contains("goes_wrong")
    );
    let good = client.submit("inc", (1,)).await.unwrap();
    assert_eq!(good.exception().await.unwrap(), None);
    assert!(good.done().await.unwrap());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn detached_tasks_run_with_nobody_waiting_and_named_queues_route_work() {
    let mut c = Cluster::start(1, 1).await;
    let key = ok_stdout(&c.warren(&["submit", "--detach", "inc", "41"]));
    // The submitting process is gone; the task still runs.
    let client = c.client().await;
    assert_eq!(client.future(key.trim()).result().await.unwrap(), json!(42));

    // A task for the gpu queue waits until a worker serves that queue (the
    // CLI refuses a queue nobody serves unless told one will come).
    let gpu = ok_stdout(&c.warren(&["submit", "--queue", "gpu", "--allow-unserved", "inc", "1"]));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        ok_stdout(&c.warren(&["status", gpu.trim()])).trim(),
        format!("{} pending queued", gpu.trim())
    );
    c.start_worker_with(1, &["--queues", "gpu"]);
    let out = ok_stdout(&c.warren(&["result", "--timeout", "30", gpu.trim()]));
    assert_eq!(out.trim(), "2");
    let workers = ok_stdout(&c.warren(&["workers"]));
    assert!(workers.lines().any(|l| l.contains(" gpu ")), "{workers}");

    // The same when a finished dependency makes the task runnable alone (the
    // scheduler publishes it itself, to a queue no worker has declared yet).
    let first = client.submit("inc", (1,)).await.unwrap();
    let later = SubmitOptions {
        queue: Some("later".into()),
        ..Default::default()
    };
    let second = client.submit_with("inc", (&first,), &later).await.unwrap();
    assert_eq!(first.result().await.unwrap(), json!(2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.start_worker_with(1, &["--queues", "later"]);
    let waited = tokio::time::timeout(Duration::from_secs(30), second.result()).await;
    assert_eq!(
        waited.expect("the task on the later queue").unwrap(),
        json!(3)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gather_that_outruns_the_scheduler_waits_for_detached_keys() {
    let mut c = Cluster::start(1, 2).await;
    // No scheduler: the detached submission waits in the submit queue, so a
    // gather reading its keys meets keys Redis does not know yet.
    c.stop_scheduler();
    let args: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    let mut map = vec!["map", "--detach", "--no-pure", "inc"];
    map.extend(args.iter().map(String::as_str));
    let keys = ok_stdout(&c.warren(&map));
    let ns = c.settings.namespace.clone();
    let gather = std::thread::spawn(move || {
        warren_integration_tests::run_cli(&ns, &["gather", "-"], &keys, &[])
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.start_scheduler();
    let out = gather.join().unwrap();
    let values: Vec<i64> = ok_stdout(&out)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values, (1..=50).collect::<Vec<i64>>());
    // A key nobody submitted is still unknown, after the short grace only.
    let started = Instant::now();
    let out = c.warren(&["result", "never-submitted"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown future"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_time_limit_fails_the_task_and_frees_its_slot() {
    let c = Cluster::start(1, 1).await;
    let started = Instant::now();
    let slow = ok_stdout(&c.warren(&["submit", "--timeout", "0.5", "sleep", "20"]));
    let out = c.warren(&["result", slow.trim()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TimeoutError"), "{err}");
    assert!(err.contains("time limit of 0.5s"), "{err}");
    let next = ok_stdout(&c.warren(&["submit", "inc", "1"]));
    assert_eq!(ok_stdout(&c.warren(&["result", next.trim()])).trim(), "2");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forget_and_expiry_make_futures_unknown() {
    let c = Cluster::start_with(ClusterOptions {
        env: vec![("WARREN_RESULT_TTL_SECS".into(), "2".into())],
        ..Default::default()
    })
    .await;
    let k = ok_stdout(&c.warren(&["submit", "inc", "1"]));
    assert_eq!(ok_stdout(&c.warren(&["result", k.trim()])).trim(), "2");
    let pending = ok_stdout(&c.warren(&["submit", "sleep", "3"]));
    let out = c.warren(&["forget", k.trim(), pending.trim()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&String::from_utf8_lossy(&out.stdout)),
        vec![
            format!("{} forgotten", k.trim()),
            format!(
                "{} pending (not forgotten: cancel it first)",
                pending.trim()
            )
        ]
    );
    let out = c.warren(&["result", k.trim()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown future"));

    // Finished futures expire after result_ttl_secs (2 s here).
    let e = ok_stdout(&c.warren(&["submit", "inc", "5"]));
    assert_eq!(ok_stdout(&c.warren(&["result", e.trim()])).trim(), "6");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let out = c.warren(&["status", e.trim()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} unknown", e.trim())
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 1 keys unknown"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_and_info_show_the_live_system_and_restart_stops_running_tasks() {
    let c = Cluster::start(2, 2).await;
    let client = c.client().await;
    let running = client.submit("sleep", (30,)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5500)).await; // one heartbeat period

    let out = ok_stdout(&c.warren(&["workers"]));
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows.iter()
            .all(|r| r.contains(" 2 ") && r.contains("default")),
        "{out}"
    );
    assert!(
        out.contains(running.key()),
        "the running task is listed: {out}"
    );

    let info = ok_stdout(&c.warren(&["info"]));
    assert!(info.contains("futures: 1 submitted, 1 pending"), "{info}");
    assert!(info.contains(&c.topology().work_queue("default")), "{info}");

    // restart stops the running sleep: both slots of its worker are free again.
    let started = Instant::now();
    let report = client.restart().await.unwrap();
    assert_eq!(report.workers_ready.len(), 2);
    let fs = client.map("inc", 0..4).await.unwrap();
    assert_eq!(
        client.gather(&fs).await.unwrap(),
        vec![json!(1), json!(2), json!(3), json!(4)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let info = ok_stdout(&c.warren(&["info"]));
    assert!(info.contains("1 cancelled"), "{info}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_higher_priority_task_overtakes_the_ready_backlog() {
    let c = Cluster::start_with(one_test_worker()).await;
    let client = c.client().await;
    let low = SubmitOptions {
        pure: false,
        ..Default::default()
    };
    let lows = client
        .map_with(
            "slow_inc",
            (0..200).map(|i| vec![json!(i), json!(10)]).collect(),
            &low,
        )
        .await
        .unwrap();
    let high = SubmitOptions {
        pure: false,
        priority: 10,
        ..Default::default()
    };
    let urgent = client.submit_with("inc", (0,), &high).await.unwrap();
    assert_eq!(urgent.result().await.unwrap(), json!(1));
    let keys: Vec<String> = lows.iter().map(|f| f.key().to_string()).collect();
    let done_before = client
        .states(&keys)
        .await
        .unwrap()
        .iter()
        .filter(|s| s.status() == Status::Finished)
        .count();
    // One slot, 10 ms per task: in submission order it would wait for all 200.
    // It waits only for the small backlog already handed to RabbitMQ.
    assert!(
        done_before < 150,
        "{done_before} of 200 earlier tasks ran first"
    );
    assert_eq!(client.gather(&lows).await.unwrap().len(), 200);

    let out = c.warren(&["submit", "--priority", "2000000", "inc", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("priority 2000000 is outside"));
    c.shutdown().await;
}

//! `--isolation process` (issue 17): limits that stop. A function that never
//! polls a cancel is ended at its time limit and by `cancel`, its core free
//! again; an aborting function, or one over its memory cap, fails that run
//! only and the worker goes on.

use std::time::{Duration, Instant};

use serde_json::json;
use warren_client::{Client, SubmitOptions, TaskFailure};
use warren_integration_tests::{Cluster, ClusterOptions};

/// A cluster whose one worker (2 slots) runs every task in a child process.
async fn isolated(extra: &[&str]) -> (Cluster, Client, u32) {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        test_worker: true,
        ..Default::default()
    })
    .await;
    let mut args = vec!["--isolation", "process"];
    args.extend_from_slice(extra);
    c.start_worker_with(2, &args);
    c.wait_for_workers(1).await;
    let pid = *c.pids().last().expect("the worker's pid");
    let client = c.client().await;
    (c, client, pid)
}

fn impure(timeout_secs: Option<f64>) -> SubmitOptions {
    SubmitOptions {
        pure: false,
        timeout_secs,
        ..Default::default()
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, then the parent.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if after.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push(child);
        }
    }
    out
}

/// CPU seconds `pid` has used (user + system).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker runs");
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat: utime and stime, in clock ticks.
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

async fn error_of(client: &Client, key: &str) -> TaskFailure {
    let f = client.future(key);
    tokio::time::timeout(Duration::from_secs(30), f.exception())
        .await
        .expect("no outcome within 30 s")
        .expect("reading the outcome")
        .expect("the task should have failed")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_function_is_ended_at_its_time_limit_and_its_core_is_free_again() {
    let (c, client, worker) = isolated(&[]).await;
    // The run happens in a process of its own.
    let ran_in = client.submit_with("pid", (), &impure(None)).await.unwrap();
    let ran_in = ran_in.result().await.unwrap();
    assert_ne!(ran_in, json!(worker), "the task ran in the worker itself");

    let spin = client
        .submit_with("spin", (), &impure(Some(1.0)))
        .await
        .unwrap();
    let error = error_of(&client, spin.key()).await;
    assert_eq!(error.kind, "TimeoutError", "{error}");
    let gone = until("the spinning child's end", Duration::from_secs(5), || {
        children(worker).is_empty()
    });
    let before = cpu_secs(worker);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_secs(worker) - before;
    println!("after the time limit: child gone in {gone:?}; the worker then used {used:.2} cores");
    assert!(used < 0.5, "the worker still burns {used:.2} cores");

    // The worker goes on.
    let next = client
        .submit_with("inc", (1,), &impure(None))
        .await
        .unwrap();
    assert_eq!(next.result().await.unwrap(), json!(2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_ends_a_spinning_run_for_real() {
    let (c, client, worker) = isolated(&[]).await;
    let spin = client.submit_with("spin", (), &impure(None)).await.unwrap();
    until(
        "the spinning child's start",
        Duration::from_secs(10),
        || !children(worker).is_empty(),
    );
    spin.cancel().await.unwrap();
    until("the cancelled child's end", Duration::from_secs(5), || {
        children(worker).is_empty()
    });
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborting_function_fails_its_run_and_the_worker_goes_on() {
    let (mut c, client, _) = isolated(&[]).await;
    let crash = client
        .submit_with("crash", (), &impure(None))
        .await
        .unwrap();
    let error = error_of(&client, crash.key()).await;
    assert_eq!(error.kind, "TaskCrashed", "{error}");
    assert!(error.message.contains("SIGABRT"), "{error}");
    assert!(c.worker_alive(0), "the worker died with its task");
    let next = client
        .submit_with("inc", (41,), &impure(None))
        .await
        .unwrap();
    assert_eq!(next.result().await.unwrap(), json!(42));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_over_its_memory_cap_fails_alone() {
    let (mut c, client, _) = isolated(&["--max-memory-per-task", "512"]).await;
    let small = client
        .submit_with("hog", (16,), &impure(None))
        .await
        .unwrap();
    assert_eq!(small.result().await.unwrap(), json!(16 * 1024 * 1024));
    let big = client
        .submit_with("hog", (2048,), &impure(None))
        .await
        .unwrap();
    let error = error_of(&client, big.key()).await;
    assert_eq!(error.kind, "TaskCrashed", "{error}");
    assert!(error.message.contains("512 MiB"), "{error}");
    assert!(c.worker_alive(0), "the worker died with its task");
    c.shutdown().await;
}

//! Global rate limits and concurrency keys (issue 37), held across every
//! scheduler and worker by the gate where tasks leave their outbox
//! (`gate` in `core/src/lua/common.lua`). Measured from the runs' own logs.

use std::time::Duration;

use serde_json::{Value, json};
use warren_client::SubmitOptions;
use warren_core::messages::{TaskSpec, Terminal};
use warren_core::store::throttle::RateTarget;
use warren_core::store::{ClaimList, ClaimSlot, Transition};
use warren_core::timing::Rate;
use warren_integration_tests::{
    Cluster, ClusterOptions, ok_stdout, rabbitmqctl, run_log, scratch_store, temp_path,
};

/// The (start, end) of each run `span` logged.
fn spans(log: &std::path::Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// The most runs in progress at any moment.
fn most_at_once(spans: &[(u64, u64)]) -> usize {
    let mut events: Vec<(u64, i32)> = spans.iter().flat_map(|&(s, e)| [(s, 1), (e, -1)]).collect();
    // An end before a start at the same ms: back-to-back runs do not overlap.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn a_concurrency_key_never_runs_more_than_its_limit_across_the_cluster() {
    let c = Cluster::start_with(ClusterOptions {
        workers: 2,
        concurrency: 3,
        test_worker: true,
        ..Default::default()
    })
    .await;
    c.wait_for_workers(2).await;
    let out = ok_stdout(&c.warren(&["limits", "set", "--key", "tenant-*", "--max-running", "2"]));
    assert_eq!(out.trim(), "key tenant-*: at most 2 running");
    let client = c.client().await;
    let (a_log, b_log, free_log) = (
        temp_path("limits-a"),
        temp_path("limits-b"),
        temp_path("limits-free"),
    );
    let with_key = |k: &str| SubmitOptions {
        pure: false,
        concurrency_key: Some(k.into()),
        ..Default::default()
    };
    let span = |log: &std::path::Path| vec![json!(log.to_string_lossy()), json!(300)];
    let a = client
        .map_with("span", vec![span(&a_log); 8], &with_key("tenant-a"))
        .await
        .unwrap();
    let b = client
        .map_with("span", vec![span(&b_log); 4], &with_key("tenant-b"))
        .await
        .unwrap();
    let free = client
        .map_with(
            "span",
            vec![span(&free_log); 2],
            &SubmitOptions {
                pure: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for fs in [&a, &b, &free] {
        client.gather(fs).await.unwrap();
    }
    let (sa, sb) = (spans(&a_log), spans(&b_log));
    assert_eq!((sa.len(), sb.len()), (8, 4));
    let (most_a, most_b) = (most_at_once(&sa), most_at_once(&sb));
    eprintln!("tenant-a: at most {most_a} at once; tenant-b: {most_b}");
    assert_eq!(most_a, 2, "tenant-a ran {most_a} at once: {sa:?}");
    assert_eq!(most_b, 2, "tenant-b ran {most_b} at once: {sb:?}");
    // Each key has its own slots: both ran side by side.
    let both = most_at_once(&[sa.clone(), sb.clone()].concat());
    assert!(both >= 3, "keys shared slots: {both}");
    let listed = ok_stdout(&c.warren(&["limits", "list"]));
    assert!(
        listed.contains("keys tenant-*: at most 2 running each"),
        "{listed}"
    );
    // Every slot was given back.
    let limits = client.limits().await.unwrap();
    assert_eq!(limits.concurrency, vec![("tenant-*".to_string(), 2, 0)]);
    let out = c.warren(&["limits", "set", "--key", "a*b", "--max-running", "1"]);
    assert!(!out.status.success());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_across_four_workers_and_keeps_tasks_out_of_their_queues() {
    let c = Cluster::start_with(ClusterOptions {
        workers: 4,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        ..Default::default()
    })
    .await;
    c.wait_for_workers(4).await;
    let client = c.client().await;
    client
        .set_rate_limit(
            &RateTarget::Func("stamp_flaky".into()),
            Rate::parse("50/s").unwrap(),
        )
        .await
        .unwrap();
    let log = temp_path("limits-rate");
    let args = vec![json!(log.to_string_lossy()), json!(0), json!("E")];
    let fs = client
        .map_with(
            "stamp_flaky",
            vec![args; 1000],
            &SubmitOptions {
                pure: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Mid-run: the tasks beyond the rate wait in Redis, not in RabbitMQ.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let queue = c.topology().work_queue("default");
    let listing = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ]);
    let counts: Vec<u64> = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(queue.as_str()))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let [ready, unacked] = counts[..] else {
        panic!("no counts for {queue} in {listing}");
    };
    let info: Value = serde_json::from_str(&ok_stdout(&c.warren(&["info", "--json"]))).unwrap();
    let scheduled = info["futures"]["scheduled"].as_u64().unwrap_or(0);
    eprintln!(
        "after 5 s: {ready} ready and {unacked} unacked in the work queue, {scheduled} scheduled in Redis"
    );
    assert!(ready + unacked <= 16, "{ready} ready, {unacked} unacked");
    assert!(scheduled > 500, "{scheduled} scheduled");
    client.gather(&fs).await.unwrap();
    let mut times = run_log(&log);
    times.sort();
    assert_eq!(times.len(), 1000);
    let secs = (times[999] - times[0]) as f64 / 1000.0;
    let rate = 999.0 / secs;
    eprintln!("1000 tasks at a limit of 50/s on 4 workers: {rate:.1}/s over {secs:.1} s");
    assert!((45.0..=55.0).contains(&rate), "{rate:.1}/s");
    c.shutdown().await;
}

fn keyed(key: &str, ck: &str) -> TaskSpec {
    TaskSpec {
        concurrency_key: Some(ck.into()),
        ..TaskSpec::new(key, "f", vec![])
    }
}

#[tokio::test]
async fn slots_come_back_on_cancel_and_waiters_go_on_when_the_limit_is_removed() {
    let s = scratch_store("test-limits").await;
    s.set_concurrency_limit("k", 1).await.unwrap();
    s.submit(
        None,
        &[
            keyed("a", "k"),
            keyed("b", "k"),
            keyed("c", "k"),
            keyed("d", "k"),
        ],
    )
    .await
    .unwrap();
    let owner = ClaimList::new("s", ClaimSlot::Dispatch(0));
    let (_, claimed) = s.claim(&owner, "default", 10).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["a"], "one slot, the first in arrival order");
    s.release(&owner).await.unwrap();
    // b waits for a slot and is cancelled: it never takes one.
    s.cancel(&["b".into()]).await.unwrap();
    // a ends: its slot goes to the next waiting task still queued, c.
    s.complete(&[(
        "a".into(),
        Transition::Terminal(Terminal::Finished { value: json!(1) }),
    )])
    .await
    .unwrap();
    let (_, claimed) = s.claim(&owner, "default", 10).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["c"]);
    s.release(&owner).await.unwrap();
    // The limit goes away while d waits: c's end lets every waiter go.
    assert!(s.remove_concurrency_limit("k").await.unwrap());
    s.complete(&[(
        "c".into(),
        Transition::Terminal(Terminal::Finished { value: json!(1) }),
    )])
    .await
    .unwrap();
    let (_, claimed) = s.claim(&owner, "default", 10).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["d"]);
    let mut con = s.connection();
    let running: Option<i64> = redis::AsyncCommands::get(&mut con, s.keys().running("k"))
        .await
        .unwrap();
    assert_eq!(running, None, "every slot given back");
    s.wipe().await.unwrap();
}

//! warren on replicated Redis (issue 13): the primary that holds the
//! namespace is killed (`kill -9`) in the middle of a DAG, a replica is
//! promoted, and every process follows it. Two deployments users run:
//!
//! - a primary with two replicas under three sentinels (`redis+sentinel://`);
//! - a Redis Cluster of three primaries with two replicas each
//!   (`redis+cluster://`), where the primary serving the namespace's slot dies.
//!
//! With `redis_min_replicas = 1` no state change that a message's ack or a
//! client's answer depended on is lost: every task finishes once, with the
//! right value. A CLI `submit` and `result` started the moment the primary
//! dies wait for the promotion and succeed (issue 33).

use std::time::{Duration, Instant};

use warren_core::store::{Store, cluster};
use warren_integration_tests::redis_cluster::RedisCluster;
use warren_integration_tests::sentinel::ReplicatedRedis;
use warren_integration_tests::{Cluster, ClusterOptions, dag, run_cli};

/// The two tests each run 5 processes and a Redis of their own; side by side
/// on a small machine their failovers would time each other's out.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn a_dag_survives_the_death_of_the_redis_primary() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut redis = ReplicatedRedis::start();
    let url = redis.url();
    survives(url.clone(), |_, namespace| {
        let old = redis.kill_primary();
        let cli = cli_during_failover(&url, namespace);
        let new = redis.await_failover(old, Duration::from_secs(30));
        let took = cli.join().expect("the CLI thread");
        format!("killed the primary on {old}; the sentinels promoted {new}; the CLI's submit and result took {took:?}")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dag_survives_the_death_of_the_primary_of_its_redis_cluster_slot() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut redis = RedisCluster::start();
    let url = redis.url();
    survives(url.clone(), |store, namespace| {
        let slot = cluster::slot_of(namespace);
        // The namespace's keys carry its hash tag, so all of them are in
        // its slot, on the primary that serves it.
        assert!(store.prefix().starts_with('{'), "{}", store.prefix());
        let primary = redis.primary_of(slot).expect("a primary serves the slot");
        let in_slot = redis.cli(primary, &["cluster", "countkeysinslot", &slot.to_string()]);
        let in_slot: u64 = in_slot.trim().parse().expect("a count");
        assert!(in_slot > 1000, "{in_slot} keys in slot {slot}");
        for other in redis.primaries().into_iter().filter(|p| *p != primary) {
            let held = redis.cli(other, &["dbsize"]);
            assert_eq!(held.trim(), "0", "primary {other} holds keys of the namespace");
        }
        let old = redis.kill_primary_of(slot);
        let cli = cli_during_failover(&url, namespace);
        let new = redis.await_failover(slot, old, Duration::from_secs(30));
        let took = cli.join().expect("the CLI thread");
        format!(
            "killed the primary of slot {slot} ({in_slot} keys) on {old}; the cluster promoted {new}; the CLI's submit and result took {took:?}"
        )
    })
    .await;
}

/// Starts, in a thread, a CLI `submit` of `slow_inc(41)` and a `result` of
/// it, as a user would type them the moment the primary died; the thread
/// asserts that both succeed with the right value and returns how long they
/// took.
fn cli_during_failover(url: &str, namespace: &str) -> std::thread::JoinHandle<Duration> {
    let (url, namespace) = (url.to_string(), namespace.to_string());
    std::thread::spawn(move || {
        let env = [
            ("WARREN_REDIS_URL", url.as_str()),
            ("WARREN_REDIS_MIN_REPLICAS", "1"),
        ];
        let started = Instant::now();
        let ok = |out: std::process::Output, what: &str| {
            assert!(
                out.status.success(),
                "warren {what} during the failover: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            eprint!("warren {what}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let key = ok(
            run_cli(&namespace, &["submit", "slow_inc", "41", "0"], "", &env),
            "submit",
        );
        let value = ok(run_cli(&namespace, &["result", &key], "", &env), "result");
        assert_eq!(value, "42", "warren result {key}");
        started.elapsed()
    })
}

/// Runs a 3,000-leaf tree on a stack pointed at `redis_url`, calls `fault`
/// (with the namespace) once 500 tasks have ended (it kills the primary, waits for the
/// promotion and says what it did), and checks that the tree finishes with
/// every task finished exactly once and every value right.
async fn survives(redis_url: String, fault: impl FnOnce(&Store, &str) -> String) {
    let cluster = Cluster::start_with(ClusterOptions {
        workers: 3,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        env: vec![
            ("WARREN_REDIS_URL".into(), redis_url),
            ("WARREN_REDIS_MIN_REPLICAS".into(), "1".into()),
            ("WARREN_ALLOWED_FAILURES".into(), "20".into()),
        ],
        ..Default::default()
    })
    .await;
    let client = cluster.client().await;
    // At least 2.5 s of work on 6 slots: the primary dies while tasks run.
    let (leaves, root, total) = dag::submit_tree(&client, 3000).await;
    let store = Store::connect(&cluster.settings).await.unwrap();
    let root_key = root.key().to_string();
    // Mid-run: some tasks ended, the DAG has not.
    let ended = loop {
        let ended = store.stats().await.unwrap().ended();
        if ended >= 500 {
            break ended;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !dag::finished(&store, &root_key).await,
        "the DAG ended before the fault"
    );

    let started = Instant::now();
    let what = fault(&store, &cluster.settings.namespace);
    eprintln!(
        "{what}, with {ended} of {total} tasks ended, after {:?}",
        started.elapsed()
    );
    while !dag::finished(&store, &root_key).await {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the DAG did not finish within 180 s of the primary's death"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("DAG finished {:?} after the fault", started.elapsed());

    // The namespace also ran the CLI's task (which its thread checked).
    dag::assert_exactly_once(&client, &store, 1, &leaves, &root, total + 1).await;
    cluster.shutdown().await;
}

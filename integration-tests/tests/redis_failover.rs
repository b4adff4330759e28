//! warren on a Redis primary with two replicas under Sentinel (issue 13):
//! the primary is killed (`kill -9`) in the middle of a DAG, the sentinels
//! promote a replica, and every process follows it. With
//! `redis_min_replicas = 1` no state change that a message's ack or a
//! client's answer depended on is lost: every task finishes once, with the
//! right value.

use std::time::{Duration, Instant};

use warren_core::store::Store;
use warren_integration_tests::sentinel::ReplicatedRedis;
use warren_integration_tests::{Cluster, ClusterOptions, dag};

#[tokio::test(flavor = "multi_thread")]
async fn a_dag_survives_the_death_of_the_redis_primary() {
    let mut redis = ReplicatedRedis::start();
    let cluster = Cluster::start_with(ClusterOptions {
        workers: 3,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        env: vec![
            ("WARREN_REDIS_URL".into(), redis.url()),
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
    let old = redis.kill_primary();
    let new = redis.await_failover(old, Duration::from_secs(30));
    eprintln!(
        "killed the primary on {old} with {ended} of {total} tasks ended; the sentinels promoted {new} after {:?}",
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

    dag::assert_exactly_once(&client, &store, 1, &leaves, &root, total).await;
    cluster.shutdown().await;
}

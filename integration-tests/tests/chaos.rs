//! The fault-injection suite: a DAG of over 10,000 tasks finishes with the right
//! values while workers are killed and restarted at random, a scheduler is
//! killed and restarted (two run at once), RabbitMQ restarts, and Redis (with
//! persistence on) restarts.
//!
//! RabbitMQ is the machine's own broker, restarted with `rabbitmqctl stop_app`
//! / `start_app` (this test binary runs alone, so no other test is disturbed).
//! Redis is a private `redis-server` with append-only persistence on a port of
//! its own, so restarting it touches nothing else.

use std::time::{Duration, Instant};

use warren_core::store::Store;
use warren_integration_tests::{Cluster, ClusterOptions, PersistentRedis, dag, rabbitmqctl};

fn restart_rabbitmq() {
    rabbitmqctl(&["stop_app"]);
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["--timeout", "60", "await_startup"]);
}

/// A small deterministic generator, seeded from the clock and printed, so a
/// failing run can be replayed.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_thousand_task_dag_survives_killed_workers_schedulers_and_restarted_servers() {
    let mut redis = PersistentRedis::start();
    let mut cluster = Cluster::start_with(ClusterOptions {
        workers: 3,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        env: vec![
            ("WARREN_REDIS_URL".into(), redis.url()),
            // Random kills may hit one task several times; this suite is about
            // losing nothing, not about KilledWorker (tests/suite/faults.rs is).
            ("WARREN_ALLOWED_FAILURES".into(), "20".into()),
        ],
        ..Default::default()
    })
    .await;

    let leaves: i64 = 6000;
    let client = cluster.client().await;
    let (leaf_futures, root, total) = dag::submit_tree(&client, leaves).await;
    assert!(total >= 10_000, "{total} tasks");
    let root_key = root.key().to_string();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("chaos seed {seed}");
    let mut rng = Lcg(seed);
    let mut faults = 0;
    let store = Store::connect(&cluster.settings).await.unwrap();
    let started = Instant::now();
    let mut step = 0;
    loop {
        let done = dag::finished(&store, &root_key).await;
        if done && step >= 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the DAG did not finish within 300 s ({faults} faults injected)"
        );
        match step {
            0 => cluster.kill_and_replace_worker(rng.below(3)),
            1 => cluster.kill_and_replace_scheduler(),
            2 => tokio::task::spawn_blocking(restart_rabbitmq).await.unwrap(),
            3 => redis.restart(),
            _ if done => {}
            _ => cluster.kill_and_replace_worker(rng.below(3)),
        }
        if step < 4 || !done {
            faults += 1;
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    eprintln!("DAG finished after {:?}", started.elapsed());

    dag::assert_exactly_once(&client, &store, faults, &leaf_futures, &root, total).await;
    cluster.shutdown().await;
}

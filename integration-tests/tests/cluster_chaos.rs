//! The cluster chaos suite (issue 13): warren on a 3-node RabbitMQ cluster
//! with quorum queues and a Redis primary with two replicas under Sentinel
//! (`redis_min_replicas = 1`), its schedulers and workers spread over two
//! hosts, while in turn
//!
//! 1. the RabbitMQ node leading the work queue's quorum is killed (`kill -9`),
//!    with the test's own client on it: the client moves to another node and
//!    runs more tasks, and a CLI submit and result started that moment succeed,
//! 2. the Redis primary is killed and the sentinels promote a replica,
//! 3. a scheduler is killed and another started,
//! 4. one host's network is cut (`ip link set ... down`) until the broker,
//!    its heartbeats missed, gives up on that host's connections and requeues
//!    what its workers held (10 to 15 s), and 2 s more.
//!
//! Every task must finish exactly once with the value arithmetic gives.
//!
//! The hosts are network namespaces on a bridge (see
//! `warren_integration_tests::netns`); the servers run on this machine and are
//! reached by the bridge's address, the test's own client included. CI runs
//! 2,000 leaves (3,999 tasks); the full run is
//! `WARREN_CHAOS_LEAVES=5001 cargo test --release -p warren-integration-tests --test cluster_chaos -- --nocapture`
//! (10,001 tasks). Needs root, for `ip netns`.

use std::time::{Duration, Instant};

use warren_client::Client;
use warren_core::store::Store;
use warren_integration_tests::netns::Hosts;
use warren_integration_tests::sentinel::ReplicatedRedis;
use warren_integration_tests::{Cluster, ClusterOptions, PrivateRabbit, dag};

/// The longest host 1 may be cut off before the broker must have given up
/// on its connections (two missed heartbeat intervals of 5 s, plus the
/// phase of the broker's check: 10 to 15 s).
const CUT_LIMIT: Duration = Duration::from_secs(30);

/// How long the cut lasts after the broker gave up: host 1's processes
/// return to a broker that has requeued what they held.
const CUT_AFTER: Duration = Duration::from_secs(2);

/// Tasks ended so far, or `None` while Redis fails over.
async fn ended(store: &Store) -> Option<u64> {
    store.stats().await.ok().map(|s| s.ended())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dag_over_two_hosts_survives_a_dead_rabbit_leader_redis_primary_scheduler_and_a_cut_network()
 {
    let leaves: i64 = std::env::var("WARREN_CHAOS_LEAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let hosts = Hosts::make(2);
    let gateway = hosts.gateway().to_string();
    let mut redis = ReplicatedRedis::start_on(&gateway);
    let nodes = PrivateRabbit::cluster(3, &["loopback_users.guest = false"]);
    let urls: Vec<String> = nodes.iter().map(|n| n.amqp_url_at(&gateway)).collect();
    let mut cluster = Cluster::start_with(ClusterOptions {
        workers: 4,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        env: vec![
            ("WARREN_AMQP_URL".into(), urls.join(",")),
            ("WARREN_QUEUE_TYPE".into(), "quorum".into()),
            ("WARREN_REDIS_URL".into(), redis.url()),
            ("WARREN_REDIS_MIN_REPLICAS".into(), "1".into()),
            ("WARREN_ALLOWED_FAILURES".into(), "20".into()),
        ],
        hosts: hosts.names(),
        ..Default::default()
    })
    .await;
    let work_queue = format!("{}.work.default", cluster.settings.namespace);
    let doomed = nodes[0]
        .leader_of(&nodes, &work_queue)
        .expect("the work queue has a leader");
    eprintln!("the work queue's leader: {}", nodes[doomed].node());
    let survivor = (doomed + 1) % 3;

    // The client starts on the doomed node: a process starts on the node of
    // its pid (then on the one that answered last), so that node goes there.
    let mut client_urls = urls.clone();
    client_urls.swap(std::process::id() as usize % 3, doomed);
    let mut settings = cluster.settings.clone();
    settings.amqp_url = client_urls.join(",");
    let client = Client::connect(settings).await.unwrap();
    // The client is the one connection from this machine (schedulers and
    // workers are on the hosts); the node it is on shows in its Erlang pid
    // (`<node.N.N.N>`: connections have no `node` column).
    let client_node = |ask: usize| {
        let me = format!("{gateway}:");
        let out = nodes[ask].ctl(&[
            "list_connections",
            "-q",
            "--no-table-headers",
            "name",
            "pid",
        ]);
        let pid = out
            .lines()
            .find(|l| l.starts_with(&me))
            .and_then(|l| l.split_whitespace().last().map(str::to_string))?;
        nodes
            .iter()
            .find(|n| pid.contains(&format!("<{}.", n.node())))
            .map(|n| n.node().to_string())
    };
    assert_eq!(
        client_node(survivor).as_deref(),
        Some(nodes[doomed].node()),
        "the client is not on the doomed node; connections: {}",
        nodes[survivor].ctl(&[
            "list_connections",
            "-q",
            "--no-table-headers",
            "name",
            "pid"
        ])
    );
    // Leaves of 20 ms on 8 slots: 2,000 of them are 5 s of work at the
    // least, so every fault lands while tasks run.
    let (leaf_futures, root, total) = dag::submit_tree_of(&client, leaves, 20).await;
    let store = Store::connect(&cluster.settings).await.unwrap();
    let root_key = root.key().to_string();

    // Each fault once a further share of the tasks has ended.
    let started = Instant::now();
    let mut faults = 0;
    let mut moved = None;
    for (step, share) in [0.08, 0.2, 0.32, 0.44].into_iter().enumerate() {
        let at = (total as f64 * share) as u64;
        let now = loop {
            match ended(&store).await {
                Some(n) if n >= at => break n,
                _ => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "{at} tasks did not end within 240 s ({faults} faults injected)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            !dag::finished(&store, &root_key).await,
            "the DAG ended before fault {step}"
        );
        let t = Instant::now();
        match step {
            0 => {
                nodes[doomed].kill();
                // The client's node is gone: it moves to another and goes on,
                // publishing again what it had in flight (the tree's last
                // batches, not yet flushed), with a map of its own that runs
                // beside the DAG.
                let (client, t) = (client.clone(), Instant::now());
                // A CLI started the moment the node died submits and gets
                // its result too, each command connecting afresh to a node
                // that answers.
                let cli_env = [
                    ("WARREN_AMQP_URL".to_string(), urls.join(",")),
                    ("WARREN_QUEUE_TYPE".into(), "quorum".into()),
                    ("WARREN_REDIS_URL".into(), redis.url()),
                ];
                let ns = cluster.settings.namespace.clone();
                let cli = tokio::task::spawn_blocking(move || {
                    let env: Vec<(&str, &str)> = cli_env
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let t = Instant::now();
                    let key = warren_integration_tests::run_cli(
                        &ns,
                        &["submit", "inc", "1000"],
                        "",
                        &env,
                    );
                    let key = warren_integration_tests::ok_stdout(&key);
                    let value =
                        warren_integration_tests::run_cli(&ns, &["result", key.trim()], "", &env);
                    let value = warren_integration_tests::ok_stdout(&value);
                    assert_eq!(value.trim(), "1001");
                    eprintln!(
                        "a CLI submit and result during the node's death took {:?}",
                        t.elapsed()
                    );
                });
                moved = Some(tokio::spawn(async move {
                    cli.await.expect("the CLI's submit and result");
                    let extra = client.map("inc", 0..100).await.unwrap();
                    let values =
                        tokio::time::timeout(Duration::from_secs(60), client.gather(&extra))
                            .await
                            .expect("a gather on the client whose node died, within 60 s")
                            .unwrap();
                    assert_eq!(
                        values,
                        (1..=100).map(|i| serde_json::json!(i)).collect::<Vec<_>>()
                    );
                    eprintln!(
                        "the client moved and ran 100 more tasks in {:?}",
                        t.elapsed()
                    );
                    // The map's tasks and the CLI's one (pure keys: its
                    // argument is none of the map's).
                    extra.len() + 1
                }));
            }
            1 => {
                let old = redis.kill_primary();
                let new = redis.await_failover(old, Duration::from_secs(30));
                eprintln!("Redis primary {old} killed; the sentinels promoted {new}");
            }
            2 => cluster.kill_and_replace_scheduler(),
            _ => {
                let cut_host = hosts.address(1);
                let from_cut_host = || {
                    let out = nodes[survivor].ctl(&[
                        "list_connections",
                        "-q",
                        "--no-table-headers",
                        "peer_host",
                    ]);
                    out.lines().filter(|l| l.trim() == cut_host).count()
                };
                assert!(from_cut_host() > 0, "host 1 has no connection to cut");
                hosts.set_link(1, false);
                let cut = Instant::now();
                // The point of the cut: the broker gives host 1 up and
                // requeues what its workers held.
                let given_up = loop {
                    if from_cut_host() == 0 {
                        break Some(cut.elapsed());
                    }
                    if cut.elapsed() >= CUT_LIMIT {
                        break None;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                };
                tokio::time::sleep(CUT_AFTER).await;
                hosts.set_link(1, true);
                let given_up = given_up.unwrap_or_else(|| {
                    panic!("the broker kept host 1's connections through a cut of {CUT_LIMIT:?}")
                });
                eprintln!(
                    "host 1 cut off for {:?}; the broker closed its connections after {given_up:?}",
                    cut.elapsed()
                );
            }
        }
        faults += 1;
        eprintln!(
            "fault {step} at {now} of {total} tasks ended, took {:?}",
            t.elapsed()
        );
    }
    let extra_tasks = moved
        .expect("fault 0 ran")
        .await
        .expect("the client's own map");
    eprintln!(
        "the client is now on {}",
        client_node(survivor).unwrap_or_default()
    );
    while !dag::finished(&store, &root_key).await {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the DAG did not finish within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_leader = nodes[survivor].leader_of(&nodes, &work_queue);
    assert!(new_leader.is_some_and(|l| l != doomed), "{new_leader:?}");
    eprintln!(
        "DAG finished {:?} after the submit; the work queue's leader is now {}",
        started.elapsed(),
        new_leader.map_or("?", |l| nodes[l].node())
    );
    dag::assert_exactly_once(
        &client,
        &store,
        faults,
        &leaf_futures,
        &root,
        total + extra_tasks,
    )
    .await;
    cluster.shutdown().await;
}

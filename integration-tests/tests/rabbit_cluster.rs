//! warren on a 3-node RabbitMQ cluster with quorum queues (issue 13): the
//! node that leads the work queue's quorum is killed (`kill -9` of its
//! Erlang VM) in the middle of a DAG, then a scheduler and a worker, and
//! nothing confirmed is lost: every task finishes once, with the right value.
//!
//! The nodes are private (their own names, ports and data under the
//! temporary directory; the machine's broker on 5672 is untouched), started
//! side by side and joined into one cluster. Every process is given the
//! three nodes' URLs in `amqp_url` and starts on one chosen by its pid; a
//! process whose node dies reconnects to another one.

use std::time::{Duration, Instant};

use warren_client::Client;
use warren_core::store::Store;
use warren_integration_tests::{Cluster, ClusterOptions, PrivateRabbit, dag};

/// The node leading quorum queue `queue`, as node `ask` reports it.
fn leader(nodes: &[PrivateRabbit], ask: usize, queue: &str) -> Option<usize> {
    let out = nodes[ask].ctl(&["list_queues", "-q", "--no-table-headers", "name", "leader"]);
    let leader = out.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        (cols.next() == Some(queue)).then(|| cols.next().unwrap_or("").to_string())
    })?;
    nodes.iter().position(|n| n.node() == leader)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quorum_cluster_loses_nothing_when_the_work_queues_leader_dies() {
    let nodes = PrivateRabbit::cluster(3, &[]);
    let urls: Vec<String> = nodes.iter().map(PrivateRabbit::amqp_url).collect();
    let mut cluster = Cluster::start_with(ClusterOptions {
        workers: 3,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        env: vec![
            ("WARREN_AMQP_URL".into(), urls.join(",")),
            ("WARREN_QUEUE_TYPE".into(), "quorum".into()),
            ("WARREN_ALLOWED_FAILURES".into(), "20".into()),
        ],
        ..Default::default()
    })
    .await;
    let work_queue = format!("{}.work.default", cluster.settings.namespace);
    let doomed = leader(&nodes, 0, &work_queue).expect("the work queue has a leader");
    eprintln!("the work queue's leader: {}", nodes[doomed].node());

    // The client itself stays off the doomed node: a client whose node dies
    // mid-run gets `Disconnected` (its futures live on in Redis).
    let mut settings = cluster.settings.clone();
    settings.amqp_url = (0..3)
        .filter(|&i| i != doomed)
        .map(|i| urls[i].clone())
        .collect::<Vec<_>>()
        .join(",");
    let client = Client::connect(settings).await.unwrap();
    // 3,000 leaves of 5 ms on 6 slots: at least 2.5 s of work, so every fault
    // lands while tasks run.
    let leaves: i64 = 3000;
    let (leaf_futures, root, total) = dag::submit_tree(&client, leaves).await;
    let store = Store::connect(&cluster.settings).await.unwrap();
    let root_key = root.key().to_string();

    let started = Instant::now();
    let mut faults = 0;
    for step in 0..3 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let ended = store.stats().await.unwrap().ended();
        assert!(
            !dag::finished(&store, &root_key).await,
            "the DAG ended before fault {step}"
        );
        eprintln!("fault {step} with {ended} of {total} tasks ended");
        match step {
            0 => nodes[doomed].kill(),
            1 => cluster.kill_and_replace_scheduler(),
            _ => cluster.kill_and_replace_worker(0),
        }
        faults += 1;
    }
    while !dag::finished(&store, &root_key).await {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the DAG did not finish within 180 s of the first fault"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_leader = leader(&nodes, (doomed + 1) % 3, &work_queue);
    assert!(new_leader.is_some_and(|l| l != doomed), "{new_leader:?}");
    eprintln!(
        "DAG finished {:?} after the first fault; the work queue's leader is now {}",
        started.elapsed(),
        new_leader.map_or("?", |l| nodes[l].node())
    );

    let mut keys: Vec<String> = leaf_futures.iter().map(|f| f.key().to_string()).collect();
    keys.push(root_key);
    let t = dag::tally(&store, &keys, total).await;
    println!(
        "faults: {faults} injected, tasks: {total} submitted, {} finished, {} lost, {} duplicated transitions",
        t.finished, t.lost, t.duplicated
    );
    assert_eq!(t.lost, 0);
    assert_eq!(t.finished, total as u64, "{:?}", t.stats);
    assert_eq!(t.stats.get("error"), None, "{:?}", t.stats);
    dag::check_values(&client, &leaf_futures, &root).await;
    cluster.shutdown().await;
}

/// `scripts/cluster.sh up` makes what docs/operations.md says, warren runs on
/// the settings it prints, and `down` removes all it made.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_sh_makes_a_cluster_warren_runs_on_and_down_removes_it() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
    let dir = std::env::temp_dir().join(format!("warren-cluster-{}", std::process::id()));
    let ns = warren_integration_tests::fresh_settings("it").namespace;
    let run = |verb: &str| {
        std::process::Command::new("bash")
            .arg(&script)
            .arg(verb)
            .env("WARREN_CLUSTER_DIR", &dir)
            .env("WARREN_NAMESPACE", &ns)
            .env("WARREN_BIN_DIR", warren_integration_tests::bin_dir())
            .output()
            .expect("bash scripts/cluster.sh")
    };
    let up = run("up");
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "cluster.sh up (are ports 5701-5703 or 7001-7003 taken? `bash scripts/cluster.sh down`): {stdout}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let env: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["WARREN_AMQP_URL", "WARREN_QUEUE_TYPE", "WARREN_REDIS_URL"],
        "{stdout}"
    );
    assert_eq!(env[0].1.split(',').count(), 3, "{stdout}");

    let mut with_ns = env.clone();
    with_ns.push(("WARREN_NAMESPACE".into(), ns.clone()));
    let c = Cluster::start_with(ClusterOptions {
        env: with_ns,
        ..Default::default()
    })
    .await;
    let key = warren_integration_tests::ok_stdout(&c.warren(&["submit", "inc", "41"]));
    let value = warren_integration_tests::ok_stdout(&c.warren(&["result", key.trim()]));
    assert_eq!(value.trim(), "42");
    // Quorum queues, led by the cluster, under the policies it imported.
    let queues = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "-n",
            "warren-2@localhost",
            "list_queues",
            "name",
            "type",
            "policy",
        ])
        .output()
        .expect("rabbitmqctl");
    let queues = String::from_utf8_lossy(&queues.stdout).into_owned();
    let work = format!("{ns}.work.default");
    assert!(
        queues.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&work.as_str())
                && cols.get(1) == Some(&"quorum")
                && cols.get(2) == Some(&format!("{ns}.work").as_str())
        }),
        "{queues}"
    );
    // A replica follows the primary.
    let info = std::process::Command::new("redis-cli")
        .args(["-p", "7002", "info", "replication"])
        .output()
        .expect("redis-cli");
    assert!(String::from_utf8_lossy(&info.stdout).contains("master_port:7001"));
    c.shutdown().await;

    let down = run("down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for port in [5701, 5702, 5703, 7001, 7002, 7003] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after down"
        );
    }
    assert!(!dir.exists(), "{} still there", dir.display());
}

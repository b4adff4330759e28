//! `scripts/cluster.sh` (issue 13): `up` makes the 3-node RabbitMQ cluster
//! and the replicated Redis that docs/operations.md describes, warren runs on
//! the settings it prints, and `down` removes all of it; `up --redis-cluster`
//! makes a Redis Cluster warren runs on too. What warren does when
//! a node of such a cluster dies is `tests/cluster_chaos.rs`.

use warren_integration_tests::{Cluster, ClusterOptions};

/// `scripts/cluster.sh up` makes what docs/operations.md says, warren runs on
/// the settings it prints, and `down` removes all it made.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_sh_makes_a_cluster_warren_runs_on_and_down_removes_it() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
    let dir = std::env::temp_dir().join(format!("warren-cluster-{}", std::process::id()));
    let ns = warren_integration_tests::fresh_settings("it").namespace;
    let run = |args: &[&str]| {
        std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .env("WARREN_CLUSTER_DIR", &dir)
            .env("WARREN_NAMESPACE", &ns)
            .env("WARREN_BIN_DIR", warren_integration_tests::bin_dir())
            .output()
            .expect("bash scripts/cluster.sh")
    };
    let up = run(&["up"]);
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "cluster.sh up (are ports 5701-5703 or 7001-7006 taken? `bash scripts/cluster.sh down`): {stdout}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // `status` names each node and says it is up: three RabbitMQ nodes,
    // three Redis servers and three sentinels.
    let status = run(&["status"]);
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.status.success(), "cluster.sh status: {said}");
    assert_eq!(said.matches(": up").count(), 9, "cluster.sh status: {said}");
    assert!(said.contains("amqp 5702: up"), "cluster.sh status: {said}");
    let env = exports(&stdout);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "WARREN_AMQP_URL",
            "WARREN_QUEUE_TYPE",
            "WARREN_REDIS_URL",
            "WARREN_REDIS_MIN_REPLICAS"
        ],
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
    // The sentinels watch it, and warren found the primary through them.
    assert!(env[2].1.starts_with("redis+sentinel://"), "{stdout}");
    let primary = std::process::Command::new("redis-cli")
        .args([
            "-p",
            "7004",
            "sentinel",
            "get-master-addr-by-name",
            "warren",
        ])
        .output()
        .expect("redis-cli");
    let primary = String::from_utf8_lossy(&primary.stdout).into_owned();
    assert_eq!(
        primary.split_whitespace().collect::<Vec<_>>(),
        ["127.0.0.1", "7001"],
        "{primary}"
    );
    c.shutdown().await;

    // The Redis Cluster mode, beside the RabbitMQ nodes already up: warren
    // runs on the redis+cluster:// URL it prints.
    let up = run(&["up", "--redis-cluster"]);
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "cluster.sh up --redis-cluster (are ports 7011-7016 taken?): {stdout}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let mut env = exports(&stdout);
    assert_eq!(
        env[2].1, "redis+cluster://127.0.0.1:7011,127.0.0.1:7012,127.0.0.1:7013/",
        "{stdout}"
    );
    let nodes = std::process::Command::new("redis-cli")
        .args(["-p", "7011", "cluster", "nodes"])
        .output()
        .expect("redis-cli");
    let nodes = String::from_utf8_lossy(&nodes.stdout).into_owned();
    assert_eq!(nodes.matches("master").count(), 3, "{nodes}");
    assert_eq!(nodes.matches("slave").count(), 3, "{nodes}");
    env.push(("WARREN_NAMESPACE".into(), ns.clone()));
    let c = Cluster::start_with(ClusterOptions {
        env,
        ..Default::default()
    })
    .await;
    let key = warren_integration_tests::ok_stdout(&c.warren(&["submit", "inc", "1"]));
    let value = warren_integration_tests::ok_stdout(&c.warren(&["result", key.trim()]));
    assert_eq!(value.trim(), "2");
    c.shutdown().await;

    let down = run(&["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let status = run(&["status"]);
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.status.success() && !said.contains(": up") && said.contains("amqp 5701: down"),
        "cluster.sh status after down: {said}"
    );
    for port in [
        5701, 5702, 5703, 7001, 7002, 7003, 7004, 7005, 7006, 7011, 7012, 7013, 7014, 7015, 7016,
    ] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after down"
        );
    }
    assert!(!dir.exists(), "{} still there", dir.display());
}

/// The `export K='V'` lines `cluster.sh up` prints, as (K, V).
fn exports(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

//! What a user reads while a service is down (issue 16, point 6): one line
//! when the outage starts, a reminder now and then, one when it ends; never
//! a line per retried call.

use std::process::{Command, Stdio};
use std::time::Duration;

use warren_integration_tests::{Cluster, ClusterOptions, PersistentRedis, bin, ok_stdout};

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_during_a_gather_is_said_once_not_per_retry() {
    let mut redis = PersistentRedis::start();
    let c = Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 4,
        env: vec![("WARREN_REDIS_URL".into(), redis.url())],
        ..Default::default()
    })
    .await;
    // Enough waiters that one warning per retry would be thousands of lines:
    // 400 futures waiting on one task that outlasts the outage.
    let slow = ok_stdout(&c.warren(&["submit", "--no-pure", "sleep", "16"]));
    let dep = format!("@{}", slow.trim());
    let mut map = vec!["map", "--no-pure", "identity"];
    map.extend(std::iter::repeat_n(dep.as_str(), 400));
    let keys = ok_stdout(&c.warren(&map));
    let mut gather = Command::new(bin("warren"))
        .args(["gather", "-"])
        .env("WARREN_NAMESPACE", &c.settings.namespace)
        .env("WARREN_KEY_FILE", warren_integration_tests::NO_KEY)
        .env("WARREN_REDIS_URL", redis.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren gather");
    {
        use std::io::Write;
        let mut stdin = gather.stdin.take().expect("stdin");
        stdin.write_all(keys.as_bytes()).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.stop();
    // Longer than a poll period, so every waiter retries, and past a reminder.
    tokio::time::sleep(Duration::from_secs(12)).await;
    redis.resume();
    let out = tokio::task::spawn_blocking(move || gather.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 400);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("Redis")).collect();
    assert!(
        err.contains("Redis is unreachable"),
        "the outage was not said: {err}"
    );
    assert!(
        lines.len() <= 6,
        "{} lines about Redis:\n{}",
        lines.len(),
        lines.join("\n")
    );
    c.shutdown().await;
}

/// A CLI command given several RabbitMQ nodes, none of which answers (one
/// gone for good, the other restarting its application), waits for one
/// within `request_timeout_secs`, says so once, and then does its work.
#[test]
fn a_cli_command_waits_for_a_rabbitmq_node_when_none_answers() {
    let node = warren_integration_tests::PrivateRabbit::start(&[]);
    let gone = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        warren_integration_tests::free_port()
    );
    let urls = format!("{gone},{}", node.amqp_url());
    node.ctl(&["stop_app"]);
    let ns = warren_integration_tests::fresh_settings("it-ride").namespace;
    let cli = Command::new(bin("warren"))
        .args(["submit", "--detach", "inc", "1"])
        .env("WARREN_NAMESPACE", &ns)
        .env("WARREN_KEY_FILE", warren_integration_tests::NO_KEY)
        .env("WARREN_AMQP_URL", &urls)
        .env("WARREN_REQUEST_TIMEOUT_SECS", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren");
    std::thread::sleep(Duration::from_secs(3));
    node.ctl(&["start_app"]);
    let out = cli.wait_with_output().expect("warren's output");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("no RabbitMQ node answers").count(), 1, "{err}");
    assert!(
        err.contains("waiting up to 60s (request_timeout_secs)"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "no key printed"
    );
    // The request is in the node's submit queue, for a scheduler to record.
    let queues = node.ctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages",
    ]);
    let submit = format!("{ns}.submit");
    assert!(
        queues
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [submit.as_str(), "1"]),
        "{queues}"
    );
    // One node alone fails at once, naming it, as before.
    let started = std::time::Instant::now();
    node.ctl(&["stop_app"]);
    let out = Command::new(bin("warren"))
        .args(["submit", "--detach", "inc", "1"])
        .env("WARREN_NAMESPACE", &ns)
        .env("WARREN_KEY_FILE", warren_integration_tests::NO_KEY)
        .env("WARREN_AMQP_URL", node.amqp_url())
        .output()
        .expect("warren");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("is it running"), "{err}");
    let settings = warren_core::Settings::load(None, &[("namespace", ns)]).expect("settings");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(warren_integration_tests::cleanup(&settings));
}

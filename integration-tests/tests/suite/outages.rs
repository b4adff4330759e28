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

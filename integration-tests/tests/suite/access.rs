//! Credentials and rights: a wrong password or a namespace the user has no
//! right to is refused, loudly, and passwords never reach the output.
//! Services facing an unreachable server retry and say so; they do not exit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use warren_integration_tests::{bin, cleanup, fresh_settings, rabbitmqctl, run_cli};

/// Removes a namespace's queues and keys from a synchronous test.
fn cleanup_blocking(settings: &warren_core::Settings) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(cleanup(settings));
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_wrong_rabbitmq_password_is_refused_and_not_echoed() {
    let ns = fresh_settings("it-auth").namespace;
    let out = run_cli(
        &ns,
        &["status", "x"],
        "",
        &[(
            "WARREN_AMQP_URL",
            "amqp://guest:not-the-password@127.0.0.1:5672/%2f",
        )],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:5672/%2f"),
        "{err}"
    );
    assert!(
        err.contains("ACCESS_REFUSED") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    // A refused login is not a stopped broker.
    assert!(
        err.contains("user or password in the URL is wrong"),
        "{err}"
    );
    assert!(!err.contains("is it running"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    cleanup_blocking(&warren_core::Settings::load(None, &[("namespace", ns)]).unwrap());
}

#[test]
fn a_rabbitmq_user_cannot_use_a_vhost_it_has_no_rights_to() {
    let user = format!("warren-it-{}", std::process::id());
    let vhost = format!("{user}-vhost");
    rabbitmqctl(&["add_vhost", &vhost]);
    rabbitmqctl(&["add_user", &user, "s3cret-pw"]);
    rabbitmqctl(&["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"]);
    let ns = fresh_settings("it-vhost").namespace;
    // Its own vhost is fine as far as RabbitMQ goes; "/" is not its to use.
    let url = format!("amqp://{user}:s3cret-pw@127.0.0.1:5672/%2f");
    let out = run_cli(&ns, &["status", "x"], "", &[("WARREN_AMQP_URL", &url)]);
    let _ = Command::new("rabbitmqctl")
        .args(["delete_user", &user])
        .output();
    let _ = Command::new("rabbitmqctl")
        .args(["delete_vhost", &vhost])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("cannot reach RabbitMQ"), "{err}");
    assert!(
        err.contains("not_allowed") || err.contains("NOT_ALLOWED") || err.contains("access"),
        "{err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
}

#[test]
fn a_redis_acl_user_is_confined_to_its_namespace() {
    let user = format!("warren-it-{}", std::process::id());
    let allowed = format!("team{}", std::process::id());
    let acl = Command::new("redis-cli")
        .args([
            "ACL",
            "SETUSER",
            &user,
            "on",
            ">redis-pw",
            &format!("~{allowed}:*"),
            "+@all",
        ])
        .output()
        .expect("redis-cli");
    assert!(acl.status.success());
    let url = format!("redis://{user}:redis-pw@127.0.0.1:6379/");
    // Another namespace's keys: refused by Redis, reported by warren.
    let out = run_cli(
        &format!("other{}", std::process::id()),
        &["status", "somekey"],
        "",
        &[("WARREN_REDIS_URL", &url)],
    );
    let own = run_cli(
        &allowed,
        &["status", "somekey"],
        "",
        &[("WARREN_REDIS_URL", &url)],
    );
    let _ = Command::new("redis-cli")
        .args(["ACL", "DELUSER", &user])
        .output();
    // Both CLI runs declared their namespace's queues before Redis refused them.
    for ns in [format!("other{}", std::process::id()), allowed.clone()] {
        cleanup_blocking(&warren_core::Settings::load(None, &[("namespace", ns)]).unwrap());
    }
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("NOPERM") || err.contains("no permissions"),
        "{err}"
    );
    assert!(!err.contains("redis-pw"), "{err}");
    // In its own namespace the same user gets as far as "unknown key".
    assert_eq!(own.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&own.stdout).trim(),
        "somekey unknown"
    );
    assert!(
        stderr(&own).contains("1 of 1 keys unknown"),
        "{}",
        stderr(&own)
    );
}

#[test]
fn a_scheduler_facing_an_unreachable_redis_retries_instead_of_exiting() {
    let ns = fresh_settings("it-retry").namespace;
    let mut child = Command::new(bin("warren-scheduler"))
        .env("WARREN_NAMESPACE", &ns)
        .env("WARREN_REDIS_URL", "redis://:hidden-pw@127.0.0.1:1/")
        .env("RUST_LOG", "warn,lapin=off")
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren-scheduler");
    std::thread::sleep(Duration::from_secs(3));
    let alive = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(alive, "the scheduler exited instead of retrying:\n{log}");
    assert!(
        log.contains("cannot reach Redis at redis://:***@127.0.0.1:1/"),
        "{log}"
    );
    assert!(log.matches("reconnecting").count() >= 2, "{log}");
    assert!(!log.contains("hidden-pw"), "{log}");
}

/// A Redis of its own that wants a password, on a free port.
struct PasswordRedis {
    port: u16,
    child: std::process::Child,
}

impl PasswordRedis {
    fn start(password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on {port} did not start");
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_redis_url_lacks_the_password_consumes_nothing_and_says_why() {
    let redis = PasswordRedis::start("redis-pw-16");
    let good = format!("redis://:redis-pw-16@127.0.0.1:{}/", redis.port);
    let bare = format!("redis://127.0.0.1:{}/", redis.port);
    let mut c =
        warren_integration_tests::Cluster::start_with(warren_integration_tests::ClusterOptions {
            workers: 0,
            env: vec![("WARREN_REDIS_URL".into(), good)],
            ..Default::default()
        })
        .await;
    let mut worker = Command::new(bin("warren-worker"))
        .env("WARREN_NAMESPACE", &c.settings.namespace)
        .env("WARREN_KEY_FILE", warren_integration_tests::NO_KEY)
        .env("WARREN_REDIS_URL", &bare)
        .env("RUST_LOG", "warn,lapin=off")
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren-worker");
    let out = c.warren(&["submit", "--detach", "inc", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let work_queue = c.topology().work_queue("default");
    let (_, consumers) = c.queue_counts(&work_queue).await;
    let alive = matches!(worker.try_wait(), Ok(None));
    let _ = worker.kill();
    let _ = worker.wait();
    let mut log = String::new();
    if let Some(mut e) = worker.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert_eq!(consumers, 0, "the worker consumed without Redis:\n{log}");
    assert!(alive, "the worker exited instead of retrying:\n{log}");
    assert!(!log.contains("worker ready"), "{log}");
    for needle in [bare.as_str(), "NOAUTH", "the URL has none", "reconnecting"] {
        assert!(log.contains(needle), "{needle}:\n{log}");
    }
    // The CLI with the same URL names it and the fix, not "is it running?".
    let out = warren_integration_tests::run_cli(
        &c.settings.namespace,
        &["status", &key],
        "",
        &[("WARREN_REDIS_URL", &bare)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&bare) && err.contains("NOAUTH"), "{err}");
    assert!(!err.contains("is it running"), "{err}");
    // The task was not lost: a worker with the password runs it.
    c.start_worker(1);
    let out = c.warren(&["result", "--timeout", "30", &key]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "{}",
        stderr(&out)
    );
    c.shutdown().await;
}

/// Sentinels with a password of their own (`requirepass` in sentinel.conf)
/// are asked with `redis_sentinel_password`; without it, or with a wrong one,
/// a store fails at once (no failover wait: waiting mends no password),
/// naming the sentinel but never the password.
#[tokio::test(flavor = "multi_thread")]
async fn sentinels_that_want_a_password_are_asked_with_it() {
    let redis = warren_integration_tests::sentinel::ReplicatedRedis::start_with_sentinel_password(
        "sentinel-pw",
    );
    let mut settings = fresh_settings("it-sentinel-auth");
    settings.redis_url = redis.url();
    settings.redis_sentinel_password = "sentinel-pw".into();
    let store = warren_core::store::Store::connect(&settings)
        .await
        .expect("the sentinels answer with their password");
    store.stats().await.expect("the primary they name answers");

    for wrong in ["", "not-it"] {
        settings.redis_sentinel_password = wrong.into();
        let started = std::time::Instant::now();
        let e = warren_core::store::Store::connect(&settings)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}: {e}",
            started.elapsed()
        );
        assert!(e.contains("no sentinel named the Redis primary"), "{e}");
        assert!(e.contains("WARREN_REDIS_SENTINEL_PASSWORD"), "{e}");
        assert!(!e.contains("sentinel-pw") && !e.contains("not-it"), "{e}");
    }
    store.wipe().await.expect("wipe");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_runs_as_a_redis_user_with_the_documented_acl_rule() {
    let ns = fresh_settings("it-acl").namespace;
    let user = format!("warren-acl-{}", std::process::id());
    let mut args = vec![
        "ACL".to_string(),
        "SETUSER".into(),
        user.clone(),
        "reset".into(),
    ];
    args.extend(["on".into(), ">acl-pw".into()]);
    // The rule `warren access` prints and applies (docs/operations.md, "A
    // namespace as an access boundary").
    args.extend(warren_core::access::redis_rule(&ns, false));
    let set = Command::new("redis-cli")
        .args(&args)
        .output()
        .expect("redis-cli");
    assert!(
        String::from_utf8_lossy(&set.stdout).trim() == "OK",
        "{}",
        String::from_utf8_lossy(&set.stdout)
    );
    let url = format!("redis://{user}:acl-pw@127.0.0.1:6379/");
    let cluster =
        warren_integration_tests::Cluster::start_with(warren_integration_tests::ClusterOptions {
            workers: 1,
            concurrency: 2,
            env: vec![
                ("WARREN_NAMESPACE".into(), ns.clone()),
                ("WARREN_REDIS_URL".into(), url.clone()),
            ],
            ..Default::default()
        })
        .await;
    assert_eq!(cluster.settings.namespace, ns);
    let client = cluster.client().await;
    let futures = client.map("inc", 1..6).await.unwrap();
    let values = client.gather(&futures).await.unwrap();
    assert_eq!(
        values,
        (2..7).map(serde_json::Value::from).collect::<Vec<_>>()
    );
    let slow = client.submit("sleep", (30,)).await.unwrap();
    let sum = client
        .submit("add_them", (&futures[0], &slow))
        .await
        .unwrap();
    client.cancel(&[slow.key().to_string()]).await.unwrap();
    assert_eq!(
        sum.status().await.unwrap().status,
        warren_client::Status::Cancelled
    );
    let key = warren_integration_tests::ok_stdout(&cluster.warren(&["submit", "inc", "41"]));
    let value = warren_integration_tests::ok_stdout(&cluster.warren(&["result", key.trim()]));
    assert_eq!(value.trim(), "42");
    let restarted = warren_integration_tests::ok_stdout(&cluster.warren(&["restart"]));
    assert!(restarted.contains("restarted"), "{restarted}");

    // Another namespace's keys are out of its reach.
    let other = Command::new("redis-cli")
        .args(["--user", &user, "--pass", "acl-pw", "--no-auth-warning"])
        .args(["GET", "some-other-namespace:stats"])
        .output()
        .expect("redis-cli");
    let said = String::from_utf8_lossy(&other.stdout).into_owned();
    cluster.shutdown().await;
    let _ = Command::new("redis-cli")
        .args(["ACL", "DELUSER", &user])
        .output();
    assert!(said.contains("NOPERM"), "{said}");
}

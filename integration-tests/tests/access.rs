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

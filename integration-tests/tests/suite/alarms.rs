//! Under a RabbitMQ resource alarm, the CLI says only what is true and
//! gives up boundedly, naming the alarm (issue 16, point 3).
//!
//! With a memory alarm the broker stops reading from publishing connections
//! and sends `connection.blocked` with its reason. Nothing is confirmed, so
//! nothing may be called safe. The test raises a real alarm on a private
//! node (a watermark too low for any broker); the shared one serves others.

use std::time::{Duration, Instant};

use warren_integration_tests::{Cluster, ClusterOptions, PrivateRabbit};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_alarm_is_named_and_the_cli_exits_2_without_calling_the_request_safe() {
    let rabbit = PrivateRabbit::start(&[]);
    let c = Cluster::start_with(ClusterOptions {
        env: vec![
            ("WARREN_AMQP_URL".into(), rabbit.amqp_url()),
            ("WARREN_REQUEST_TIMEOUT_SECS".into(), "6".into()),
        ],
        ..Default::default()
    })
    .await;
    assert_eq!(
        c.warren(&["submit", "inc", "1"]).status.code(),
        Some(0),
        "before the alarm"
    );

    rabbit.ctl(&["set_vm_memory_high_watermark", "0.0000001"]);
    for args in [
        vec!["submit", "inc", "2"],
        vec!["submit", "--detach", "inc", "3"],
        vec!["map", "inc", "4", "5"],
    ] {
        let started = Instant::now();
        let out = c.warren(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(err.contains("blocked publishing"), "{args:?}: {err}");
        assert!(err.contains("low on memory"), "{args:?}: {err}");
        assert!(err.contains("may not be stored"), "{args:?}: {err}");
        assert!(
            !err.contains("safe in RabbitMQ"),
            "{args:?} called an unconfirmed request safe: {err}"
        );
    }

    // Once the alarm clears, the same commands work.
    rabbit.ctl(&["set_vm_memory_high_watermark", "0.4"]);
    let out = c.warren(&["submit", "inc", "41"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = c.warren(&["result", &key]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    c.shutdown().await;
}

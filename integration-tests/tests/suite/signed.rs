//! Signed messages (issue 33): with a namespace key, a forged report sets no
//! value, a forged work message runs nothing, a forged `Restart` restarts
//! nothing, and messages signed with an old key work while keys rotate and
//! not after. Forgeries are raw publishes, as anyone with write access to the
//! vhost could make them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use serde_json::json;
use warren_core::amqp;
use warren_core::messages::{
    Control, Outcome, PROTOCOL_VERSION, TaskResult, WorkMessage, WorkerReport,
};
use warren_core::msgauth::{Auth, Family};
use warren_core::signing::{Keyring, load, write_new_key};
use warren_core::topology::REASON_HEADER;
use warren_integration_tests::{Cluster, ClusterOptions, ok_stdout};

fn key_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    write_new_key(&path, true).unwrap();
    path
}

fn keys(current: &Path, previous: Option<&Path>) -> Keyring {
    let prev = previous
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    load(&current.display().to_string(), &prev)
        .unwrap()
        .unwrap()
}

async fn signed_cluster(key: &Path, previous: Option<&Path>) -> Cluster {
    let mut env = vec![("WARREN_KEY_FILE".to_string(), key.display().to_string())];
    if let Some(p) = previous {
        env.push(("WARREN_PREVIOUS_KEY_FILE".into(), p.display().to_string()));
    }
    Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 1,
        env,
        ..Default::default()
    })
    .await
}

/// Publishes `body` to `queue` (or the control exchange), signed by `auth`.
async fn publish(
    c: &Cluster,
    exchange: &str,
    queue: &str,
    body: &[u8],
    auth: &Auth,
    family: Family,
) {
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    let props = auth.sign(family, body, amqp::json_properties(&[]));
    let confirm = amqp::publish(&ch, exchange, queue, body, props)
        .await
        .unwrap();
    amqp::confirmed(vec![confirm], "test").await.unwrap();
}

/// The dead-letter reasons that arrive within 10 s, up to `n`.
async fn dead_reasons(c: &Cluster, n: usize) -> Vec<String> {
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    for _ in 0..100 {
        while let Some(msg) = ch
            .basic_get(
                c.topology().dead_queue().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            let headers = msg
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default();
            if let Some(r) = headers
                .inner()
                .get(REASON_HEADER)
                .and_then(|v| v.as_long_string())
            {
                out.push(r.to_string());
            }
        }
        if out.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

/// A task recorded on a queue nobody serves: it stays pending until
/// something (forged or not) finishes it.
fn parked(c: &Cluster) -> String {
    let k = ok_stdout(&c.warren(&[
        "submit",
        "--no-pure",
        "--allow-unserved",
        "--queue",
        "parked",
        "inc",
        "1",
    ]));
    k.trim().to_string()
}

fn status(c: &Cluster, key: &str) -> String {
    ok_stdout(&c.warren(&["status", key])).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_reports_work_and_restarts_change_nothing() {
    let dir = tempdir("forged");
    let key = key_file(&dir, "key");
    let c = signed_cluster(&key, None).await;
    // The CLI and the library hold the key, so they work as ever.
    let k = ok_stdout(&c.warren(&["submit", "--no-pure", "inc", "41"]));
    assert_eq!(ok_stdout(&c.warren(&["result", k.trim()])).trim(), "42");
    let ns = c.settings.namespace.clone();
    let topo = c.topology();
    let unsigned = Auth::new(None, &ns);
    let foreign = Auth::new(Some(keys(&key_file(&dir, "other"), None)), &ns);

    // A forged report, unsigned and signed with another key, for a pending task.
    let target = parked(&c);
    let report = serde_json::to_vec(&WorkerReport::Outcomes {
        v: PROTOCOL_VERSION,
        worker: "forger:1".into(),
        outcomes: vec![Outcome {
            key: target.clone(),
            result: TaskResult::Ok(json!(666)),
            attempt: 0,
        }],
    })
    .unwrap();
    for auth in [&unsigned, &foreign] {
        publish(&c, "", &topo.results_queue(), &report, auth, Family::Report).await;
    }
    // A forged work message for it, straight to the workers.
    let work = serde_json::to_vec(&WorkMessage {
        v: PROTOCOL_VERSION,
        key: target.clone(),
        func: "inc".into(),
        args: vec![json!(1)],
        epoch: 0,
        attempt: 0,
        timeout_secs: None,
        dispatched_at_ms: None,
        priority: 0,
    })
    .unwrap();
    publish(
        &c,
        "",
        &topo.work_queue("default"),
        &work,
        &unsigned,
        Family::Work,
    )
    .await;
    // A forged Restart to every worker, epoch 99: accepted, it would make
    // them drop every task of epoch 0 from now on.
    let restart = serde_json::to_vec(&Control::Restart {
        v: PROTOCOL_VERSION,
        epoch: 99,
        reply_to: format!("{ns}.client.forger"),
    })
    .unwrap();
    publish(
        &c,
        &topo.control_exchange(),
        "",
        &restart,
        &foreign,
        Family::Control,
    )
    .await;

    let reasons = dead_reasons(&c, 3).await;
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("unsigned report")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("does not hold")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unsigned work")),
        "{reasons:?}"
    );
    // Nothing changed: the task is still pending, workers still run epoch 0.
    assert_eq!(status(&c, &target), format!("{target} pending queued"));
    let k = ok_stdout(&c.warren(&["submit", "--no-pure", "inc", "1"]));
    assert_eq!(
        ok_stdout(&c.warren(&["result", "--timeout", "20", k.trim()])).trim(),
        "2"
    );
    let _ = std::fs::remove_dir_all(&dir);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_key_works_while_keys_rotate_and_not_after() {
    let dir = tempdir("rotate");
    let old = key_file(&dir, "old");
    let new = key_file(&dir, "new");
    // The namespace signs with the new key and still accepts the old one.
    let mut c = signed_cluster(&new, Some(&old)).await;
    let ns = c.settings.namespace.clone();
    let by_old = Auth::new(Some(keys(&old, None)), &ns);
    let target = parked(&c);
    let done = |value: i64| {
        serde_json::to_vec(&WorkerReport::Outcomes {
            v: PROTOCOL_VERSION,
            worker: "w:1".into(),
            outcomes: vec![Outcome {
                key: target.clone(),
                result: TaskResult::Ok(json!(value)),
                attempt: 0,
            }],
        })
        .unwrap()
    };
    // During the rotation a report signed with the old key is applied.
    publish(
        &c,
        "",
        &c.topology().results_queue(),
        &done(7),
        &by_old,
        Family::Report,
    )
    .await;
    let v = ok_stdout(&c.warren(&["result", "--timeout", "20", &target]));
    assert_eq!(v.trim(), "7");
    // After it (the old key dropped, the scheduler restarted) it is refused.
    c.remove_env("WARREN_PREVIOUS_KEY_FILE");
    c.start_scheduler();
    let second = parked(&c);
    let report = serde_json::to_vec(&WorkerReport::Outcomes {
        v: PROTOCOL_VERSION,
        worker: "w:1".into(),
        outcomes: vec![Outcome {
            key: second.clone(),
            result: TaskResult::Ok(json!(8)),
            attempt: 0,
        }],
    })
    .unwrap();
    publish(
        &c,
        "",
        &c.topology().results_queue(),
        &report,
        &by_old,
        Family::Report,
    )
    .await;
    let reasons = dead_reasons(&c, 1).await;
    assert!(
        reasons.iter().any(|r| r.contains("does not hold")),
        "{reasons:?}"
    );
    assert_eq!(status(&c, &second), format!("{second} pending queued"));
    let _ = std::fs::remove_dir_all(&dir);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_the_key_is_told_why_its_submit_is_refused() {
    let dir = tempdir("keyless");
    let key = key_file(&dir, "key");
    let c = signed_cluster(&key, None).await;
    let out = warren_integration_tests::run_cli(
        &c.settings.namespace,
        &["submit", "--no-pure", "inc", "1"],
        "",
        &[("WARREN_REQUEST_TIMEOUT_SECS", "20")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unsigned submit message"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    c.shutdown().await;
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "warren-signed-{name}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

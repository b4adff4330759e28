//! Tasks that run later (issue 37): `--delay` and `--at`, and retries that
//! back off. A delayed task waits in Redis (`P delayed`, on Redis's clock),
//! not in RabbitMQ; whichever scheduler is alive moves it to its outbox when
//! it is due. Measured against the formula in `warren_core::timing`.

use std::time::Duration;

use serde_json::json;
use warren_client::{Error, Status, SubmitOptions};
use warren_core::messages::{TaskSpec, now_ms};
use warren_core::status::State;
use warren_core::store::{ClaimList, ClaimSlot};
use warren_core::timing::RetryPolicy;
use warren_integration_tests::{
    Cluster, ClusterOptions, ok_stdout, run_log, scratch_store, temp_path,
};

fn one_test_worker() -> ClusterOptions {
    ClusterOptions {
        workers: 1,
        concurrency: 2,
        test_worker: true,
        ..Default::default()
    }
}

/// Gaps between consecutive run times.
fn gaps(times: &[i64]) -> Vec<i64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn delayed_spec(key: &str, delay_ms: u64) -> TaskSpec {
    TaskSpec {
        delay_ms: Some(delay_ms),
        ..TaskSpec::new(key, "f", vec![])
    }
}

#[tokio::test]
async fn promote_moves_only_due_scheduled_tasks_to_the_outbox() {
    let s = scratch_store("test-later").await;
    let applied = s
        .submit(
            None,
            &[delayed_spec("soon", 300), delayed_spec("gone", 300)],
        )
        .await
        .unwrap();
    assert_eq!(applied.queued, 0, "nothing is runnable before its time");
    assert_eq!(
        s.states(&["soon".into(), "gone".into()]).await.unwrap(),
        vec![Some(State::Scheduled), Some(State::Scheduled)]
    );
    let (queued, next) = s.promote(256).await.unwrap();
    assert_eq!(queued, 0);
    let next = next.expect("a task is due later");
    assert!(next <= Duration::from_millis(300), "{next:?}");
    // Cancelled before its time: it leaves the delayed set at once.
    let (cancelled, _) = s.cancel(&["gone".into()]).await.unwrap();
    assert_eq!(cancelled, vec!["gone".to_string()]);
    assert_eq!(s.delayed().await.unwrap().0, 1);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let (queued, next) = s.promote(256).await.unwrap();
    assert_eq!((queued, next), (1, None));
    assert_eq!(
        s.states(&["soon".into(), "gone".into()]).await.unwrap(),
        vec![Some(State::Queued), Some(State::Cancelled)]
    );
    assert_eq!(s.outbox_len("default").await.unwrap(), 1);
    let owner = ClaimList::new("s", ClaimSlot::Dispatch(0));
    let (_, claimed) = s.claim(&owner, "default", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].key, "soon");
    // Promoting again changes nothing: any number of schedulers may run it.
    assert_eq!(s.promote(256).await.unwrap(), (0, None));
    s.wipe().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_task_runs_once_on_time_through_a_scheduler_kill() {
    let mut c = Cluster::start_with(one_test_worker()).await;
    let client = c.client().await;
    let log = temp_path("later-delay");
    let opts = SubmitOptions {
        pure: false,
        delay: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let f = client
        .submit_with("stamp_flaky", (log.to_string_lossy(), 0, "E"), &opts)
        .await
        .unwrap();
    let st = f.status().await.unwrap();
    assert_eq!((st.status, st.state), (Status::Pending, State::Scheduled));
    let due = st.due_ms.expect("a scheduled task shows its due time") as i64;
    let out = ok_stdout(&c.warren(&["status", f.key()]));
    assert!(
        out.starts_with(&format!("{} pending scheduled due 20", f.key())),
        "{out}"
    );
    let info = ok_stdout(&c.warren(&["info"]));
    assert!(
        info.contains("later: 1 scheduled, the next due 20"),
        "{info}"
    );

    // The scheduler dies before the task is due; its replacement runs it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(run_log(&log).is_empty(), "it ran before its time");
    c.kill_and_replace_scheduler();
    assert_eq!(f.result().await.unwrap(), json!(1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = run_log(&log);
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}");
    let late = runs[0] - due;
    eprintln!("delayed 3 s through a scheduler kill: ran {late} ms after its due time");
    assert!(
        (0..1000).contains(&late),
        "ran {late} ms after its due time (goal: within 1 s)"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_before_due_and_at_from_the_cli() {
    let c = Cluster::start_with(one_test_worker()).await;
    let never = temp_path("later-never");
    let key = ok_stdout(&c.warren(&[
        "submit",
        "stamp_flaky",
        &never.to_string_lossy(),
        "0",
        "E",
        "--delay",
        "2s",
    ]))
    .trim()
    .to_string();
    let out = ok_stdout(&c.warren(&["cancel", &key]));
    assert_eq!(out.trim(), format!("{key} cancelled"));

    // --at: an RFC 3339 time, 2 s ahead.
    let log = temp_path("later-at");
    let at_ms = now_ms() + 2000;
    let at = warren_core::timing::format_at(at_ms.div_ceil(1000) * 1000);
    let at_key = ok_stdout(&c.warren(&[
        "submit",
        "stamp_flaky",
        &log.to_string_lossy(),
        "0",
        "E",
        "--at",
        &at,
    ]))
    .trim()
    .to_string();
    let out = ok_stdout(&c.warren(&["result", &at_key, "--timeout", "30"]));
    assert_eq!(out.trim(), "1");
    let ran = run_log(&log)[0] as u64;
    let due = warren_core::timing::parse_at(&at).unwrap();
    eprintln!(
        "--at: ran {} ms after its due time",
        ran.saturating_sub(due)
    );
    assert!(ran >= due && ran < due + 1000, "ran at {ran}, due {due}");
    assert!(
        run_log(&never).is_empty(),
        "a task cancelled before due ran"
    );
    let info = ok_stdout(&c.warren(&["info", "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(doc["futures"]["scheduled"], json!(0), "{doc}");

    let bad = c.warren(&["submit", "inc", "1", "--delay", "soon"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--delay") && err.contains("soon"), "{err}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_back_off_by_the_formula_and_only_for_the_listed_errors() {
    let c = Cluster::start_with(one_test_worker()).await;
    let client = c.client().await;
    let policy = RetryPolicy {
        delay_ms: 300,
        backoff: 2.0,
        on: vec!["FlakyError".into()],
        ..RetryPolicy::default()
    };
    let opts = SubmitOptions {
        pure: false,
        retries: 3,
        retry: Some(policy.clone()),
        ..Default::default()
    };
    let log = temp_path("later-backoff");
    let f = client
        .submit_with(
            "stamp_flaky",
            (log.to_string_lossy(), 3, "FlakyError"),
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(f.result().await.unwrap(), json!(4));
    let measured = gaps(&run_log(&log));
    let expected: Vec<i64> = (0..3).map(|r| policy.delay_ms(r, 0.0) as i64).collect();
    assert_eq!(expected, [300, 600, 1200]);
    eprintln!("retry pauses measured {measured:?} ms, formula {expected:?} ms");
    for (m, e) in measured.iter().zip(&expected) {
        assert!(
            *m >= *e && *m < e + 700,
            "pauses {measured:?}, formula {expected:?}"
        );
    }
    assert_eq!(measured.len(), 3, "{measured:?}");

    // An error type the policy does not list is final at once.
    let other = temp_path("later-other");
    let g = client
        .submit_with(
            "stamp_flaky",
            (other.to_string_lossy(), 3, "OtherError"),
            &opts,
        )
        .await
        .unwrap();
    match g.result().await {
        Err(Error::Task { failure, .. }) => assert_eq!(failure.kind, "OtherError"),
        other => panic!("expected OtherError, got {other:?}"),
    }
    assert_eq!(run_log(&other).len(), 1, "not retried");

    // The same through the CLI flags, with jitter: each pause at most the formula's.
    let cli_log = temp_path("later-cli");
    let key = ok_stdout(&c.warren(&[
        "submit",
        "stamp_flaky",
        &cli_log.to_string_lossy(),
        "2",
        "FlakyError",
        "--retries",
        "2",
        "--retry-delay",
        "400ms",
        "--retry-jitter",
        "--retry-on",
        "FlakyError",
    ]))
    .trim()
    .to_string();
    let out = ok_stdout(&c.warren(&["result", &key, "--timeout", "30"]));
    assert_eq!(out.trim(), "3");
    for pause in gaps(&run_log(&cli_log)) {
        assert!(pause < 400 + 700, "jittered pause {pause} ms");
    }
    c.shutdown().await;
}

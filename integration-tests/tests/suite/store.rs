//! The store's Lua scripts on the real Redis at 127.0.0.1:6379 (or
//! `WARREN_REDIS_URL`), each test in a namespace of its own. The decoding and
//! encoding around them are unit-tested in `core` without a server.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::json;
use warren_core::args::future_ref;
use warren_core::messages::{TaskFailure, TaskSpec, Terminal, now_ms};
use warren_core::status::State;
use warren_core::store::{ClaimList, ClaimSlot, Forgotten, Store, Transition, Watched};

/// A dispatch window's claim list of scheduler `id`.
fn list(id: &str) -> ClaimList {
    ClaimList::new(id, ClaimSlot::Dispatch(0))
}

/// An eager claim list of scheduler `id`.
fn eager_list(id: &str) -> ClaimList {
    ClaimList::new(id, ClaimSlot::Eager(0))
}

async fn store() -> Store {
    warren_integration_tests::scratch_store("test-store").await
}

fn spec(key: &str, args: Vec<serde_json::Value>) -> TaskSpec {
    TaskSpec::new(key, "f", args)
}

fn finished(v: serde_json::Value) -> Transition {
    Transition::Terminal(Terminal::Finished { value: v })
}

#[tokio::test]
async fn a_dependent_is_queued_once_all_dependencies_finish_with_values_inlined() {
    let s = store().await;
    let applied = s
        .submit(
            None,
            &[spec("a", vec![json!(1)]), spec("b", vec![json!(2)])],
        )
        .await
        .unwrap();
    assert_eq!(applied.queued, 2);
    // c depends on a twice and on b once: two distinct dependencies.
    let applied = s
        .submit(
            Some("r1"),
            &[spec(
                "c",
                vec![future_ref("a"), json!([future_ref("a"), future_ref("b")])],
            )],
        )
        .await
        .unwrap();
    assert_eq!(applied.queued, 0);
    assert_eq!(
        s.states(&["c".into()]).await.unwrap(),
        vec![Some(State::Waiting)]
    );

    let (_, claimed) = s.claim(&list("me"), "default", 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    s.release(&list("me")).await.unwrap();

    assert_eq!(
        s.complete(&[("a".into(), finished(json!(10)))])
            .await
            .unwrap()
            .queued,
        0
    );
    // A duplicate outcome changes nothing: c's count is not decremented twice.
    assert_eq!(
        s.complete(&[("a".into(), finished(json!(99)))])
            .await
            .unwrap()
            .queued,
        0
    );
    let applied = s
        .complete(&[("b".into(), finished(json!(20)))])
        .await
        .unwrap();
    assert_eq!(applied.queued, 1);

    let (_, claimed) = s.claim(&list("me"), "default", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(c.key, "c");
    assert_eq!(
        c.deps,
        vec![
            ("a".to_string(), Some("10".to_string())),
            ("b".to_string(), Some("20".to_string()))
        ]
    );
    let applied = s
        .complete(&[("c".into(), finished(json!(30)))])
        .await
        .unwrap();
    assert_eq!(applied.notifications.len(), 1);
    assert_eq!(applied.notifications[0].watchers, vec!["r1".to_string()]);
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn errors_propagate_to_dependents_and_later_submissions() {
    let s = store().await;
    s.submit(None, &[spec("a", vec![])]).await.unwrap();
    s.submit(Some("w"), &[spec("b", vec![future_ref("a")])])
        .await
        .unwrap();
    s.submit(Some("w"), &[spec("c", vec![future_ref("b")])])
        .await
        .unwrap();
    let err = TaskFailure::new("ZeroDivisionError", "division by zero", "tb");
    let applied = s
        .complete(&[(
            "a".into(),
            Transition::Terminal(Terminal::Error { error: err.clone() }),
        )])
        .await
        .unwrap();
    let keys: Vec<&str> = applied
        .notifications
        .iter()
        .map(|n| n.key.as_str())
        .collect();
    assert_eq!(keys, vec!["b", "c"]);
    assert!(
        applied
            .notifications
            .iter()
            .all(|n| n.terminal == Terminal::Error { error: err.clone() })
    );
    // Submitted after the failure: fails at once with the same error.
    let applied = s
        .submit(Some("w"), &[spec("d", vec![future_ref("c")])])
        .await
        .unwrap();
    assert_eq!(
        applied.notifications[0].terminal,
        Terminal::Error { error: err }
    );
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn resubmitting_a_key_deduplicates_and_unknown_dependencies_fail() {
    let s = store().await;
    assert_eq!(
        s.submit(None, &[spec("a", vec![])]).await.unwrap().queued,
        1
    );
    assert_eq!(
        s.submit(None, &[spec("a", vec![])]).await.unwrap().queued,
        0
    );
    let applied = s
        .submit(Some("w"), &[spec("b", vec![future_ref("ghost")])])
        .await
        .unwrap();
    match &applied.notifications[0].terminal {
        Terminal::Error { error } => {
            assert_eq!(error.kind, "UnknownFuture");
            assert!(error.message.contains("ghost"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(
        s.watch(None, &["nope".into()]).await.unwrap(),
        vec![Watched::Unknown]
    );
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn completing_the_last_dependency_of_a_lone_task_claims_it_eagerly() {
    let s = store().await;
    let done = |k: &str| {
        (
            k.to_string(),
            Transition::Terminal(Terminal::Finished { value: json!(1) }),
        )
    };
    s.submit(None, &[spec("a", vec![]), spec("b", vec![future_ref("a")])])
        .await
        .unwrap();
    let (_, claimed) = s.claim(&list("d"), "default", 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    s.release(&list("d")).await.unwrap();
    let (applied, _, eager) = s
        .complete_eager(&[done("a")], Some(&eager_list("me")))
        .await
        .unwrap();
    assert_eq!(applied.queued, 1);
    assert_eq!(eager.len(), 1);
    assert_eq!(eager[0].key, "b");
    assert_eq!(eager[0].deps, vec![("a".into(), Some("1".into()))]);
    // Claimed, so the dispatcher does not publish it a second time.
    assert!(
        s.claim(&list("d"), "default", 10)
            .await
            .unwrap()
            .1
            .is_empty()
    );
    s.release(&list("d")).await.unwrap();
    s.release(&eager_list("me")).await.unwrap();

    // Two tasks made runnable at once go the usual way, through the outbox.
    s.submit(
        None,
        &[
            spec("c", vec![future_ref("b")]),
            spec("e", vec![future_ref("b")]),
        ],
    )
    .await
    .unwrap();
    let (applied, _, eager) = s
        .complete_eager(&[done("b")], Some(&eager_list("me")))
        .await
        .unwrap();
    assert_eq!(applied.queued, 2);
    assert!(eager.is_empty());
    assert_eq!(s.claim(&list("d"), "default", 10).await.unwrap().1.len(), 2);
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn a_lone_submit_is_claimed_eagerly_but_not_past_a_waiting_outbox_or_in_a_batch() {
    let s = store().await;
    let me = eager_list("me");
    let done = s
        .submit_eager(Some("w"), &[spec("a", vec![json!(1)])], false, Some(&me))
        .await
        .unwrap();
    assert_eq!(done.applied.queued, 1);
    assert_eq!(done.claimed.len(), 1);
    assert_eq!(done.claimed[0].key, "a");
    assert_eq!(done.claimed[0].args, "[1]");
    assert_eq!(done.epoch, 0);
    // Claimed, so the dispatcher does not publish it a second time; the
    // claim list survives until its release, as the dispatcher's do.
    assert!(
        s.claim(&list("d"), "default", 10)
            .await
            .unwrap()
            .1
            .is_empty()
    );
    s.release(&list("d")).await.unwrap();
    let mut con = s.connection();
    let claimants: Vec<String> = con.smembers(s.keys().claimants()).await.unwrap();
    assert_eq!(claimants, vec![me.as_str().to_string()]);
    s.release(&me).await.unwrap();

    // Two runnable at once, or one behind a task already waiting in the
    // outbox (whose priority or turn comes first), go through the outbox.
    let two = s
        .submit_eager(
            None,
            &[spec("b", vec![]), spec("c", vec![])],
            false,
            Some(&me),
        )
        .await
        .unwrap();
    assert_eq!((two.applied.queued, two.claimed.len()), (2, 0));
    let behind = s
        .submit_eager(None, &[spec("e", vec![])], false, Some(&me))
        .await
        .unwrap();
    assert_eq!((behind.applied.queued, behind.claimed.len()), (1, 0));
    let keys: Vec<String> = s
        .claim(&list("d"), "default", 10)
        .await
        .unwrap()
        .1
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(keys, ["b", "c", "e"]);
    // Without a list nothing is claimed.
    let plain = s
        .submit_eager(None, &[spec("f", vec![])], false, None)
        .await
        .unwrap();
    assert_eq!((plain.applied.queued, plain.claimed.len()), (1, 0));
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn a_dependency_still_in_flight_defers_its_dependent_instead_of_failing_it() {
    let s = store().await;
    let dependents = [
        spec("b", vec![future_ref("a")]),
        spec("c", vec![future_ref("b")]),
    ];
    let (applied, deferred) = s.submit_deferring(Some("w"), &dependents).await.unwrap();
    assert_eq!(deferred, vec!["b".to_string(), "c".to_string()]);
    assert!(applied.notifications.is_empty());
    assert_eq!(s.states(&["b".into()]).await.unwrap(), vec![None]);
    s.submit(None, &[spec("a", vec![])]).await.unwrap();
    let (_, deferred) = s.submit_deferring(Some("w"), &dependents).await.unwrap();
    assert!(deferred.is_empty());
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn a_failed_task_is_retried_and_its_final_error_keeps_every_attempt() {
    let s = store().await;
    let mut t = spec("flaky", vec![]);
    t.retries = 2;
    s.submit(Some("w"), &[t]).await.unwrap();
    let fail = |n: u32, attempt: u32| {
        (
            "flaky".to_string(),
            Transition::Failed {
                error: TaskFailure::new("ValueError", format!("try {n}"), "tb/\"x\""),
                attempt,
            },
        )
    };
    assert_eq!(
        s.claim(&list("me"), "default", 10).await.unwrap().1[0].attempt,
        0
    );
    s.release(&list("me")).await.unwrap();
    assert_eq!(s.complete(&[fail(1, 0)]).await.unwrap().queued, 1);
    // The same failure redelivered does not use up another retry.
    assert_eq!(s.complete(&[fail(1, 0)]).await.unwrap().queued, 0);
    assert_eq!(
        s.claim(&list("me"), "default", 10).await.unwrap().1[0].attempt,
        1
    );
    s.release(&list("me")).await.unwrap();
    assert_eq!(s.complete(&[fail(2, 1)]).await.unwrap().queued, 1);
    let applied = s.complete(&[fail(3, 2)]).await.unwrap();
    match &applied.notifications[0].terminal {
        Terminal::Error { error } => {
            assert_eq!(error.message, "try 3");
            let earlier: Vec<&str> = error.previous.iter().map(|e| e.message.as_str()).collect();
            assert_eq!(earlier, vec!["try 1", "try 2"]);
            assert_eq!(error.previous[0].traceback, "tb/\"x\"");
        }
        other => panic!("expected the final error, got {other:?}"),
    }
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn cancel_reaches_dependents_and_forget_only_takes_final_futures() {
    let s = store().await;
    s.submit(Some("w"), &[spec("a", vec![]), spec("done", vec![])])
        .await
        .unwrap();
    s.submit(Some("w"), &[spec("b", vec![future_ref("a")])])
        .await
        .unwrap();
    s.submit(Some("w"), &[spec("c", vec![future_ref("b")])])
        .await
        .unwrap();
    s.complete(&[("done".into(), finished(json!(1)))])
        .await
        .unwrap();
    let (cancelled, notes) = s.cancel(&["a".into(), "done".into()]).await.unwrap();
    assert_eq!(cancelled, vec!["a", "b", "c"]);
    assert_eq!(notes.len(), 3);
    assert!(notes.iter().all(|n| n.terminal == Terminal::Cancelled));
    assert_eq!(
        s.states(&["done".into()]).await.unwrap(),
        vec![Some(State::Finished)]
    );
    // A cancelled task is not dispatched even though it was in the outbox.
    assert!(
        s.claim(&list("me"), "default", 10)
            .await
            .unwrap()
            .1
            .is_empty()
    );

    s.submit(None, &[spec("p", vec![])]).await.unwrap();
    let f = s
        .forget(&["done".into(), "p".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(
        f,
        vec![Forgotten::Forgotten, Forgotten::Pending, Forgotten::Unknown]
    );
    assert_eq!(s.states(&["done".into()]).await.unwrap(), vec![None]);
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.count("submitted"), 5);
    assert_eq!(stats.count("cancelled"), 3);
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn higher_priorities_are_claimed_first_then_fifo_per_queue() {
    let s = store().await;
    let with = |key: &str, priority: i64, queue: &str| TaskSpec {
        priority,
        queue: queue.into(),
        ..spec(key, vec![])
    };
    s.submit(
        None,
        &[
            with("low1", -5, "default"),
            with("mid1", 0, "default"),
            with("high", 7, "default"),
            with("mid2", 0, "default"),
            with("gpu", 9, "gpu"),
        ],
    )
    .await
    .unwrap();
    let (_, claimed) = s.claim(&list("me"), "default", 3).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, vec!["high", "mid1", "mid2"]);
    s.release(&list("me")).await.unwrap();
    assert_eq!(s.outbox_len("default").await.unwrap(), 1);
    assert_eq!(s.outbox_len("gpu").await.unwrap(), 1);
    // A dead scheduler's claim goes back with its priority.
    let (_, claimed) = s.claim(&list("dead"), "default", 1).await.unwrap();
    assert_eq!(claimed[0].key, "low1");
    s.submit(None, &[with("later", -1, "default")])
        .await
        .unwrap();
    assert_eq!(s.reclaim_orphans().await.unwrap(), 1);
    let (_, claimed) = s.claim(&list("me"), "default", 5).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, vec!["later", "low1"]);
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn claims_of_a_dead_scheduler_return_to_the_outbox() {
    let s = store().await;
    s.submit(None, &[spec("a", vec![]), spec("b", vec![])])
        .await
        .unwrap();
    let (_, claimed) = s.claim(&list("dead"), "default", 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(s.outbox_len("default").await.unwrap(), 0);
    // An unreleased claim is returned again to its owner...
    assert_eq!(
        s.claim(&list("dead"), "default", 10).await.unwrap().1.len(),
        2
    );
    // ...and, with no heartbeat, taken back for the others.
    assert_eq!(s.reclaim_orphans().await.unwrap(), 2);
    let (_, claimed) = s.claim(&list("alive"), "default", 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    s.heartbeat("alive", Duration::from_secs(10)).await.unwrap();
    assert_eq!(s.reclaim_orphans().await.unwrap(), 0);
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn restart_cancels_everything_and_bumps_the_epoch() {
    let s = store().await;
    s.submit(Some("w"), &[spec("a", vec![]), spec("done", vec![])])
        .await
        .unwrap();
    s.complete(&[("done".into(), finished(json!(1)))])
        .await
        .unwrap();
    s.submit(Some("w"), &[spec("b", vec![future_ref("a")])])
        .await
        .unwrap();
    // Another namespace on the same Redis is not touched.
    let other = store().await;
    other.submit(Some("w"), &[spec("a", vec![])]).await.unwrap();
    // A claim in flight is dropped with the outbox.
    s.submit(Some("w"), &[spec("c", vec![])]).await.unwrap();
    let (_, claimed) = s.claim(&list("me"), "default", 10).await.unwrap();
    assert!(!claimed.is_empty());
    let (epoch, notes) = s.restart().await.unwrap();
    assert_eq!(epoch, 1);
    let mut keys: Vec<&str> = notes.iter().map(|n| n.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, vec!["a", "b", "c"]);
    // The counters agree with `status`: every held future is cancelled.
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.count("submitted"), 4, "{stats:?}");
    assert_eq!(stats.count("cancelled"), 4, "{stats:?}");
    assert_eq!(stats.count("finished"), 0, "{stats:?}");
    let mut con = s.connection();
    let claimants: Vec<String> = con.smembers(s.keys().claimants()).await.unwrap();
    assert!(claimants.is_empty(), "{claimants:?}");
    assert_eq!(
        other.states(&["a".into()]).await.unwrap(),
        vec![Some(State::Queued)]
    );
    other.wipe().await.unwrap();
    let states = s
        .states(&["a".into(), "b".into(), "done".into()])
        .await
        .unwrap();
    assert!(states.iter().all(|st| *st == Some(State::Cancelled)));
    assert_eq!(s.outbox_len("default").await.unwrap(), 0);
    assert_eq!(s.epoch().await.unwrap(), 1);
    // Submitting a cancelled key again runs it again, as in dask.
    assert_eq!(
        s.submit(Some("w"), &[spec("done", vec![])])
            .await
            .unwrap()
            .queued,
        1
    );
    assert_eq!(
        s.states(&["done".into()]).await.unwrap(),
        vec![Some(State::Queued)]
    );
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn an_older_namespace_is_migrated_once_to_claimants_and_index() {
    let s = store().await;
    let mut con = s.connection();
    let p = s.prefix().to_string();
    // What a warren without claimants and index left behind: its records,
    // a claim list, and the counters its submits kept.
    let _: () = con.hset(format!("{p}stats"), "submitted", 2).await.unwrap();
    let _: () = con
        .hset(format!("{p}t:old"), "s", "finished")
        .await
        .unwrap();
    let _: () = con.expire(format!("{p}t:old"), 3600).await.unwrap();
    let _: () = con
        .hset(format!("{p}t:running"), "s", "queued")
        .await
        .unwrap();
    let _: () = con
        .rpush(format!("{p}claimed:gone#0"), "running")
        .await
        .unwrap();
    assert_eq!(s.migrate_layout().await.unwrap(), 2);
    let claimants: Vec<String> = con.smembers(s.keys().claimants()).await.unwrap();
    assert_eq!(claimants, vec!["gone#0".to_string()]);
    let finite: f64 = con.zscore(s.keys().index(), "old").await.unwrap();
    assert!(finite.is_finite() && finite > now_ms() as f64, "{finite}");
    let pending: f64 = con.zscore(s.keys().index(), "running").await.unwrap();
    assert!(pending.is_infinite());
    // The orphaned claim comes back through the claimants, with no SCAN.
    assert_eq!(s.reclaim_orphans().await.unwrap(), 1);
    // Done once: a second start does nothing.
    assert_eq!(s.migrate_layout().await.unwrap(), 0);
    s.wipe().await.unwrap();
}

#[tokio::test]
async fn a_new_namespace_starts_on_the_current_layout_without_scanning() {
    let s = store().await;
    let mut con = s.connection();
    let p = s.prefix().to_string();
    // A record with no counters beside it: no warren's submit wrote it. A
    // scan would index it; a new namespace is not scanned at all.
    let _: () = con
        .hset(format!("{p}t:stray"), "s", "finished")
        .await
        .unwrap();
    assert_eq!(s.migrate_layout().await.unwrap(), 0);
    let layout: u64 = con.get(format!("{p}layout")).await.unwrap();
    assert_eq!(layout, 2);
    let indexed: Option<f64> = con.zscore(s.keys().index(), "stray").await.unwrap();
    assert_eq!(indexed, None, "the start scanned the server");
    s.wipe().await.unwrap();
}

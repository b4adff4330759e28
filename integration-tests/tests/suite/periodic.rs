//! Periodic schedules (issue 37): every tick runs exactly once while any
//! scheduler is alive, however many run and across scheduler kills, and a
//! tick missed while none was alive runs once or is skipped, by policy.

use std::time::Duration;

use warren_core::messages::now_ms;
use warren_integration_tests::{
    Cluster, ClusterOptions, ok_stdout, run_log, scratch_store, temp_path,
};

/// The ticks (ms) of schedule `name`'s runs, oldest first, from `warren runs`.
fn ticks(c: &Cluster, name: &str) -> Vec<u64> {
    let out = ok_stdout(&c.warren(&["runs", name]));
    let mut ticks: Vec<u64> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|k| k.rsplit_once('-').and_then(|(_, t)| t.parse().ok()))
        .collect();
    ticks.sort_unstable();
    ticks
}

fn every(c: &Cluster, name: &str, log: &std::path::Path, missed: &str) {
    let out = ok_stdout(&c.warren(&[
        "every",
        "1s",
        "--name",
        name,
        "--missed",
        missed,
        "stamp_flaky",
        &log.to_string_lossy(),
        "0",
        "E",
    ]));
    assert!(
        out.starts_with(&format!("schedule {name}: next run 20")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tick_runs_once_with_two_schedulers_and_one_killed_and_restarted() {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 2,
        schedulers: 2,
        test_worker: true,
        ..Default::default()
    })
    .await;
    let log = temp_path("periodic-tick");
    every(&c, "tick", &log, "run-once");
    tokio::time::sleep(Duration::from_secs(10)).await;
    c.stop_scheduler();
    tokio::time::sleep(Duration::from_secs(8)).await;
    c.start_scheduler();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let listed = ok_stdout(&c.warren(&["schedules", "list"]));
    assert!(listed.starts_with("tick every 1s stamp_flaky["), "{listed}");
    assert_eq!(
        ok_stdout(&c.warren(&["schedules", "remove", "tick"])).trim(),
        "schedule tick removed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ticks = ticks(&c, "tick");
    let runs = run_log(&log);
    eprintln!(
        "30 s of a 1-s schedule on 2 schedulers, one killed for 8 s: {} ticks, {} runs",
        ticks.len(),
        runs.len()
    );
    assert!(ticks.len() >= 28, "{} ticks: {ticks:?}", ticks.len());
    let steps: Vec<u64> = ticks.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        steps.iter().all(|&s| s == 1000),
        "every tick once, none missed: steps {steps:?}"
    );
    assert_eq!(runs.len(), ticks.len(), "one run per tick");
    // Each run started soon after its tick.
    let mut late: Vec<i64> = runs
        .iter()
        .zip(&ticks)
        .map(|(run, tick)| run - *tick as i64)
        .collect();
    late.sort_unstable();
    eprintln!(
        "run after its tick: median {} ms, worst {} ms",
        late[late.len() / 2],
        late[late.len() - 1]
    );
    assert!(late[late.len() - 1] < 1000, "{late:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_missed_with_no_scheduler_alive_runs_once_or_is_skipped() {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 1,
        test_worker: true,
        ..Default::default()
    })
    .await;
    let (once_log, skip_log) = (temp_path("periodic-once"), temp_path("periodic-skip"));
    every(&c, "once", &once_log, "run-once");
    every(&c, "skip", &skip_log, "skip");
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.stop_scheduler();
    let stopped = now_ms();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let restarted = now_ms();
    c.start_scheduler();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = ok_stdout(&c.warren(&["schedules", "pause", "once"]));
    assert_eq!(out.trim(), "schedule once paused");
    c.warren(&["schedules", "pause", "skip"]);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Runs of ticks missed while no scheduler ran: started after the
    // restart for a tick more than 5 s before it. One slot, so the runs
    // started in the order of their ticks.
    let late_runs = |ticks: &[u64], log: &std::path::Path| {
        let runs = run_log(log);
        assert_eq!(
            runs.len(),
            ticks.len(),
            "one run per tick: {ticks:?} {runs:?}"
        );
        ticks
            .iter()
            .zip(&runs)
            .filter(|&(&t, &r)| r as u64 >= restarted && t + 5000 < restarted)
            .count()
    };
    let (once, skip) = (ticks(&c, "once"), ticks(&c, "skip"));
    assert_eq!(
        late_runs(&once, &once_log),
        1,
        "run-once: one run for the missed ticks: {once:?}"
    );
    assert_eq!(
        late_runs(&skip, &skip_log),
        0,
        "skip: no run for them: {skip:?}"
    );
    assert!(stopped < restarted);
    for t in [&once, &skip] {
        assert!(
            t.iter().any(|&x| x > restarted),
            "ticks go on after recovery: {t:?}"
        );
    }
    // Paused: nothing more runs.
    let n = run_log(&skip_log).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(run_log(&skip_log).len(), n);
    let listed = ok_stdout(&c.warren(&["schedules", "list"]));
    assert!(listed.contains("paused"), "{listed}");
    let bad = c.warren(&["cron", "61 * * * *", "--name", "x", "inc", "1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("minute"));
    c.shutdown().await;
}

/// A schedule Redis holds is input like any other: one forged with a period
/// that overflows the next tick, or a cron step past `u32`, pauses itself and
/// queues nothing; it neither panics the scheduler nor wraps to a wrong tick.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_schedule_in_redis_is_paused_not_computed_with() {
    let s = scratch_store("test-periodic").await;
    let mut con = s.connection();
    let forged = [
        (
            "huge",
            r#"{"func":"inc","args":[1],"queue":"default","every_ms":9223372036854775807,"start_ms":3,"missed":"run-once"}"#,
        ),
        (
            "cron",
            r#"{"func":"inc","args":[1],"queue":"default","cron":"5/4294967295 * * * *","start_ms":0,"missed":"run-once"}"#,
        ),
        (
            "late",
            r#"{"func":"inc","args":[1],"queue":"default","every_ms":1000,"start_ms":18446744073709551615,"missed":"skip"}"#,
        ),
    ];
    for (name, spec) in forged {
        let _: () = redis::pipe()
            .hset(s.keys().schedules(), name, spec)
            .zadd(s.keys().schedule_next(), name, 1)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let queued = s.tick_schedules(10).await.unwrap();
    // The valid cron (minute 5 only) runs its missed tick once; the two
    // forged periods run nothing and are paused.
    assert_eq!(queued, 1);
    let listed = s.list_schedules().await.unwrap();
    let paused: Vec<(&str, bool)> = listed
        .iter()
        .map(|l| (l.name.as_str(), l.schedule.paused))
        .collect();
    assert_eq!(paused, [("cron", false), ("huge", true), ("late", true)]);
    assert!(listed[0].next_ms.is_some_and(|t| t % 3_600_000 == 300_000));
    s.wipe().await.unwrap();
}

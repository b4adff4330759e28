//! What people and scripts see: a progress bar on a terminal (and nothing
//! extra in a pipe), and `--json` on every command.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_integration_tests::{Cluster, bin, ok_stdout};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(ok_stdout(out).trim()).expect("one JSON document")
}

#[tokio::test(flavor = "multi_thread")]
async fn gather_shows_a_progress_bar_on_a_terminal_and_stays_quiet_in_a_pipe() {
    let c = Cluster::start(1, 2).await;
    let keys: Vec<String> =
        ok_stdout(&c.warren(&["map", "--no-pure", "sleep", "1", "1", "1.5", "1.5"]))
            .lines()
            .map(str::to_string)
            .collect();

    // A real terminal: tmux runs `warren gather`, and we read its screen.
    let session = format!("warren-progress-{}", std::process::id());
    let command = format!(
        "WARREN_NAMESPACE={} WARREN_KEY_FILE={} {} gather {}; sleep 30",
        c.settings.namespace,
        warren_integration_tests::NO_KEY,
        bin("warren").display(),
        keys.join(" ")
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "20",
            &command,
        ])
        .status()
        .expect("tmux (apt-get install tmux)");
    assert!(started.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut screens = Vec::new();
    let mut seen_bar = false;
    let mut seen_values = false;
    while Instant::now() < deadline && !(seen_bar && seen_values) {
        let cap = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .expect("tmux capture-pane");
        let screen = String::from_utf8_lossy(&cap.stdout).into_owned();
        seen_bar |= screen.contains("/4 done") && screen.contains("errors");
        seen_values |= screen.lines().filter(|l| l.trim() == "null").count() == 4;
        screens.push(screen);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert!(
        seen_bar,
        "no progress bar on the terminal; screens:\n{}",
        screens.join("\n----\n")
    );
    assert!(
        seen_values,
        "values not printed; last screen:\n{}",
        screens.last().cloned().unwrap_or_default()
    );

    // A pipe: values only, and nothing on stderr.
    let out = c.warren_with_stdin(&["gather", "-"], &keys.join("\n"));
    assert_eq!(ok_stdout(&out).lines().count(), 4);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_speaks_json() {
    let c = Cluster::start(1, 2).await;
    let key = json(&c.warren(&["--json", "submit", "inc", "1"]))["key"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = json(&c.warren(&["--json", "submit", "goes_wrong"]))["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mapped = json(&c.warren(&["--json", "map", "inc", "1", "2"]));
    assert_eq!(mapped["keys"].as_array().unwrap().len(), 2);

    let r = json(&c.warren(&["--json", "result", &key]));
    assert_eq!(r["status"], "finished");
    assert_eq!(r["value"], 2);

    let out = c.warren(&["--json", "gather", &key, &bad]);
    assert_eq!(out.status.code(), Some(1));
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["results"][0]["value"], 2);
    assert_eq!(g["results"][1]["status"], "error");
    assert_eq!(g["results"][1]["error"]["type"], "ZeroDivisionError");
    assert!(
        g["results"][1]["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("goes_wrong")
    );

    let st = json(&c.warren(&["--json", "status", &key]));
    assert_eq!(st["futures"][0]["status"], "finished");
    let w = json(&c.warren(&["--json", "wait", &key, &bad]));
    assert_eq!(w["done"].as_array().unwrap().len(), 2);
    let done: Vec<Value> = ok_stdout(&c.warren(&["--json", "gather", "--as-completed", &key]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(done[0]["value"], 2);

    tokio::time::sleep(Duration::from_millis(5500)).await;
    let workers = json(&c.warren(&["--json", "workers"]));
    assert_eq!(workers["workers"][0]["concurrency"], 2);
    let info = json(&c.warren(&["--json", "info"]));
    // `map inc 1 2` reuses the pure key of `submit inc 1`: two distinct futures.
    assert_eq!(info["futures"]["submitted"], 3);
    assert_eq!(info["futures"]["finished"], 2);
    assert_eq!(info["futures"]["error"], 1);
    let f = json(&c.warren(&["--json", "forget", &key]));
    assert_eq!(f["results"][0]["result"], "forgotten");
    let cancelled = json(&c.warren(&["--json", "cancel", &bad]));
    assert_eq!(cancelled["futures"][0]["status"], "error");
    let r = json(&c.warren(&["--json", "restart"]));
    assert_eq!(r["workers_expected"], 1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_workers_their_running_tasks_and_recent_errors() {
    let c = Cluster::start(1, 2).await;
    let slow = ok_stdout(&c.warren(&["submit", "sleep", "20"]));
    let bad = ok_stdout(&c.warren(&["submit", "goes_wrong"]));
    let _ = c.warren(&["result", bad.trim()]);
    tokio::time::sleep(Duration::from_millis(5500)).await; // a heartbeat with the running task
    let screen = ok_stdout(&c.warren(&["top", "--once"]));
    assert!(screen.contains("1 pending"), "{screen}");
    assert!(screen.contains("1 error"), "{screen}");
    assert!(
        screen.contains(&c.topology().work_queue("default")),
        "{screen}"
    );
    let worker_line = screen
        .lines()
        .find(|l| l.contains(slow.trim()))
        .unwrap_or_else(|| panic!("the running task is not shown:\n{screen}"));
    assert!(worker_line.contains("1/2"), "{worker_line}");
    assert!(
        screen.contains(&format!(
            "{}  ZeroDivisionError: division by zero",
            bad.trim()
        )),
        "{screen}"
    );
    c.shutdown().await;
}

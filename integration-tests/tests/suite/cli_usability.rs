//! What a new user trips over in the CLI (issue 15), each against a real
//! stack: options anywhere on the line, bounded waits that say what to check,
//! Ctrl-C that says what it leaves, unknown keys and functions named, JSON
//! errors, one rule for exit codes, honest counters and queues, help, and a
//! local stack that keeps its logs out of the terminal.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_integration_tests::{Cluster, bin, fresh_settings, ok_stdout, run_cli};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines(out: &std::process::Output) -> Vec<String> {
    ok_stdout(out).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn options_mean_the_same_anywhere_on_the_line() {
    let c = Cluster::start(1, 2).await;
    // Before the fix `--no-pure` became a second argument of sleep().
    let a = ok_stdout(&c.warren(&["submit", "sleep", "0.1", "--no-pure"]));
    let b = ok_stdout(&c.warren(&["submit", "sleep", "0.1", "--no-pure"]));
    assert_ne!(a, b, "--no-pure after the arguments must make a new future");
    let out = ok_stdout(&c.warren(&["gather", a.trim(), b.trim(), "--timeout", "30"]));
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["null", "null"]);
    let keys = lines(&c.warren(&["map", "inc", "1", "2", "3", "--no-pure"]));
    assert_eq!(keys.len(), 3, "{keys:?}");
    let values = ok_stdout(&c.warren_with_stdin(&["gather", "-"], &keys.join("\n")));
    assert_eq!(values.lines().collect::<Vec<_>>(), vec!["2", "3", "4"]);
    // Negative numbers stay arguments; after `--` everything is an argument.
    let k = ok_stdout(&c.warren(&["submit", "add_them", "-5", "-1.5"]));
    assert_eq!(ok_stdout(&c.warren(&["result", k.trim()])).trim(), "-6.5");
    let k = ok_stdout(&c.warren(&["submit", "identity", "--", "--no-pure"]));
    assert_eq!(
        ok_stdout(&c.warren(&["result", k.trim()])).trim(),
        "\"--no-pure\""
    );
    // --help after the arguments shows help and submits nothing.
    let before = submitted(&c).await;
    let help = c.warren(&["submit", "inc", "1", "--help"]);
    assert!(ok_stdout(&help).contains("Task options:"));
    let after = submitted(&c).await;
    assert_eq!(before, after, "--help submitted a task");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_without_a_scheduler_gives_up_in_bounded_time_and_says_what_to_check() {
    // A namespace nobody serves: a mistyped one.
    let ns = fresh_settings("typo").namespace;
    let started = Instant::now();
    let out = run_cli(
        &ns,
        &["submit", "--allow-unserved", "inc", "1"],
        "",
        &[("WARREN_REQUEST_TIMEOUT_SECS", "6")],
    );
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(err.contains("no scheduler consumes"), "{err}");
    assert!(err.contains("request_timeout_secs"), "{err}");
    assert!(err.contains(&ns), "the message names the namespace: {err}");
    assert!(!err.contains('\x1b'), "colour codes in a pipe: {err:?}");
    warren_integration_tests::cleanup(&fresh_settings_for(&ns)).await;
}

fn fresh_settings_for(ns: &str) -> warren_core::Settings {
    warren_core::Settings::load(None, &[("namespace", ns.to_string())]).expect("settings")
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_gather_says_what_is_pending_and_where_the_keys_are() {
    let c = Cluster::start(1, 1).await;
    let keys = lines(&c.warren(&["map", "--no-pure", "sleep", "0.1", "30", "30"]));
    let mut child = Command::new(bin("warren"))
        .args(["gather", "-"])
        .env("WARREN_NAMESPACE", &c.settings.namespace)
        .env("WARREN_KEY_FILE", warren_integration_tests::NO_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warren gather");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(keys.join("\n").as_bytes()).unwrap();
    }
    // Let the first (short) task finish, then interrupt.
    let client = c.client().await;
    client.future(&keys[0]).result().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("2 of 3 futures still pending"), "{err}");
    let file = err
        .lines()
        .find_map(|l| l.strip_prefix("Their keys are in "))
        .and_then(|l| l.strip_suffix(':'))
        .unwrap_or_else(|| panic!("no file named: {err}"));
    let saved = std::fs::read_to_string(file).unwrap();
    assert_eq!(saved.lines().collect::<Vec<_>>(), keys[1..].to_vec());
    assert!(err.contains(&format!("warren cancel - < {file}")), "{err}");
    // The file works as the message says.
    let cancelled = c.warren_with_stdin(&["cancel", "-"], &saved);
    assert!(ok_stdout(&cancelled).contains("cancelled"));
    let _ = std::fs::remove_file(file);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_keys_are_named_and_do_not_hide_the_known_ones() {
    let c = Cluster::start(1, 1).await;
    let k = ok_stdout(&c.warren(&["submit", "inc", "1"]));
    let k = k.trim();
    ok_stdout(&c.warren(&["result", k]));
    let out = c.warren(&["status", k, "nosuchkey"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec![format!("{k} finished"), "nosuchkey unknown".to_string()]
    );
    assert!(
        stderr(&out).contains("1 of 2 keys unknown"),
        "{}",
        stderr(&out)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misspelled_function_is_refused_at_submit_with_the_closest_name() {
    let c = Cluster::start(1, 1).await;
    let out = c.warren(&["submit", "count_primes_lesss_than", "5000000"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "a key was printed");
    assert!(
        err.contains("Did you mean \"count_primes_less_than\"?"),
        "{err}"
    );
    assert!(err.contains("inc") && err.contains("sleep"), "{err}");
    assert_eq!(submitted(&c).await, 0);
    let out = c.warren(&["map", "incc", "1", "2"]);
    assert_eq!(out.status.code(), Some(2));
    // A worker that comes later: --allow-unserved and --detach send anyway.
    let later = ok_stdout(&c.warren(&["submit", "--allow-unserved", "later_fn", "1"]));
    assert!(later.starts_with("later_fn-"), "{later}");
    let detached = ok_stdout(&c.warren(&["submit", "--detach", "later_fn", "2"]));
    assert!(detached.starts_with("later_fn-"), "{detached}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_errors_are_json_and_status_has_one_status_field() {
    let c = Cluster::start(1, 2).await;
    let out = c.warren(&["--json", "result", "nosuchkey"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["error"]["kind"], "unknown_future");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nosuchkey")
    );
    let out = c.warren(&["--json", "submit", "nosuchfn", "1"]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["error"]["kind"], "unserved_function");

    let slow = ok_stdout(&c.warren(&["submit", "--no-pure", "sleep", "20"]));
    let done = ok_stdout(&c.warren(&["submit", "inc", "1"]));
    ok_stdout(&c.warren(&["result", done.trim()]));
    let out = c.warren(&["--json", "status", done.trim(), slow.trim(), "gone"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = doc["futures"].as_array().unwrap();
    assert_eq!(
        f[0],
        serde_json::json!({"key": done.trim(), "status": "finished"})
    );
    assert_eq!(f[1]["status"], "pending");
    assert!(
        ["queued", "processing"].contains(&f[1]["detail"].as_str().unwrap()),
        "{doc}"
    );
    assert!(f[1].get("state").is_none(), "{doc}");
    assert_eq!(
        f[2],
        serde_json::json!({"key": "gone", "status": "unknown"})
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_exit_3_everywhere_and_failures_exit_1() {
    let c = Cluster::start(1, 1).await;
    let slow = ok_stdout(&c.warren(&["submit", "--no-pure", "sleep", "20"]));
    let slow = slow.trim();
    for cmd in [
        vec!["result", "--timeout", "1", slow],
        vec!["gather", "--timeout", "1", slow],
        vec!["wait", "--timeout", "1", slow],
    ] {
        let out = c.warren(&cmd);
        assert_eq!(out.status.code(), Some(3), "{cmd:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("timed out after 1s"),
            "{}",
            stderr(&out)
        );
    }
    let bad = ok_stdout(&c.warren(&["submit", "goes_wrong"]));
    assert_eq!(c.warren(&["result", bad.trim()]).status.code(), Some(1));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn info_agrees_with_status_after_restart_and_shows_the_outbox() {
    let c = Cluster::start(1, 1).await;
    let keys = lines(&c.warren(&["map", "inc", "1", "2", "3"]));
    ok_stdout(&c.warren_with_stdin(&["gather", "-"], &keys.join("\n")));
    ok_stdout(&c.warren(&["restart"]));
    let st = ok_stdout(&c.warren_with_stdin(&["status", "-"], &keys.join("\n")));
    assert!(st.lines().all(|l| l.ends_with(" cancelled")), "{st}");
    let info: Value = serde_json::from_slice(&c.warren(&["--json", "info"]).stdout).unwrap();
    assert_eq!(info["futures"]["finished"], 0, "{info}");
    assert_eq!(info["futures"]["cancelled"], 3, "{info}");
    assert_eq!(info["futures"]["pending"], 0, "{info}");

    // A backlog on a queue nobody serves waits in the outbox: info shows it.
    let args: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut map = vec!["map", "--queue", "nobody", "--allow-unserved", "inc"];
    map.extend(args.iter().map(String::as_str));
    ok_stdout(&c.warren(&map));
    let work = c.topology().work_queue("nobody");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (ready, outbox) = loop {
        let info: Value = serde_json::from_slice(&c.warren(&["--json", "info"]).stdout).unwrap();
        let q = info["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == work.as_str())
            .cloned()
            .unwrap_or_default();
        let ready = q["messages"].as_u64().unwrap_or(0);
        let outbox = q["outbox"].as_u64().unwrap_or(0);
        if ready > 0 || Instant::now() > deadline {
            break (ready, outbox);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ready > 0, "nothing reached {work}");
    assert!(outbox > 0 && outbox < 300, "outbox {outbox}");
    let text = ok_stdout(&c.warren(&["info"]));
    let row = text
        .lines()
        .find(|l| l.starts_with(&work))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains(&outbox.to_string()), "{text}");
    assert!(text.contains("OUTBOX"), "{text}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn type_errors_speak_python() {
    let c = Cluster::start(1, 1).await;
    let k = ok_stdout(&c.warren(&["submit", "count_primes_less_than", "5e6"]));
    let out = c.warren(&["result", k.trim()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("count_primes_less_than() argument 1 must be int, got float 5000000.0"),
        "{err}"
    );
    assert!(!err.contains("i64"), "{err}");
    // Numbers JSON cannot carry are refused before anything is sent.
    for n in ["1e400", "18446744073709551615"] {
        let out = c.warren(&["submit", "inc", n]);
        assert_eq!(out.status.code(), Some(2), "{n}");
        assert!(stderr(&out).contains(n), "{}", stderr(&out));
    }
    c.shutdown().await;
}

#[test]
fn help_lists_every_stock_function_and_every_command_has_examples_where_needed() {
    let out = Command::new(bin("warren")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    for name in warren_worker::stock::registry().names() {
        assert!(help.contains(name), "`warren --help` leaves out {name}");
    }
    assert!(help.contains("Exit codes:"), "{help}");
    for cmd in ["submit", "map", "gather", "result"] {
        let out = Command::new(bin("warren"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:"), "`warren {cmd} --help`:\n{text}");
        assert!(!text.contains("(default 0)"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn warren_up_runs_a_stack_in_the_background_with_plain_log_files() {
    let ns = fresh_settings("up").namespace;
    let dir = std::env::temp_dir().join(format!("warren-up-test-{ns}"));
    let dir_s = dir.display().to_string();
    let out = run_cli(
        &ns,
        &["up", "--workers", "2", "--dir", &dir_s],
        "",
        &[("RUST_LOG", "info,lapin=off")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = ok_stdout(&out);
    assert!(said.contains("2 workers"), "{said}");
    // A second `up` refuses instead of starting another stack.
    let again = run_cli(&ns, &["up", "--dir", &dir_s], "", &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already runs"),
        "{}",
        stderr(&again)
    );
    // The stack serves: a task runs.
    let k = ok_stdout(&run_cli(&ns, &["submit", "inc", "41"], "", &[]));
    let v = ok_stdout(&run_cli(
        &ns,
        &["result", "--timeout", "30", k.trim()],
        "",
        &[],
    ));
    assert_eq!(v.trim(), "42");
    let down = run_cli(&ns, &["down", "--dir", &dir_s], "", &[]);
    assert!(
        ok_stdout(&down).contains("stopped 3 processes"),
        "{}",
        stderr(&down)
    );
    for log in ["scheduler.log", "worker-1.log", "worker-2.log"] {
        let text = std::fs::read_to_string(dir.join(log)).unwrap();
        assert!(!text.is_empty(), "{log} is empty");
        assert!(!text.contains('\x1b'), "colour codes in {log}: {text:?}");
    }
    let again = run_cli(&ns, &["down", "--dir", &dir_s], "", &[]);
    assert_eq!(again.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
    warren_integration_tests::cleanup(&fresh_settings_for(&ns)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_cannot_move_says_why_and_so_does_its_timeout() {
    // No live worker: the task stays queued.
    let mut c = Cluster::start(0, 1).await;
    let k = ok_stdout(&c.warren(&["submit", "--allow-unserved", "inc", "1"]));
    let out = c.warren(&["result", "--timeout", "8", k.trim()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("warning: still waiting: no live worker"),
        "{err}"
    );
    assert!(
        err.lines().last().unwrap_or("").contains("no live worker"),
        "the timeout does not say why: {err}"
    );
    // No scheduler: the worker's report waits in the results queue.
    c.stop_scheduler();
    c.start_worker(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.queue_depth(&c.topology().results_queue()).await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = c.warren(&["result", "--timeout", "8", k.trim()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no scheduler serves"), "{err}");
    assert!(
        err.contains("worker reports wait in its results queue"),
        "{err}"
    );
    // A scheduler again: the report is applied and the value arrives.
    c.start_scheduler();
    assert_eq!(
        ok_stdout(&c.warren(&["result", "--timeout", "30", k.trim()])).trim(),
        "2"
    );
    c.shutdown().await;
}

/// The namespace's count of submitted tasks.
async fn submitted(c: &Cluster) -> u64 {
    c.client()
        .await
        .info()
        .await
        .unwrap()
        .stats
        .count("submitted")
}

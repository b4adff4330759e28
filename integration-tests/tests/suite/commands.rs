//! Programs as tasks (issue 12), end to end through the `warren` CLI: DAGs
//! of programs and functions, what a worker allows, output limits, time
//! limits and cancels that end a process group, a worker killed mid-program.

use std::time::{Duration, Instant};

use warren_integration_tests::{Cluster, ClusterOptions, ok_stdout};

const ALLOWED: [&str; 4] = ["seq", "sh", "echo", "yes"];

/// A scheduler and `workers` stock workers that allow [`ALLOWED`].
async fn programs(workers: usize, env: &[(&str, &str)]) -> Cluster {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .await;
    for _ in 0..workers {
        let mut args = Vec::new();
        for p in ALLOWED {
            args.extend(["--allow-command", p]);
        }
        // The tests' own variable and directories (`/no/such` so that a
        // missing directory is told apart from one not allowed).
        args.extend([
            "--allow-env",
            "FOO",
            "--allow-cwd",
            "/tmp",
            "--allow-cwd",
            "/no/such",
        ]);
        c.start_worker_with(1, &args);
    }
    c.wait_for_workers(workers as u32).await;
    c
}

fn key_of(out: &std::process::Output) -> String {
    ok_stdout(out).trim().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Processes whose command line contains `marker`.
fn running_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, s)| s.starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            out.push(pid);
        }
    }
    out
}

async fn until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn programs_and_functions_chain_into_one_dag() {
    let c = programs(1, &[]).await;
    let seq = key_of(&c.warren(&["submit", "--cmd", "--", "seq", "1", "100"]));
    assert!(seq.starts_with("seq-"), "{seq}");
    let count = key_of(&c.warren(&[
        "submit",
        "--cmd",
        "--json-stdout",
        "--",
        "sh",
        "-c",
        "printf %s \"$1\" | wc -l",
        "sh",
        &format!("@{seq}"),
    ]));
    let plus_one = key_of(&c.warren(&["submit", "inc", &format!("@{count}")]));
    assert_eq!(ok_stdout(&c.warren(&["result", &plus_one])).trim(), "101");
    // A program's value is its standard output, as a string.
    let shown = ok_stdout(&c.warren(&["result", &seq]));
    let value: String = serde_json::from_str(shown.trim()).expect("a JSON string");
    assert_eq!(value.lines().count(), 100);
    // warren logs: what it wrote.
    let logs = c.warren(&["logs", &seq]);
    assert_eq!(ok_stdout(&logs), value);
    // A function's value into a program.
    let f = key_of(&c.warren(&["submit", "inc", "41"]));
    let echoed = key_of(&c.warren(&[
        "submit",
        "--cmd",
        "--",
        "echo",
        &format!("@{f}"),
        "@@literal",
    ]));
    assert_eq!(
        ok_stdout(&c.warren(&["result", &echoed])).trim(),
        "\"42 @literal\\n\""
    );
}

#[tokio::test]
async fn map_fills_braces_from_values_and_lines() {
    let c = programs(1, &[]).await;
    let keys = ok_stdout(&c.warren(&[
        "map",
        "--cmd",
        "--",
        "sh",
        "-c",
        "echo \"<$1>\"",
        "sh",
        "{}",
        ":::",
        "a",
        "b c",
        "d",
    ]));
    let out = c.warren_with_stdin(&["gather", "-"], &keys);
    assert_eq!(ok_stdout(&out), "\"<a>\\n\"\n\"<b c>\\n\"\n\"<d>\\n\"\n");
    let keys = ok_stdout(&c.warren_with_stdin(
        &["map", "--cmd", "--each-line", "-", "--", "echo", "x"],
        "1\n\n2\n",
    ));
    assert_eq!(keys.lines().count(), 2, "blank lines are skipped");
    let out = c.warren_with_stdin(&["gather", "-"], &keys);
    assert_eq!(ok_stdout(&out), "\"x 1\\n\"\n\"x 2\\n\"\n");
}

#[tokio::test]
async fn the_environment_is_clean_plus_the_tasks_own() {
    let c = programs(1, &[]).await;
    let k = key_of(&c.warren(&[
        "submit",
        "--cmd",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo \"$FOO $WARREN_TASK_KEY ${HOME:-nohome} $(pwd)\"",
    ]));
    let v = ok_stdout(&c.warren(&["result", &k]));
    assert_eq!(v.trim(), format!("\"bar {k} nohome /tmp\\n\""));
}

#[tokio::test]
async fn what_no_worker_allows_is_refused_naming_the_flag() {
    let c = programs(1, &[]).await;
    let out = c.warren(&["submit", "--cmd", "--", "rm", "-rf", "/tmp/nothing"]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("allows program \"rm\"") && e.contains("--allow-command rm"),
        "{e}"
    );
    // Sent anyway, the worker refuses it itself.
    let k = key_of(&c.warren(&[
        "submit",
        "--allow-unserved",
        "--cmd",
        "--",
        "rm",
        "/tmp/nothing",
    ]));
    let out = c.warren(&["result", &k]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("CommandNotAllowed"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn failures_name_the_status_and_show_stderr() {
    let c = programs(1, &[("WARREN_MAX_OUTPUT_BYTES", "10000")]).await;
    let k = key_of(&c.warren(&["submit", "--cmd", "--", "sh", "-c", "echo boom >&2; exit 3"]));
    let e = stderr(&c.warren(&["result", &k]));
    assert!(
        e.contains("CommandFailed: sh exited with status 3") && e.contains("boom"),
        "{e}"
    );
    let k = key_of(&c.warren(&["submit", "--cmd", "--", "yes"]));
    let e = stderr(&c.warren(&["result", &k]));
    assert!(
        e.contains("OutputTooLarge") && e.contains("10000 bytes"),
        "{e}"
    );
    let k = key_of(&c.warren(&["submit", "--cmd", "--cwd", "/no/such/dir", "--", "echo"]));
    let e = stderr(&c.warren(&["result", &k]));
    assert!(
        e.contains("/no/such/dir (--cwd) does not exist on worker"),
        "{e}"
    );
}

#[tokio::test]
async fn a_time_limit_and_a_cancel_end_the_whole_process_group() {
    let c = programs(1, &[]).await;
    let marker = format!("sleep 61 # {}", c.settings.namespace);
    let script = format!("trap '' TERM; sh -c '{marker}'; echo never");
    let k = key_of(&c.warren(&[
        "submit",
        "--cmd",
        "--timeout",
        "1",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    let e = stderr(&c.warren(&["result", &k]));
    assert!(e.contains("TimeoutError"), "{e}");
    until(
        Duration::from_secs(10),
        "the program's group to end",
        || running_with(&marker).is_empty(),
    )
    .await;

    for (secs, stop) in [("62", "cancel"), ("63", "restart")] {
        let marker = format!("sleep {secs} # {}", c.settings.namespace);
        let k = key_of(&c.warren(&["submit", "--cmd", "--", "sh", "-c", &marker]));
        until(Duration::from_secs(10), "the program to start", || {
            !running_with(&marker).is_empty()
        })
        .await;
        let args: Vec<&str> = if stop == "cancel" {
            vec!["cancel", &k]
        } else {
            vec!["restart"]
        };
        ok_stdout(&c.warren(&args));
        until(
            Duration::from_secs(10),
            &format!("a {stop} to end the program"),
            || running_with(&marker).is_empty(),
        )
        .await;
        let out = c.warren(&["result", &k]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
}

#[tokio::test]
async fn allowed_commands_may_come_from_the_environment() {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        env: vec![("WARREN_ALLOWED_COMMANDS".into(), "echo,/usr/bin/*".into())],
        ..Default::default()
    })
    .await;
    c.start_worker(1);
    c.wait_for_workers(1).await;
    let k = key_of(&c.warren(&["submit", "--cmd", "--", "/usr/bin/env"]));
    let env = format!("PATH=/usr/local/bin:/usr/bin:/bin\nWARREN_TASK_KEY={k}\n");
    let shown: String =
        serde_json::from_str(ok_stdout(&c.warren(&["result", &k])).trim()).expect("a JSON string");
    assert_eq!(shown, env);
    let k = key_of(&c.warren(&["submit", "--cmd", "--", "echo", "hi"]));
    assert_eq!(ok_stdout(&c.warren(&["result", &k])).trim(), "\"hi\\n\"");
    let out = c.warren(&["submit", "--cmd", "--", "env"]);
    assert!(
        stderr(&out).contains("they allow /usr/bin/*, echo"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_worker_killed_mid_program_leaves_no_orphan_and_the_task_runs_again() {
    let mut c = programs(2, &[]).await;
    let marker = format!("{}-mark", c.settings.namespace);
    let script = format!("sleep 2 # {marker}\necho done");
    let k = key_of(&c.warren(&["submit", "--cmd", "--", "sh", "-c", &script]));
    until(Duration::from_secs(10), "the program to start", || {
        !running_with(&marker).is_empty()
    })
    .await;
    let program = running_with(&marker)[0];
    // The program's parent chain leads to one of the workers: kill that one.
    let workers = c.pids();
    let mut p = program;
    let worker = loop {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).expect("a live process");
        let ppid: u32 = stat
            .rsplit_once(") ")
            .and_then(|(_, s)| s.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a parent");
        if workers.contains(&ppid) || ppid <= 1 {
            break ppid;
        }
        p = ppid;
    };
    let i = workers
        .iter()
        .position(|w| *w == worker)
        .expect("a worker ran it")
        - 1;
    c.kill_and_replace_worker(i);
    until(
        Duration::from_secs(5),
        "the killed worker's program to end",
        || !running_with(&marker).contains(&program),
    )
    .await;
    assert_eq!(ok_stdout(&c.warren(&["result", &k])).trim(), "\"done\\n\"");
}

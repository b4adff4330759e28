//! The prefork pool's pure parts, and pools of real children (python3).

use super::*;
use serde_json::json;

#[test]
fn a_tasks_output_is_taken_from_success_and_failure_alike() {
    let mut logs = None;
    let r = parse_reply_logged(r#"{"ok": 1, "logs": {"stdout": "hi\n"}}"#, &mut logs);
    assert_eq!(r, Ok((json!(1), vec![])));
    assert_eq!(logs, Some(json!({"stdout": "hi\n"})));
    let failed =
        r#"{"error": {"type": "E", "message": "m", "traceback": ""}, "logs": {"stderr": "x"}}"#;
    assert!(parse_reply_logged(failed, &mut logs).is_err());
    assert_eq!(logs, Some(json!({"stderr": "x"})));
    // Anything but an object is no output.
    assert!(parse_reply_logged(r#"{"ok": 1, "logs": 3}"#, &mut logs).is_ok());
    assert_eq!(logs, None);
}

#[test]
fn replies_are_values_or_failures() {
    assert_eq!(parse_reply(r#"{"ok": 3}"#), Ok((json!(3), vec![])));
    assert_eq!(parse_reply(r#"{"ok": null}"#), Ok((Value::Null, vec![])));
    assert_eq!(
        parse_reply(r#"{"ok": {"$blob": "ab", "size": 2}, "blobs": [2]}"#),
        Ok((json!({"$blob": "ab", "size": 2}), vec![2]))
    );
    assert_eq!(
        parse_reply(r#"{"ok": 1, "blobs": [-1]}"#).unwrap_err().kind,
        "WorkerError"
    );
    assert_eq!(
        parse_reply(r#"{"ok": 1, "blobs": 3}"#).unwrap_err().kind,
        "WorkerError"
    );
    let e = parse_reply(
        r#"{"error": {"type": "ZeroDivisionError", "message": "division by zero", "traceback": "tb"}}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.kind.as_str(), e.traceback.as_str()),
        ("ZeroDivisionError", "tb")
    );
    assert_eq!(parse_reply("garbage").unwrap_err().kind, "WorkerError");
}

/// A child in Python (the machine's python3, which the Python worker
/// needs anyway): doubles, crashes on "die", sleeps on "sleep".
fn pool(size: usize) -> Prefork {
    let script = r#"
import json, os, sys, time
out = sys.stdout.buffer
out.write(json.dumps({"ready": True}).encode() + b"\n"); out.flush()
for line in iter(sys.stdin.buffer.readline, b""):
    t = json.loads(line)
    blobs = [sys.stdin.buffer.read(b["size"]) for b in t["blobs"]]
    if t["func"] == "die":
        os._exit(3)
    if t["func"] == "sleep":
        time.sleep(60)
    if t["func"] == "swap":
        back = [b[::-1] for b in blobs]
        out.write(json.dumps({"ok": [b["hash"] for b in t["blobs"]], "blobs": [len(b) for b in back]}).encode() + b"\n")
        for b in back:
            out.write(b)
        out.flush()
        continue
    out.write(json.dumps({"ok": t["args"][0] * 2}).encode() + b"\n"); out.flush()
"#;
    Prefork::start(
        ChildCommand {
            program: "python3".into(),
            args: vec!["-c".into(), script.into()],
            env: Vec::new(),
            greeting: None,
        },
        size,
    )
    .expect("python3 starts")
}

#[test]
fn children_serve_task_after_task_and_a_crash_costs_only_its_task() {
    let p = pool(1);
    let never = || false;
    assert_eq!(
        p.call("k-1", "double", vec![json!(21)], &[], &never),
        Ok((json!(42), vec![]))
    );
    let e = p
        .call("k-2", "die", vec![json!(0)], &[], &never)
        .unwrap_err();
    assert_eq!(e.kind, "TaskCrashed");
    assert!(e.message.contains("status 3"), "{}", e.message);
    // A new child takes the dead one's place.
    assert_eq!(
        p.call("k-3", "double", vec![json!(5)], &[], &never),
        Ok((json!(10), vec![]))
    );
}

#[test]
fn blobs_cross_both_ways_as_raw_bytes() {
    let p = pool(1);
    let blobs = vec![
        Blob {
            hash: "a".into(),
            bytes: vec![0, 1, 2, 255, b'\n'],
        },
        Blob {
            hash: "b".into(),
            bytes: vec![7; 100_000],
        },
    ];
    let (v, back) = p.call("k", "swap", vec![], &blobs, &|| false).unwrap();
    assert_eq!(v, json!(["a", "b"]));
    assert_eq!(back, vec![vec![b'\n', 255, 2, 1, 0], vec![7; 100_000]]);
    // The stream stays in step for the next task.
    assert_eq!(
        p.call("k-2", "double", vec![json!(3)], &[], &|| false),
        Ok((json!(6), vec![]))
    );
}

#[test]
fn a_child_killed_while_idle_costs_no_task() {
    let p = pool(1);
    let pid = p.idle.lock().unwrap()[0].pid();
    // SAFETY: a child this test's pool made.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        p.call("k-1", "double", vec![json!(4)], &[], &|| false),
        Ok((json!(8), vec![]))
    );
}

#[test]
fn a_stop_ends_the_running_child_at_once() {
    let p = pool(1);
    let asked = Instant::now();
    let stop = move || asked.elapsed() > Duration::from_millis(200);
    let e = p
        .call("k-1", "sleep", vec![json!(0)], &[], &stop)
        .unwrap_err();
    assert_eq!(e.kind, "CancelledError");
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(
        p.call("k-2", "double", vec![json!(1)], &[], &|| false),
        Ok((json!(2), vec![]))
    );
}

#[test]
fn a_child_that_cannot_get_ready_says_why() {
    let e = Prefork::start(
        ChildCommand {
            program: "python3".into(),
            args: vec![
                "-c".into(),
                r#"import json; print(json.dumps({"fatal": "No module named 'nosuch'"}))"#.into(),
            ],
            env: Vec::new(),
            greeting: None,
        },
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("nosuch"), "{e}");
}

#[test]
fn a_recycle_replaces_every_child_with_a_new_process() {
    let p = pool(2);
    let never = || false;
    let pids = |p: &Prefork| -> Vec<i32> {
        let mut v: Vec<i32> = p.idle.lock().unwrap().iter().map(|c| c.pid()).collect();
        v.sort();
        v
    };
    let before = pids(&p);
    assert_eq!(before.len(), 2);
    p.recycle().unwrap();
    let after = pids(&p);
    assert_eq!(after.len(), 2);
    assert!(
        before.iter().all(|pid| !after.contains(pid)),
        "{before:?} {after:?}"
    );
    assert_eq!(
        p.call("k-1", "double", vec![json!(4)], &[], &never),
        Ok((json!(8), vec![]))
    );
}

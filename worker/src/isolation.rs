//! Task runs in child processes (`--isolation process`): limits that stop.
//!
//! In a thread, a function that never polls `is_cancelled()` runs on past its
//! time limit (its result dropped, its core busy), and an abort or a segfault
//! in a C library kills the whole worker. In a child process per run, the
//! worker ends the run for real: at the time limit, on `warren cancel` or
//! `warren restart` it sends SIGTERM to the run's process group, then SIGKILL
//! after [`GRACE`]; a crash ends that run as the task's error
//! (`TaskCrashed`, naming the signal), never the worker; and
//! `max_memory_per_task_mb` caps the run's address space (`RLIMIT_AS`).
//!
//! The child is the worker's own binary, run again with [`CHILD_ENV`] set: its
//! registry is the worker's, so [`crate::Worker::run`] becomes "read one task
//! on stdin, call it, write its result on stdout" ([`child_main`]), the
//! Temporal-bridge shape with the roles in one binary. A child dies with its
//! worker (`PR_SET_PDEATHSIG`), so a worker killed with SIGKILL leaves no
//! orphan running.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_core::binary::{
    self,
    context::{self, Made},
};
use warren_core::messages::TaskFailure;
use warren_core::store::blobs::BlobRef;

use crate::registry::{CallSite, Registry};

/// Set in a child's environment: run one task, not a worker.
pub const CHILD_ENV: &str = "WARREN_RUN_TASK";
/// How long a run asked to stop (SIGTERM) has before it is killed.
pub const GRACE: Duration = Duration::from_secs(2);
/// How often a running child is checked for a stop request.
const POLL: Duration = Duration::from_millis(20);

/// What a child is asked to run: one line on its stdin, followed by the
/// bytes of the stored values in `values`, in order (a child holds no
/// connection to read them itself; see [`crate::values`]).
#[derive(Debug, Serialize, Deserialize)]
struct ChildTask {
    key: String,
    func: String,
    args: Vec<Value>,
    worker: String,
    #[serde(default)]
    values: Vec<Value>,
}

/// What a child answers: one line, its result, then one line listing the
/// values it made (their references), then their envelopes, in order,
/// each made as it is written.
fn child_answer(
    out: &mut dyn Write,
    result: &Result<Value, TaskFailure>,
    made: &[Made],
) -> std::io::Result<()> {
    out.write_all(&serde_json::to_vec(result).unwrap_or_default())?;
    out.write_all(b"\n")?;
    let refs: Vec<Value> = made.iter().map(|m| m.blob.to_json()).collect();
    out.write_all(&serde_json::to_vec(&refs).unwrap_or_default())?;
    out.write_all(b"\n")?;
    for m in made {
        binary::encode_into(&m.value, out)?;
    }
    out.flush()
}

/// Splits what follows a line of JSON into the values it announces:
/// `(reference, bytes)` each. `None` if the announced sizes do not add up.
fn split_values(refs: &[Value], mut rest: Bytes) -> Option<Vec<(BlobRef, Bytes)>> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let r = BlobRef::from_json(r)?;
        let n = usize::try_from(r.size).ok().filter(|n| *n <= rest.len())?;
        let bytes = rest.split_to(n);
        out.push((r, bytes));
    }
    rest.is_empty().then_some(out)
}

/// The first line of `bytes` and what follows it.
fn first_line(bytes: &Bytes) -> (Bytes, Bytes) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (bytes.slice(..i), bytes.slice(i + 1..)),
        None => (bytes.clone(), Bytes::new()),
    }
}

/// Whether this process is a child run by a worker.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The child's whole life: one task from stdin, its result on stdout, exit.
pub fn child_main(registry: &Registry) -> ! {
    let mut input = Vec::new();
    let bad = |what: String| (Err(TaskFailure::new("WorkerError", what, "")), Vec::new());
    let (result, made) = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => {
            let (line, rest) = first_line(&Bytes::from(input));
            match serde_json::from_slice::<ChildTask>(&line) {
                Ok(t) => match split_values(&t.values, rest) {
                    Some(given) => {
                        let given = given.into_iter().map(|(r, b)| (r.hash, b)).collect();
                        let site = CallSite {
                            key: &t.key,
                            worker: &t.worker,
                            seat: None,
                        };
                        context::within(crate::values::handed(given), || {
                            registry.call(&t.func, t.args, site)
                        })
                    }
                    None => {
                        bad("the values after the task on stdin are not those it announced".into())
                    }
                },
                Err(e) => bad(format!("bad task on stdin: {e}")),
            }
        }
        Err(e) => bad(format!("reading stdin: {e}")),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let code = if child_answer(&mut out, &result, &made).is_ok() {
        0
    } else {
        1
    };
    std::process::exit(code)
}

/// Runs `func(args)` for task `key` in a child process; ends it when `stop`
/// is set (a time limit, a cancel, a restart). `max_memory_mb` 0: no cap.
pub async fn run_in_child(
    key: String,
    func: String,
    args: Vec<Value>,
    values: Vec<(BlobRef, Vec<u8>)>,
    worker: String,
    stop: Arc<AtomicBool>,
    max_memory_mb: u64,
) -> (Result<Value, TaskFailure>, Vec<Made>) {
    let spawned = spawn(max_memory_mb);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let e = TaskFailure::new(
                "WorkerError",
                format!("cannot start a process for task {key}: {e}"),
                "",
            );
            return (Err(e), Vec::new());
        }
    };
    let task = ChildTask {
        key: key.clone(),
        func,
        args,
        worker,
        values: values.iter().map(|(r, _)| r.to_json()).collect(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let mut line = serde_json::to_vec(&task).unwrap_or_default();
        line.push(b'\n');
        // Written while the child reads, so no pipe fills up. A child that
        // died at once shows in its exit status below.
        tokio::spawn(async move {
            if stdin.write_all(&line).await.is_ok() {
                for (_, bytes) in values {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
    let mut stdout = child.stdout.take();
    let reading = tokio::spawn(async move {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out).await;
        }
        out
    });
    let pid = child.id().map(|p| p as i32);
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            () = tokio::time::sleep(POLL) => {
                if stop.load(Ordering::Relaxed) {
                    break end(&mut child, pid).await;
                }
            }
        }
    };
    let out = Bytes::from(reading.await.unwrap_or_default());
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return (
                Err(TaskFailure::new("WorkerError", e.to_string(), "")),
                Vec::new(),
            );
        }
    };
    let (line, rest) = first_line(&out);
    let result = outcome(&key, status, &line, max_memory_mb);
    if result.is_err() {
        return (result, Vec::new());
    }
    let (refs, bytes) = first_line(&rest);
    let made = serde_json::from_slice::<Vec<Value>>(&refs)
        .ok()
        .and_then(|refs| split_values(&refs, bytes));
    let made = made.and_then(|made| {
        made.into_iter()
            .map(|(blob, envelope)| {
                let value = binary::decode(envelope, None).ok()?;
                Some(Made { blob, value })
            })
            .collect::<Option<Vec<_>>>()
    });
    match made {
        Some(made) => (result, made),
        None => {
            let e = TaskFailure::new(
                "WorkerError",
                format!("the values task {key} made did not come whole from its process"),
                "",
            );
            (Err(e), Vec::new())
        }
    }
}

/// Starts the worker's own binary as a child in its own process group.
fn spawn(max_memory_mb: u64) -> std::io::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        // One malloc arena: under RLIMIT_AS, per-thread arenas (64 MiB of
        // address space each) would count against the task's cap.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let limit = max_memory_mb.saturating_mul(1024 * 1024);
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setpgid, prctl, setrlimit), on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            // Dies with the worker: a SIGKILLed worker leaves no orphan.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if limit > 0 {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                libc::setrlimit(libc::RLIMIT_AS, &rl);
            }
            Ok(())
        });
    }
    tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
}

/// Ends a run asked to stop: SIGTERM to its process group, SIGKILL after
/// [`GRACE`].
async fn end(
    child: &mut tokio::process::Child,
    pid: Option<i32>,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = pid {
        // SAFETY: signals a process group this worker made.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
    }
    match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: as above.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            child.wait().await
        }
    }
}

/// The run's result from how its process ended and what it wrote (pure).
pub fn outcome(
    key: &str,
    status: std::process::ExitStatus,
    stdout: &[u8],
    max_memory_mb: u64,
) -> Result<Value, TaskFailure> {
    if status.success()
        && let Ok(result) = serde_json::from_slice::<Result<Value, TaskFailure>>(stdout)
    {
        return result;
    }
    let how = match (status.signal(), status.code()) {
        (Some(sig), _) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        (None, Some(code)) => format!("exited with status {code} without a result"),
        (None, None) => "ended without a result".to_string(),
    };
    let hint = if max_memory_mb > 0
        && matches!(
            status.signal(),
            Some(libc::SIGABRT | libc::SIGSEGV | libc::SIGKILL)
        ) {
        format!(
            " (its memory is capped at {max_memory_mb} MiB, setting max_memory_per_task_mb: an allocation over it aborts)"
        )
    } else {
        String::new()
    };
    Err(TaskFailure::new(
        "TaskCrashed",
        format!("the process running task {key} {how}{hint}; the worker goes on"),
        "",
    ))
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;

    #[test]
    fn a_clean_exit_returns_what_the_child_wrote() {
        let ok = ExitStatus::from_raw(0);
        assert_eq!(
            outcome("k", ok, br#"{"Ok":3}"#, 0),
            Ok(serde_json::json!(3))
        );
        let failed = br#"{"Err":{"type":"ValueError","message":"bad","traceback":""}}"#;
        assert_eq!(outcome("k", ok, failed, 0).unwrap_err().kind, "ValueError");
    }

    #[test]
    fn a_crash_is_the_tasks_error_naming_the_signal_and_the_memory_cap() {
        let aborted = ExitStatus::from_raw(libc::SIGABRT);
        let e = outcome("k-1", aborted, b"", 0).unwrap_err();
        assert_eq!(e.kind, "TaskCrashed");
        assert!(e.message.contains("SIGABRT"), "{}", e.message);
        assert!(!e.message.contains("capped"), "{}", e.message);
        let capped = outcome("k-1", aborted, b"", 256).unwrap_err();
        assert!(capped.message.contains("256 MiB"), "{}", capped.message);
    }

    #[test]
    fn values_follow_their_line_in_order_and_must_add_up() {
        let made = [b"first".as_slice(), b"2nd"]
            .map(|b| {
                let value = warren_core::binary::Binary::new(b.to_vec());
                let envelope = binary::encode(&value).unwrap();
                Made {
                    blob: BlobRef::of(&envelope),
                    value,
                }
            })
            .to_vec();
        let mut answer = Vec::new();
        child_answer(&mut answer, &Ok(serde_json::json!(1)), &made).unwrap();
        let answer = Bytes::from(answer);
        let (line, rest) = first_line(&answer);
        assert_eq!(&line[..], br#"{"Ok":1}"#);
        let (refs, bytes) = first_line(&rest);
        let refs: Vec<Value> = serde_json::from_slice(&refs).unwrap();
        let split = split_values(&refs, bytes.clone()).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[1].0, made[1].blob);
        let second = binary::decode(split[1].1.clone(), None).unwrap();
        assert_eq!(second.as_bytes(), b"2nd");
        // Bytes short, or left over: the announcement is not what came.
        assert!(split_values(&refs, bytes.slice(..7)).is_none());
        let mut more = bytes.to_vec();
        more.push(0);
        assert!(split_values(&refs, Bytes::from(more)).is_none());
        assert!(split_values(&[serde_json::json!("x")], Bytes::new()).is_none());
    }

    #[test]
    fn an_exit_without_a_result_names_its_status() {
        let e = outcome("k", ExitStatus::from_raw(3 << 8), b"", 0).unwrap_err();
        assert!(e.message.contains("status 3"), "{}", e.message);
    }
}

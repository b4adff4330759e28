//! Running program tasks, on workers that allow them (`--allow-command`).
//!
//! A worker runs nothing it was not told to: the program must be allowed by
//! one of its rules ([`warren_core::command::allows`]) both as the task names
//! it and as the path it resolves to on this worker's PATH. There is no
//! shell (unless `sh` or `bash` is allowed by name). The program gets a clean
//! environment: `PATH` (the system's default), `WARREN_TASK_KEY`, and the
//! task's own `--env` variables.
//!
//! Its standard output is its value (text, or JSON with `--json-stdout`); a
//! non-zero exit or a signal is `CommandFailed` with the end of its standard
//! error as the traceback; more output than `max_output_bytes` is
//! `OutputTooLarge`, and the program is ended. A time limit, a cancel or a
//! restart ends its whole process group (SIGTERM, then SIGKILL after
//! [`GRACE`]); it dies with its worker (`PR_SET_PDEATHSIG`), so a worker
//! killed with SIGKILL leaves no orphan behind, and the task runs again
//! elsewhere as a function task would.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;
use warren_core::allow;
use warren_core::command::{COMMAND_FUNC, CommandOptions, allows, from_task_args};
use warren_core::messages::TaskFailure;
use warren_core::store::Store;

use crate::isolation::GRACE;
use crate::registry::Registry;

/// The PATH a program gets (and the one a name is looked up on if the
/// worker has none).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How often a running program is checked for a stop or too much output.
const POLL: Duration = Duration::from_millis(10);
/// How much of standard error a failure's traceback shows.
const STDERR_TAIL: usize = 4096;

/// What a program wrote, kept for `warren logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    /// Standard output (up to the limit).
    pub stdout: String,
    /// Standard error (up to the limit).
    pub stderr: String,
}

/// What a worker allows, and its limit.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    /// The `--allow-command` rules.
    pub rules: Vec<String>,
    /// The `--allow-env` rules: variables a task may set.
    pub env: Vec<String>,
    /// The `--allow-cwd` directories.
    pub cwd: Vec<String>,
    /// The user programs run as (`--run-as`), if not the worker's own.
    pub run_as: Option<RunAs>,
    /// `max_output_bytes`.
    pub max_output: usize,
    /// The worker (`host:pid`), for messages.
    pub worker: String,
}

/// A user to run programs as: its ids, resolved once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// The user id.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

impl RunAs {
    /// Resolves `user` (a name or a numeric uid) for a worker that runs as
    /// root; anyone else cannot change user, and is told so.
    pub fn resolve(user: &str) -> Result<Self, String> {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            return Err(format!(
                "--run-as {user} needs the worker to run as root (it changes the user of each program)"
            ));
        }
        let name = std::ffi::CString::new(user)
            .map_err(|_| format!("--run-as {user:?}: not a user name"))?;
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the strings `pwd`
        // points to live in `buf`, which outlives their use below.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == 0 && !found.is_null() {
            return Ok(Self {
                uid: pwd.pw_uid,
                gid: pwd.pw_gid,
            });
        }
        match user.parse::<u32>() {
            Ok(uid) if uid != 0 => Ok(Self { uid, gid: uid }),
            _ => Err(format!("--run-as {user}: no such user on this machine")),
        }
    }
}

fn failure(kind: &str, message: String) -> TaskFailure {
    let traceback = format!("Traceback (most recent call last):\n{kind}: {message}");
    TaskFailure::new(kind, message, traceback)
}

impl Programs {
    /// The path this worker would run for `program`, if it allows it.
    pub fn resolve(&self, program: &str) -> Result<PathBuf, TaskFailure> {
        let not_allowed = || {
            failure(
                "CommandNotAllowed",
                format!(
                    "program {program:?} is not allowed on worker {}: start it with --allow-command {program} (or allowed_commands in warren.toml)",
                    self.worker
                ),
            )
        };
        if !allows(&self.rules, program) {
            return Err(not_allowed());
        }
        if program.contains('/') {
            let path = PathBuf::from(program);
            if !path.is_absolute() {
                return Err(failure(
                    "CommandNotAllowed",
                    format!("program {program:?} must be a name on PATH or an absolute path"),
                ));
            }
            return executable(&path).then_some(path).ok_or_else(|| {
                failure(
                    "FileNotFoundError",
                    format!(
                        "program {program} does not exist (or is not executable) on worker {}",
                        self.worker
                    ),
                )
            });
        }
        let path_var = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into());
        let found = path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .find(|p| executable(p));
        found.ok_or_else(|| {
            failure(
                "FileNotFoundError",
                format!(
                    "program {program:?} is not on the PATH of worker {}",
                    self.worker
                ),
            )
        })
    }

    /// The working directory a task asked for, once allowed: as written
    /// (absolute, no `..`, under an `--allow-cwd` directory) and again with
    /// symbolic links resolved, since a link inside an allowed directory may
    /// point anywhere. The program runs in the resolved path.
    fn working_dir(&self, dir: &str) -> Result<PathBuf, TaskFailure> {
        allow::cwd_allowed(&self.cwd, dir, &self.worker)
            .map_err(|m| failure("CommandNotAllowed", m))?;
        let real = std::fs::canonicalize(dir)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                failure(
                    "FileNotFoundError",
                    format!(
                        "the working directory {dir} (--cwd) does not exist on worker {}",
                        self.worker
                    ),
                )
            })?;
        let inside = self
            .cwd
            .iter()
            .any(|allowed| std::fs::canonicalize(allowed).is_ok_and(|a| real.starts_with(a)));
        if !inside {
            return Err(failure(
                "CommandNotAllowed",
                format!(
                    "the working directory {dir} (--cwd) resolves to {}, outside the directories worker {} allows (--allow-cwd)",
                    real.display(),
                    self.worker
                ),
            ));
        }
        Ok(real)
    }

    /// Runs the command line `argv` with `options` for task `key`; gives up,
    /// ending its process group, once `stop()` is true.
    pub fn run(
        &self,
        key: &str,
        argv: &[String],
        options: &CommandOptions,
        stop: &dyn Fn() -> bool,
    ) -> (Result<Value, TaskFailure>, Logs) {
        let no_logs = Logs::default();
        let Some((program, args)) = argv.split_first() else {
            return (
                Err(failure("ValueError", "no program given".into())),
                no_logs,
            );
        };
        let path = match self.resolve(program) {
            Ok(p) => p,
            Err(e) => return (Err(e), no_logs),
        };
        for name in options.env.keys() {
            if let Err(m) = allow::env_allowed(&self.env, name, &self.worker) {
                return (Err(failure("CommandNotAllowed", m)), no_logs);
            }
        }
        let cwd = match options
            .cwd
            .as_deref()
            .map(|d| self.working_dir(d))
            .transpose()
        {
            Ok(cwd) => cwd,
            Err(e) => return (Err(e), no_logs),
        };
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(&options.env)
            .env("WARREN_TASK_KEY", key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &cwd {
            cmd.current_dir(dir);
        }
        if let Some(user) = self.run_as {
            // std drops the supplementary groups too when root changes uid.
            cmd.uid(user.uid).gid(user.gid);
        }
        // SAFETY: between fork and exec only async-signal-safe calls are made.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let message = format!("cannot start {}: {e}", path.display());
                return (Err(failure("OSError", message)), no_logs);
            }
        };
        let pid = child.id() as i32;
        let too_much = Arc::new(AtomicBool::new(false));
        let limit = self.max_output;
        let out = child
            .stdout
            .take()
            .map(|s| capture(s, limit, too_much.clone()));
        let err = child
            .stderr
            .take()
            .map(|s| capture(s, limit, Arc::new(AtomicBool::new(false))));
        // Short programs are the common case: look again soon, then less
        // often (a fixed 10 ms nap cost every `true` 10 ms).
        let mut nap = Duration::from_micros(50);
        let ended = loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    // The task is over: what it left running in its group
                    // (and that would hold its pipes open) goes too.
                    // SAFETY: signals the process group made for the program.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    break Ok(status);
                }
                Ok(None) => {}
                Err(e) => break Err(e.to_string()),
            }
            if stop() || too_much.load(Ordering::Relaxed) {
                end_group(pid, &mut child);
                break Err(String::new());
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(POLL);
        };
        let logs = Logs {
            stdout: joined(out),
            stderr: joined(err),
        };
        let result = match ended {
            _ if too_much.load(Ordering::Relaxed) => Err(failure(
                "OutputTooLarge",
                format!(
                    "{program} wrote more than {limit} bytes to its standard output (setting max_output_bytes); it was ended"
                ),
            )),
            Err(why) if why.is_empty() => Err(failure(
                "CancelledError",
                format!("task {key} was asked to stop; {program} was ended"),
            )),
            Err(why) => Err(failure("OSError", why)),
            Ok(status) if status.success() => value(&logs.stdout, options.json_stdout, program),
            Ok(status) => Err(command_failed(
                key,
                program,
                status,
                &logs.stderr,
                &self.worker,
            )),
        };
        (result, logs)
    }
}

/// Registers [`COMMAND_FUNC`] in `registry`: each run's output is kept in
/// Redis (`store`, from the blocking thread the run is on, through `rt`)
/// for `warren logs`, as long as results are.
pub fn register(
    registry: &mut Registry,
    programs: Programs,
    store: Store,
    rt: tokio::runtime::Handle,
) {
    registry.register_raw(COMMAND_FUNC, move |args, site| {
        let (argv, options) = from_task_args(args).map_err(|m| failure("ValueError", m))?;
        let (result, logs) = programs.run(site.key, &argv, &options, &crate::cancel::is_cancelled);
        let kept = serde_json::to_string(&logs)
            .map_err(warren_core::Error::from)
            .and_then(|json| rt.block_on(store.put_logs(site.key, &json)));
        if let Err(e) = kept {
            warn!(key = site.key, error = %e, "the program's output could not be kept for warren logs");
        }
        result
    });
}

fn executable(p: &Path) -> bool {
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Reads a pipe on a thread of its own, keeping up to `limit` bytes and
/// raising `over` past it.
fn capture(
    mut pipe: impl Read + Send + 'static,
    limit: usize,
    over: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return kept,
                Ok(n) => {
                    let room = limit.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    if n > room {
                        over.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    })
}

fn joined(h: Option<std::thread::JoinHandle<Vec<u8>>>) -> String {
    let bytes = h.and_then(|h| h.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// SIGTERM to the group, SIGKILL after [`GRACE`]; reaps the program.
fn end_group(pid: i32, child: &mut std::process::Child) {
    // SAFETY: signals the process group this worker made for the program.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    let until = Instant::now() + GRACE;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; what it left in its group goes too.
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(POLL);
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

/// The value of a program that exited 0 (pure).
pub fn value(stdout: &str, json: bool, program: &str) -> Result<Value, TaskFailure> {
    if !json {
        return Ok(Value::String(stdout.to_string()));
    }
    serde_json::from_str(stdout).map_err(|e| {
        failure(
            "ValueError",
            format!("{program} exited 0 but its standard output is not JSON (--json-stdout): {e}"),
        )
    })
}

/// The error of a program that failed (pure): its exit status or signal,
/// with the end of its standard error as the traceback.
pub fn command_failed(
    key: &str,
    program: &str,
    status: std::process::ExitStatus,
    stderr: &str,
    worker: &str,
) -> TaskFailure {
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_string(),
    };
    let message = format!("{program} {how}");
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    let start = (start..=stderr.len())
        .find(|i| stderr.is_char_boundary(*i))
        .unwrap_or(stderr.len());
    let tail = &stderr[start..];
    let traceback = format!(
        "Traceback (most recent call last):\n  task {key} (program {program}) on worker {worker}\n{}{}CommandFailed: {message}",
        tail,
        if tail.is_empty() || tail.ends_with('\n') {
            ""
        } else {
            "\n"
        }
    );
    TaskFailure::new("CommandFailed", message, traceback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;

    fn programs(rules: &[&str]) -> Programs {
        Programs {
            rules: rules.iter().map(|s| s.to_string()).collect(),
            max_output: 1000,
            worker: "h:1".into(),
            ..Default::default()
        }
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_failure_names_its_status_and_keeps_the_end_of_stderr() {
        let e = command_failed("k", "sh", ExitStatus::from_raw(3 << 8), "oops\n", "h:1");
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("CommandFailed", "sh exited with status 3")
        );
        assert!(
            e.traceback
                .contains("task k (program sh) on worker h:1\noops\nCommandFailed"),
            "{}",
            e.traceback
        );
        let killed = command_failed("k", "sh", ExitStatus::from_raw(9), "", "h:1");
        assert_eq!(killed.message, "sh was killed by signal 9");
        let long = "é".repeat(5000);
        assert!(
            command_failed("k", "p", ExitStatus::from_raw(256), &long, "w")
                .traceback
                .len()
                < 5000
        );
    }

    #[test]
    fn stdout_is_text_or_json() {
        assert_eq!(value("3\n", false, "p"), Ok(Value::String("3\n".into())));
        assert_eq!(value("[1, 2]", true, "p"), Ok(serde_json::json!([1, 2])));
        assert_eq!(value("nope", true, "p").unwrap_err().kind, "ValueError");
    }

    #[test]
    fn programs_run_with_a_clean_environment_and_their_output_is_the_value() {
        let mut p = programs(&["sh"]);
        p.env = vec!["GREET*".into()];
        let opts = CommandOptions {
            env: [("GREETING".to_string(), "hi".to_string())].into(),
            ..Default::default()
        };
        let (r, logs) = p.run(
            "k-1",
            &argv(&[
                "sh",
                "-c",
                "echo $GREETING $WARREN_TASK_KEY ${HOME:-nohome}; echo err >&2",
            ]),
            &opts,
            &|| false,
        );
        assert_eq!(r, Ok(Value::String("hi k-1 nohome\n".into())));
        assert_eq!(logs.stderr, "err\n");
    }

    #[test]
    fn what_is_not_allowed_or_missing_is_refused_by_name() {
        let p = programs(&["sh", "/nonexistent/tool"]);
        let (r, _) = p.run(
            "k",
            &argv(&["bash", "-c", "true"]),
            &CommandOptions::default(),
            &|| false,
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind, "CommandNotAllowed");
        assert!(e.message.contains("--allow-command bash"), "{}", e.message);
        let (r, _) = p.run(
            "k",
            &argv(&["/nonexistent/tool"]),
            &CommandOptions::default(),
            &|| false,
        );
        assert_eq!(r.unwrap_err().kind, "FileNotFoundError");
        let missing_dir = CommandOptions {
            cwd: Some("/nonexistent-dir".into()),
            ..Default::default()
        };
        let mut p = p;
        p.cwd = vec!["/nonexistent-dir".into()];
        let (r, _) = p.run("k", &argv(&["sh", "-c", "true"]), &missing_dir, &|| false);
        let e = r.unwrap_err();
        assert!(
            e.message
                .contains("/nonexistent-dir (--cwd) does not exist"),
            "{}",
            e.message
        );
    }

    #[test]
    fn too_much_output_ends_the_program() {
        let p = programs(&["sh"]);
        let (r, logs) = p.run(
            "k",
            &argv(&["sh", "-c", "yes"]),
            &CommandOptions::default(),
            &|| false,
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind, "OutputTooLarge");
        assert!(e.message.contains("1000 bytes"), "{}", e.message);
        assert_eq!(logs.stdout.len(), 1000);
    }

    #[test]
    fn a_stop_ends_a_program_that_ignores_sigterm() {
        let p = programs(&["sh"]);
        let asked = Instant::now();
        let stop = move || asked.elapsed() > Duration::from_millis(100);
        let (r, _) = p.run(
            "k",
            &argv(&["sh", "-c", "trap '' TERM; sleep 30"]),
            &CommandOptions::default(),
            &stop,
        );
        assert_eq!(r.unwrap_err().kind, "CancelledError");
        assert!(asked.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn task_variables_need_the_workers_leave_and_loader_ones_never_pass() {
        let mut p = programs(&["sh"]);
        p.env = vec!["*".into()];
        for name in [
            "LD_PRELOAD",
            "BASH_ENV",
            "PATH",
            "PYTHONPATH",
            "NODE_OPTIONS",
        ] {
            let opts = CommandOptions {
                env: [(name.to_string(), "/tmp/x".to_string())].into(),
                ..Default::default()
            };
            let (r, _) = p.run("k", &argv(&["sh", "-c", "true"]), &opts, &|| false);
            let e = r.unwrap_err();
            assert_eq!(e.kind, "CommandNotAllowed", "{name}");
            assert!(e.message.contains(name), "{}", e.message);
        }
        p.env = vec![];
        let opts = CommandOptions {
            env: [("GREETING".to_string(), "hi".to_string())].into(),
            ..Default::default()
        };
        let (r, _) = p.run("k", &argv(&["sh", "-c", "true"]), &opts, &|| false);
        assert!(r.unwrap_err().message.contains("--allow-env GREETING"));
    }

    #[test]
    fn a_working_directory_is_allowed_only_where_it_really_is() {
        let base = std::env::temp_dir().join(format!("warren-cwd-{}", std::process::id()));
        let allowed = base.join("allowed");
        std::fs::create_dir_all(allowed.join("sub")).unwrap();
        let _ = std::fs::remove_file(allowed.join("escape"));
        std::os::unix::fs::symlink("/etc", allowed.join("escape")).unwrap();
        let mut p = programs(&["sh"]);
        p.cwd = vec![allowed.display().to_string()];
        let run = |p: &Programs, dir: &str| {
            let opts = CommandOptions {
                cwd: Some(dir.into()),
                ..Default::default()
            };
            p.run("k", &argv(&["sh", "-c", "pwd"]), &opts, &|| false).0
        };
        let sub = allowed.join("sub").display().to_string();
        assert_eq!(run(&p, &sub), Ok(Value::String(format!("{sub}\n"))));
        for outside in [
            "/etc".to_string(),
            format!("{}/../..", allowed.display()),
            allowed.join("escape").display().to_string(),
        ] {
            let e = run(&p, &outside).unwrap_err();
            assert_eq!(e.kind, "CommandNotAllowed", "{outside}: {}", e.message);
        }
        p.cwd.clear();
        assert!(run(&p, &sub).unwrap_err().message.contains("--allow-cwd"));
        let _ = std::fs::remove_dir_all(&base);
    }
}

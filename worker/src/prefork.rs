//! A prefork pool: long-lived interpreter processes that run tasks, one at a
//! time each, for a worker whose functions are not Rust (the Python worker).
//!
//! Why processes, and why long-lived: CPython runs one thread of Python at a
//! time, so N slots must be N processes to use N cores (Celery's prefork
//! pool), and an interpreter that imports the user's modules takes far longer
//! to start than a no-op task takes to run, so each process serves task
//! after task. The worker runtime stays in Rust: it consumes, records
//! starts, reports and acks as for any task; a slot's blocking call hands
//! the task to an idle process and waits for its answer.
//!
//! The protocol is JSON lines on the child's stdin and stdout, each line
//! followed by the raw bytes of the values it announces (values that are not
//! JSON cross as themselves: no base64):
//! - the child says `{"ready": true}` once it has imported what it runs, or
//!   `{"fatal": "..."}` (the worker then refuses to start, showing why); the
//!   worker answers with its greeting, if it has one (the settings a task's
//!   `get_client()` connects with);
//! - the worker sends `{"key", "func", "args", "blobs": [{"hash", "size"}...]}`
//!   and then the bytes of each blob the arguments refer to; the child
//!   answers `{"ok": value, "blobs": [size...]}` and the bytes of the blobs its
//!   value refers to, or `{"error": {"type", "message", "traceback"}}`;
//! - before its answer, a task may say `{"secede": true}` (its slot may serve
//!   another task while it waits, see [`crate::seat`]) and `{"rejoin": true}`,
//!   which the worker answers `{"rejoined": bool}` once the task holds a slot.
//!
//! A child that dies mid-task (a segfault, `os._exit`) is that task's
//! `TaskCrashed` error and is replaced; the worker goes on. A task asked to
//! stop (time limit, cancel, restart) has its process group ended (SIGTERM,
//! SIGKILL after [`crate::isolation::GRACE`]). Children die with the worker
//! (`PR_SET_PDEATHSIG`), so a SIGKILLed worker leaves no orphan running.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_core::messages::TaskFailure;

use crate::isolation::GRACE;
use crate::seat::Seat;

/// How often a waiting slot looks at its task's stop flag.
const POLL: Duration = Duration::from_millis(20);
/// How long a new child may take to import what it runs.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// What starts a child: a program and its arguments.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The program (e.g. the Python interpreter).
    pub program: PathBuf,
    /// Its arguments (e.g. `-m warren._child mymodule`).
    pub args: Vec<OsString>,
    /// Variables set (`Some`) or removed (`None`) in its environment.
    pub env: Vec<(String, Option<String>)>,
    /// A line sent to each child once it is ready (see [`Greeting`]).
    pub greeting: Option<Greeting>,
}

/// Why a pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum PreforkError {
    /// The program could not be started at all.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A child started but could not get ready (an import failed).
    #[error("a task process could not start:\n{0}")]
    NotReady(String),
}

/// One child, idle or running one task.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The pool's generation when it was started: one from before the last
    /// [`Prefork::recycle`] runs no more tasks.
    generation: u64,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Writes one request line and the blobs it announces.
    fn send(&mut self, line: &str, blobs: &[Blob]) -> std::io::Result<()> {
        self.stdin.write_all(line.as_bytes())?;
        for b in blobs {
            self.stdin.write_all(&b.bytes)?;
        }
        self.stdin.flush()
    }

    /// Reads the blobs of `sizes` that follow a reply line.
    fn read_blobs(&mut self, sizes: &[usize]) -> std::io::Result<Vec<Vec<u8>>> {
        sizes
            .iter()
            .map(|&n| {
                let mut buf = vec![0u8; n];
                self.stdout.read_exact(&mut buf)?;
                Ok(buf)
            })
            .collect()
    }

    /// Sends `sig` to the child's process group (its own, made at spawn).
    fn signal(&self, sig: i32) {
        // SAFETY: signals a process group this worker made.
        unsafe { libc::kill(-self.pid(), sig) };
    }

    /// Ends the child: SIGTERM, then SIGKILL after [`GRACE`]; reaps it.
    fn end(mut self) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let until = Instant::now() + GRACE;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(POLL);
        }
        self.signal(libc::SIGKILL);
        self.child.wait().ok()
    }

    /// Waits up to `within` for a line, or until `stop()` says to give up.
    /// `Ok(None)`: end of file (the child is gone).
    fn read_line(
        &mut self,
        within: Option<Duration>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<String>, Waited> {
        let started = Instant::now();
        while self.stdout.buffer().is_empty() {
            if stop() {
                return Err(Waited::Stopped);
            }
            if within.is_some_and(|w| started.elapsed() > w) {
                return Err(Waited::TooLong);
            }
            let mut fd = libc::pollfd {
                fd: self.stdout.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            let n = unsafe { libc::poll(&mut fd, 1, POLL.as_millis() as i32) };
            if n > 0 {
                break;
            }
        }
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) | Err(_) => Ok(None),
            Ok(_) => Ok(Some(line)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// What a running task may do besides answering, and who hears it.
#[derive(Default, Clone, Copy)]
pub struct Asides<'a> {
    /// The task's slot: a task that secedes gives it up while it waits, and
    /// takes one again when it rejoins.
    pub seat: Option<&'a Seat>,
    /// Hears what the task prints as it prints it (`{"stream", "text"}`).
    pub output: Option<&'a (dyn Fn(&Value) + Sync)>,
}

/// Why a wait for a child's line ended without one.
enum Waited {
    Stopped,
    TooLong,
}

/// A spawn request to the spawner thread, answered on its channel.
type SpawnRequest = mpsc::Sender<std::io::Result<Child>>;

/// The pool.
pub struct Prefork {
    command: ChildCommand,
    idle: Mutex<Vec<Proc>>,
    spawner: Mutex<mpsc::Sender<SpawnRequest>>,
    size: usize,
    generation: AtomicU64,
}

impl std::fmt::Debug for Prefork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefork")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Prefork {
    /// Starts `size` children of `command` and waits until each is ready.
    pub fn start(command: ChildCommand, size: usize) -> Result<Self, PreforkError> {
        let pool = Self {
            spawner: Mutex::new(spawner_thread(command.clone())),
            command,
            idle: Mutex::new(Vec::new()),
            size: size.max(1),
            generation: AtomicU64::new(0),
        };
        pool.fill()?;
        Ok(pool)
    }

    /// Starts as many children as the pool's size, ready, and idle.
    fn fill(&self) -> Result<(), PreforkError> {
        // Start them all first: their imports overlap.
        let children = (0..self.size)
            .map(|_| self.spawn())
            .collect::<Result<Vec<_>, _>>()?;
        let mut ready = Vec::with_capacity(children.len());
        for child in children {
            ready.push(self.greet(child)?);
        }
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ready);
        Ok(())
    }

    /// Replaces every child with a new one, which imports its modules
    /// afresh (a client's `restart()`: edited code is picked up). Idle
    /// children end now; a busy one ends when its task does, instead of
    /// going back to the pool. Returns once the new children are ready.
    pub fn recycle(&self) -> Result<(), PreforkError> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let old = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for p in old {
            p.end();
        }
        self.fill()
    }

    fn current(&self, p: &Proc) -> bool {
        p.generation == self.generation.load(Ordering::SeqCst)
    }

    /// Runs `func(args)` for task `key` in an idle child (starting one if
    /// none is idle), handing it the `blobs` its arguments refer to; gives
    /// up, ending the child, once `stop()` is true. The value, and the
    /// blobs it refers to.
    pub fn call(
        &self,
        key: &str,
        func: &str,
        args: Vec<Value>,
        blobs: &[Blob],
        stop: &dyn Fn() -> bool,
    ) -> Result<(Value, Vec<Vec<u8>>), TaskFailure> {
        self.call_logged(key, func, args, blobs, stop, &Asides::default())
            .0
    }

    /// [`Prefork::call`], and what the task printed if its child sent it
    /// (`{"stdout": ..., "stderr": ...}`, whether it succeeded or failed),
    /// with what `asides` does while it runs.
    pub fn call_logged(
        &self,
        key: &str,
        func: &str,
        args: Vec<Value>,
        blobs: &[Blob],
        stop: &dyn Fn() -> bool,
        asides: &Asides<'_>,
    ) -> (Called, Option<Value>) {
        let mut logs = None;
        let result = self.exchange(key, func, args, blobs, stop, asides, &mut logs);
        (result, logs)
    }

    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &self,
        key: &str,
        func: &str,
        args: Vec<Value>,
        blobs: &[Blob],
        stop: &dyn Fn() -> bool,
        asides: &Asides<'_>,
        logs: &mut Option<Value>,
    ) -> Result<(Value, Vec<Vec<u8>>), TaskFailure> {
        let seat = asides.seat;
        let announced: Vec<Value> = blobs
            .iter()
            .map(|b| serde_json::json!({"hash": b.hash, "size": b.bytes.len()}))
            .collect();
        let request =
            serde_json::json!({"key": key, "func": func, "args": args, "blobs": announced});
        let mut line = request.to_string();
        line.push('\n');
        let mut proc = self.checkout()?;
        if proc.send(&line, blobs).is_err() {
            // It died while idle, after the check: the task never reached
            // it, so it goes to a new process, not down as a crash.
            drop(proc);
            proc = self.fresh()?;
            if proc.send(&line, blobs).is_err() {
                return Err(crashed(key, "could not be given the task"));
            }
        }
        let answer = loop {
            let read = proc.read_line(None, stop);
            let Ok(Some(line)) = &read else { break read };
            match Line::of(line) {
                Line::Answer => break read,
                Line::Secede => {
                    if let Some(s) = seat {
                        s.secede();
                    }
                }
                Line::Output(chunk) => {
                    if let Some(forward) = asides.output {
                        forward(&chunk);
                    }
                }
                Line::Rejoin => {
                    let rejoined = seat.is_none_or(|s| s.rejoin(stop));
                    let said = format!("{{\"rejoined\":{rejoined}}}\n");
                    if proc.send(&said, &[]).is_err() {
                        break Ok(None);
                    }
                }
            }
        };
        match answer {
            Ok(Some(line)) => {
                let result = match parse_reply_logged(&line, logs) {
                    Ok((value, sizes)) => match proc.read_blobs(&sizes) {
                        Ok(out) => Ok((value, out)),
                        Err(e) => {
                            // The stream is out of step: this child is done.
                            proc.end();
                            return Err(crashed(key, &format!("sent a cut value ({e})")));
                        }
                    },
                    Err(e) => Err(e),
                };
                // Past the pool's size (a seceded task's slot served
                // another, which started a child), a child is not kept.
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                if self.current(&proc) && idle.len() < self.size {
                    idle.push(proc);
                } else {
                    drop(idle);
                    proc.end();
                }
                result
            }
            Ok(None) => {
                let status = proc.child.wait();
                Err(match status {
                    Ok(s) => crate::isolation::outcome(key, s, b"", 0)
                        .err()
                        .unwrap_or_else(|| crashed(key, "ended without a result")),
                    Err(e) => crashed(key, &e.to_string()),
                })
            }
            Err(_) => {
                proc.end();
                Err(TaskFailure::new(
                    "CancelledError",
                    format!("task {key} was asked to stop; its process was ended"),
                    "",
                ))
            }
        }
    }

    /// An idle child that is still alive, or a new one.
    fn checkout(&self) -> Result<Proc, TaskFailure> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let Some(mut p) = idle else {
                return self.fresh();
            };
            // Killed while idle (by an operator, the OOM killer): reaped
            // here, and the next one is tried; one from before a recycle
            // is ended.
            if matches!(p.child.try_wait(), Ok(None)) {
                if self.current(&p) {
                    return Ok(p);
                }
                p.end();
            }
        }
    }

    /// A new child, ready.
    fn fresh(&self) -> Result<Proc, TaskFailure> {
        self.spawn()
            .and_then(|c| self.greet(c))
            .map_err(|e| TaskFailure::new("WorkerError", e.to_string(), ""))
    }

    /// Starts one child (on the spawner thread, see [`spawner_thread`]).
    fn spawn(&self) -> Result<Child, PreforkError> {
        let (tx, rx) = mpsc::channel();
        let program = self.command.program.display().to_string();
        let gone = || PreforkError::Spawn {
            program: program.clone(),
            source: std::io::Error::other("the spawner thread is gone"),
        };
        self.spawner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(tx)
            .map_err(|_| gone())?;
        rx.recv()
            .map_err(|_| gone())?
            .map_err(|source| PreforkError::Spawn {
                program: program.clone(),
                source,
            })
    }

    /// Waits for a new child's first line.
    fn greet(&self, mut child: Child) -> Result<Proc, PreforkError> {
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PreforkError::NotReady("the child has no pipes".into()));
        };
        let mut proc = Proc {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            generation: self.generation.load(Ordering::SeqCst),
        };
        let line = match proc.read_line(Some(READY_WITHIN), &|| false) {
            Ok(Some(line)) => line,
            Ok(None) => {
                let status = proc.child.wait().ok();
                return Err(PreforkError::NotReady(format!(
                    "{:?} exited ({}) before it was ready; its error output is in this worker's log",
                    self.command.program,
                    status.map_or_else(|| "status unknown".into(), |s| s.to_string())
                )));
            }
            Err(_) => {
                return Err(PreforkError::NotReady(format!(
                    "not ready after {}s",
                    READY_WITHIN.as_secs()
                )));
            }
        };
        match serde_json::from_str::<Hello>(&line) {
            Ok(Hello { ready: true, .. }) => {
                if let Some(Greeting(text)) = &self.command.greeting {
                    proc.send(&format!("{}\n", text.trim_end()), &[])
                        .map_err(|e| {
                            PreforkError::NotReady(format!("could not greet a new child: {e}"))
                        })?;
                }
                Ok(proc)
            }
            Ok(Hello {
                fatal: Some(why), ..
            }) => Err(PreforkError::NotReady(why)),
            _ => Err(PreforkError::NotReady(format!(
                "unexpected first line from the child: {}",
                line.trim_end()
            ))),
        }
    }
}

/// Children are started from one long-lived thread: `PR_SET_PDEATHSIG` fires
/// when the *thread* that forked a child ends, and the blocking pool's
/// threads end when idle, which would kill healthy children.
fn spawner_thread(command: ChildCommand) -> mpsc::Sender<SpawnRequest> {
    let (tx, rx) = mpsc::channel::<SpawnRequest>();
    std::thread::Builder::new()
        .name("warren-prefork".into())
        .spawn(move || {
            for reply in rx {
                let _ = reply.send(spawn_child(&command));
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the prefork spawner thread: {e}"));
    tx
}

fn spawn_child(command: &ChildCommand) -> std::io::Result<Child> {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args);
    for (name, value) in &command.env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: between fork and exec only async-signal-safe calls are made.
    unsafe {
        cmd.pre_exec(|| {
            // Its own group: a stop ends what the task started too, and a
            // Ctrl-C at the worker's terminal reaches the worker alone
            // (which drains, letting running tasks finish).
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

fn crashed(key: &str, how: &str) -> TaskFailure {
    TaskFailure::new(
        "TaskCrashed",
        format!("the process running task {key} {how}; the worker goes on"),
        "",
    )
}

mod protocol;

pub use protocol::{Blob, Called, Greeting, parse_reply, parse_reply_logged};
use protocol::{Hello, Line};

#[cfg(test)]
mod tests;

//! Running warren's async code from Python's threads.
//!
//! One tokio runtime per process carries every client's connections. A call
//! that waits (a result, a gather, a restart) runs as a task on it while the
//! calling thread releases the GIL, so other Python threads go on; the thread
//! wakes every [`SIGNAL_CHECK`] to let Python handle a pending signal, so
//! Ctrl-C interrupts a wait with `KeyboardInterrupt` (and abandons the wait,
//! not the work: the task goes on in warren).
//!
//! **Exit.** A thread that takes the GIL back after the interpreter began
//! to finalise is ended by CPython (before 3.14) with `pthread_exit`, whose
//! forced unwind meets the `catch_unwind` of PyO3's call trampoline: glibc
//! aborts the whole process ("FATAL: exception not rethrown") after the
//! program had finished well. Daemon threads waiting in warren (a done
//! callback, forwarded output, a lease's renewal, a user's thread) are
//! exactly such threads. So an `atexit` hook, registered when the module is
//! imported and therefore run after every later one, calls [`exiting`]:
//! from then on no thread gives the GIL up in here, and the hook waits,
//! bounded, until every thread that had has taken it back, while the
//! interpreter still lets it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::WarrenError;

/// How often a blocked call lets Python look at pending signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// How long [`exiting`] waits for threads to come back: a wait wakes every
/// [`SIGNAL_CHECK`], and a seal or open is one pass over bytes in memory.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Set once the interpreter is exiting: nothing releases the GIL any more.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Threads inside [`released`], that is without the GIL in warren's code.
static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// The process's runtime, made on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("warren-client")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start warren's tokio runtime: {e}"))
    })
}

/// Runs `f` with the GIL released, counted so that [`exiting`] can wait
/// for it; once the interpreter is exiting, `f` runs holding the GIL.
///
/// The count is raised while this thread still holds the GIL, and
/// [`exiting`] sets its flag holding it too, so each thread either is
/// counted before the flag or sees it.
pub fn released<T, F>(py: Python<'_>, f: F) -> T
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    if EXITING.load(Ordering::SeqCst) {
        return f();
    }
    let _counted = Counted::new();
    py.allow_threads(f)
}

/// One thread counted in [`RELEASED`]; dropped once the GIL is back, on a
/// panic's unwind too, so a panic never holds [`exiting`] to its grace.
struct Counted;

impl Counted {
    fn new() -> Self {
        RELEASED.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        RELEASED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `atexit` hook: stops threads from releasing the GIL in warren and
/// waits (at most [`EXIT_GRACE`]) until those that had have taken it back.
/// Their waits end with [`WarrenError`] saying the interpreter is exiting.
#[pyfunction]
pub fn exiting(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + EXIT_GRACE;
    py.allow_threads(|| {
        while RELEASED.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

/// Runs `fut` on the runtime and waits for it with the GIL released;
/// a signal handler that raises (Ctrl-C's `KeyboardInterrupt`) ends the
/// wait, and so does the interpreter's exit.
pub fn wait<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let mut handle = runtime().spawn(fut);
    loop {
        if EXITING.load(Ordering::SeqCst) {
            handle.abort();
            return Err(WarrenError::new_err(
                "warren's call was abandoned: the Python interpreter is exiting",
            ));
        }
        let step = released(py, || {
            runtime().block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut handle).await })
        });
        match step {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => return Err(WarrenError::new_err(format!("warren's call failed: {e}"))),
            Err(_elapsed) => {
                if let Err(e) = py.check_signals() {
                    handle.abort();
                    return Err(e);
                }
            }
        }
    }
}

//! Running warren's async code from Python's threads.
//!
//! One tokio runtime per process carries every client's connections. A call
//! that waits (a result, a gather, a restart) runs as a task on it while the
//! calling thread releases the GIL, so other Python threads go on; the thread
//! wakes every [`SIGNAL_CHECK`] to let Python handle a pending signal, so
//! Ctrl-C interrupts a wait with `KeyboardInterrupt` (and abandons the wait,
//! not the work: the task goes on in warren).

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;

use crate::WarrenError;

/// How often a blocked call lets Python look at pending signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

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

/// Runs `fut` on the runtime and waits for it with the GIL released;
/// a signal handler that raises (Ctrl-C's `KeyboardInterrupt`) ends the wait.
pub fn wait<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let mut handle = runtime().spawn(fut);
    loop {
        let step = py.allow_threads(|| {
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

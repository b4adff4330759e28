//! Cooperative cancellation of running tasks.
//!
//! A blocking function cannot be stopped from outside, so warren asks it to
//! stop: while a task runs, its thread carries a flag that the worker raises
//! when the future is cancelled, the namespace restarts, or the task's time
//! limit passes. Long-running task code polls [`is_cancelled`] (or sleeps with
//! [`sleep`], which wakes up for it) and returns early; code that never checks
//! runs to the end, and its late result is dropped by the scheduler.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::registry::TaskError;

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// Whether the task running on this thread has been asked to stop.
pub fn is_cancelled() -> bool {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    })
}

/// Sleeps for `d`, returning early with a `CancelledError` if the task is
/// asked to stop.
pub fn sleep(d: Duration) -> Result<(), TaskError> {
    let end = Instant::now() + d;
    loop {
        if is_cancelled() {
            return Err(TaskError::new(
                "CancelledError",
                "the task was cancelled while sleeping",
            ));
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Runs `f` with `flag` as this thread's cancellation flag.
pub(crate) fn with_flag<T>(flag: Arc<AtomicBool>, f: impl FnOnce() -> T) -> T {
    CURRENT.with(|c| *c.borrow_mut() = Some(flag));
    let out = f();
    CURRENT.with(|c| *c.borrow_mut() = None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_wakes_up_when_the_flag_is_raised() {
        let flag = Arc::new(AtomicBool::new(false));
        let raiser = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            raiser.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let r = with_flag(flag, || sleep(Duration::from_secs(10)));
        assert_eq!(r.unwrap_err().kind(), "CancelledError");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!is_cancelled(), "the flag is cleared after the task");
    }
}

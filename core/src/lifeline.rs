//! A lifeline: a process started by another one (a Python `LocalCluster`, a
//! notebook's `Client()`) stops when its starter dies, however it dies.
//!
//! A starter's `atexit` handler covers a normal exit, but not a SIGKILL, a
//! crash or a Jupyter kernel restart, which would leave a scheduler and
//! workers running for nobody. `PR_SET_PDEATHSIG` does not fit either: it
//! fires when the *thread* that forked the child ends, which in Python may
//! be any short-lived thread. A pipe does: the starter keeps the write end
//! (never inherited by anything else) and hands the read end to its
//! children, naming its number in [`ENV`]. The kernel closes the write end
//! when the starter dies, the read returns end-of-file, and the child sends
//! itself SIGTERM: the same drain as `warren down` or a service manager's
//! stop.

use std::thread::JoinHandle;

use tracing::{info, warn};

/// The variable naming the read end's file descriptor.
pub const ENV: &str = "WARREN_LIFELINE_FD";

/// Watches the lifeline named by [`ENV`], if any, on a thread of its own.
/// A value that is not an open pipe is ignored with a warning: the variable
/// may have been inherited by a process its starter did not mean.
pub fn watch() -> Option<JoinHandle<()>> {
    let text = std::env::var(ENV).ok()?;
    let Some(fd) = parse(&text) else {
        warn!(value = %text, "{ENV} is not a file descriptor number: ignored");
        return None;
    };
    if !is_pipe(fd) {
        warn!(fd, "{ENV} names no open pipe: ignored");
        return None;
    }
    // Programs this process starts (a worker's tasks) must not hold it open.
    // SAFETY: fcntl on a descriptor checked open above; no memory is touched.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let spawned = std::thread::Builder::new()
        .name("warren-lifeline".into())
        .spawn(move || {
            wait_for_eof(fd);
            info!("the process that started this one is gone: stopping (as on SIGTERM)");
            // SAFETY: signalling this very process; the runtime's SIGTERM
            // handler starts the drain.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        });
    spawned.ok()
}

/// The descriptor number in `text`: a small non-negative integer, never one
/// of the standard streams.
pub fn parse(text: &str) -> Option<i32> {
    text.trim().parse::<i32>().ok().filter(|fd| *fd > 2)
}

/// Whether `fd` is an open pipe (a FIFO).
fn is_pipe(fd: i32) -> bool {
    // SAFETY: fstat writes only into the zeroed struct it is given.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
}

/// Blocks until the pipe's write end is closed everywhere.
fn wait_for_eof(fd: i32) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return;
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbers_past_the_standard_streams_are_descriptors() {
        assert_eq!(parse("7"), Some(7));
        assert_eq!(parse(" 12\n"), Some(12));
        assert_eq!(parse("2"), None);
        assert_eq!(parse("0"), None);
        assert_eq!(parse("-5"), None);
        assert_eq!(parse("seven"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn a_pipe_is_a_pipe_and_a_closed_write_end_ends_the_wait() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read, write] = fds;
        assert!(is_pipe(read));
        let waiter = std::thread::spawn(move || wait_for_eof(read));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "the wait ended with the write end open"
        );
        // SAFETY: closing descriptors this test opened.
        unsafe { libc::close(write) };
        waiter.join().expect("the waiter panicked");
        unsafe { libc::close(read) };
        assert!(!is_pipe(read), "a closed descriptor is no pipe");
    }
}

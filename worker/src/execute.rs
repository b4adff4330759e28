//! Running one task's function: on tokio's blocking pool (task functions are
//! plain blocking code, and the runtime must stay free to receive and
//! report), or in a child process ([`crate::isolation`]), with its time
//! limit, its `processing` report, its metrics, the values it read and made
//! ([`crate::values`]), and the size check of its result.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{debug, info};
use warren_core::binary::context;
use warren_core::messages::{TaskFailure, TaskResult, WorkMessage};
use warren_core::settings::Isolation;
use warren_core::sizing;
use warren_core::store::Store;

use crate::registry::CallSite;
use crate::report::Report;
use crate::seat::Seat;
use crate::shared::Shared;

/// Runs the function on the blocking pool; says `processing` if it takes a
/// while; gives up at the task's time limit (asking the function to stop).
pub(crate) async fn execute(
    shared: &Shared,
    store: &Store,
    msg: WorkMessage,
    seat: Arc<Seat>,
) -> TaskResult {
    let registry = shared.registry.clone();
    let identity = shared.identity.clone();
    let key = msg.key.clone();
    // Checked on arrival already (`WorkMessage::validate`); a limit no
    // timer can hold is never turned into one.
    let limit = msg
        .timeout_secs
        .and_then(|s| warren_core::limits::timeout(s).ok());
    let stop = Arc::new(AtomicBool::new(false));
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone(), stop.clone());
    let started = std::time::Instant::now();
    if let Some(at) = msg.dispatched_at_ms {
        let waited = warren_core::messages::now_ms().saturating_sub(at);
        shared.metrics.latency.observe(waited as f64 / 1000.0);
    }
    shared.metrics.running.fetch_add(1, Ordering::Relaxed);
    let flag = stop.clone();
    // A program task is a process of its own already.
    let isolation = if msg.func == warren_core::command::COMMAND_FUNC {
        Isolation::Thread
    } else {
        shared.isolation
    };
    let mut handle = match isolation {
        Isolation::Thread => {
            let values = crate::values::through_store(store, tokio::runtime::Handle::current());
            tokio::task::spawn_blocking(move || {
                let site = CallSite {
                    key: &msg.key,
                    worker: &identity,
                    seat: Some(&seat),
                };
                context::within(values, || {
                    crate::cancel::with_flag(flag, || registry.call(&msg.func, msg.args, site))
                })
            })
        }
        // The child watches the same flag: a time limit, a cancel or a
        // restart sets it, and the child is ended for real.
        Isolation::Process => {
            let store = store.clone();
            let memory = shared.max_memory_per_task_mb;
            tokio::spawn(async move {
                let values = match crate::values::read_all(&store, &msg.key, &msg.args).await {
                    Ok(v) => v,
                    Err(failure) => return (Err(failure), Vec::new()),
                };
                crate::isolation::run_in_child(
                    msg.key, msg.func, msg.args, values, identity, flag, memory,
                )
                .await
            })
        }
    };
    let deadline = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut told_started = false;
    let joined = loop {
        tokio::select! {
            r = &mut handle => break Some(r),
            () = &mut deadline => break None,
            () = tokio::time::sleep(shared.started_after), if !told_started => {
                told_started = true;
                let _ = shared.reports.send(Report::Started(key.clone()));
            }
        }
    };
    shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key);
    debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "task ended"
    );
    shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
    shared
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let Some(joined) = joined else {
        shared.metrics.timed_out.fetch_add(1, Ordering::Relaxed);
        // The slot is free now. A child process is ended (SIGTERM, then
        // SIGKILL); in a thread a cooperative function stops soon, others run
        // on in the blocking pool and their result is dropped.
        stop.store(true, Ordering::Relaxed);
        let secs = limit.map_or(0.0, |d| d.as_secs_f64());
        info!(limit_secs = secs, "task exceeded its time limit");
        return TaskResult::Err(TaskFailure::new(
            "TimeoutError",
            format!("task {key} exceeded its time limit of {secs}s"),
            format!(
                "Traceback (most recent call last):\n  task {key} on worker {}\nTimeoutError: time limit of {secs}s exceeded",
                shared.identity
            ),
        ));
    };
    let joined = match joined {
        Ok((Ok(v), made)) => match crate::values::store_made(store, &key, made).await {
            Ok(()) => Ok(Ok(v)),
            Err(failure) => Ok(Err(failure)),
        },
        Ok((Err(failure), _)) => Ok(Err(failure)),
        Err(e) => Err(e),
    };
    match joined {
        Ok(Ok(v)) => match oversized(&key, &v, result_limit(shared)) {
            Some(failure) => {
                shared.metrics.failed.fetch_add(1, Ordering::Relaxed);
                info!(error = %failure, "task result refused");
                TaskResult::Err(failure)
            }
            None => {
                shared.metrics.finished.fetch_add(1, Ordering::Relaxed);
                TaskResult::Ok(v)
            }
        },
        Ok(Err(failure)) => {
            shared.metrics.failed.fetch_add(1, Ordering::Relaxed);
            info!(error = %failure, "task failed");
            TaskResult::Err(failure)
        }
        // The registry catches panics, so this is a cancelled blocking pool.
        Err(e) => TaskResult::Err(TaskFailure::new("WorkerError", e.to_string(), "")),
    }
}

/// The largest result this worker can report, and the setting behind it:
/// `max_payload_bytes`, unless the broker's message limit (learned from a
/// refusal) leaves less room in a report.
fn result_limit(shared: &Shared) -> (usize, &'static str) {
    let payload = shared.max_result_bytes;
    let message = crate::report::room_for_outcome(shared.topology.max_message_bytes());
    if message < payload {
        (
            message,
            "RabbitMQ's max_message_size, less a report's envelope",
        )
    } else {
        (payload, "setting max_payload_bytes")
    }
}

/// The error of a result too big to carry: refused here, as the task's own
/// error, rather than a report the broker or the clients could not take.
fn oversized(
    key: &str,
    value: &serde_json::Value,
    (limit, why): (usize, &str),
) -> Option<TaskFailure> {
    let size = sizing::json_len(value);
    (size > limit).then(|| {
        TaskFailure::new(
            "PayloadTooLarge",
            format!(
                "the result of task {key} is {size} bytes ({}), over the limit of {limit} bytes ({}, {why})",
                sizing::human_bytes(size),
                sizing::human_bytes(limit)
            ),
            "",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_over_the_limit_is_the_tasks_error_naming_both_sizes() {
        let v = serde_json::json!("x".repeat(100));
        let why = "setting max_payload_bytes";
        assert!(oversized("k-1", &v, (102, why)).is_none());
        let failure = oversized("k-1", &v, (101, why)).unwrap();
        assert_eq!(failure.kind, "PayloadTooLarge");
        assert!(
            failure.message.contains("is 102 bytes"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("limit of 101 bytes"),
            "{}",
            failure.message
        );
    }
}

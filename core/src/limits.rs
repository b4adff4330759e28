//! The bounds every field of a message must respect, in one place.
//!
//! A value read from the network becomes a RabbitMQ name, a [`Duration`], a
//! Redis score or a count of script calls, and each of those breaks past some
//! limit: an AMQP short string holds 255 bytes (lapin panics converting a
//! longer one), `Duration::from_secs_f64(1e20)` panics, a retry count of four
//! billion keeps a failing task alive for ever. The client checks these rules
//! before it sends, the scheduler when a request arrives and the worker before
//! it runs, with the same functions: what one refuses, none of them accepts.
//! All of it is pure, so it is tested with no server.

use std::time::Duration;

/// The longest name RabbitMQ takes (an AMQP short string): a queue, an
/// exchange, a routing key, a consumer tag, a `reply_to`.
pub const AMQP_NAME_MAX: usize = 255;

/// The longest time limit a task may have: a year. Longer is a typo (`1e20`)
/// or a number that no timer can hold.
pub const MAX_TIMEOUT_SECS: f64 = 366.0 * 24.0 * 3600.0;

/// The most retries a task may ask for: enough for any real back-off, few
/// enough that a broken task ends.
pub const MAX_RETRIES: u32 = 1000;

/// The most tasks one submit request may carry (clients send at most 1000;
/// a scheduler refuses a bigger request rather than run one script over it).
pub const MAX_TASKS_PER_REQUEST: usize = 1000;

/// Checks a task's time limit and returns it as a [`Duration`]: finite,
/// above zero, at most [`MAX_TIMEOUT_SECS`].
pub fn timeout(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_TIMEOUT_SECS {
        return Err(format!(
            "time limit {secs} s is outside the range above 0 and at most {MAX_TIMEOUT_SECS} s (a year)"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("time limit {secs} s: {e}"))
}

/// Checks a task's retry count.
pub fn retries(n: u32) -> Result<(), String> {
    if n > MAX_RETRIES {
        return Err(format!(
            "retries {n} is more than the {MAX_RETRIES} allowed"
        ));
    }
    Ok(())
}

/// Checks a full RabbitMQ name (`what` says which, for the message).
pub fn amqp_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > AMQP_NAME_MAX {
        return Err(format!(
            "{what} {} is {} bytes, more than RabbitMQ's {AMQP_NAME_MAX}",
            crate::taskkey::shown(name),
            name.len()
        ));
    }
    Ok(())
}

/// Checks a work queue's name as it will be declared in `namespace`: the
/// name RabbitMQ sees is `<namespace>.work.<queue>`, so that is what must fit.
pub fn work_queue(namespace: &str, queue: &str) -> Result<(), String> {
    crate::taskkey::validate_key(queue).map_err(|e| format!("queue name: {e}"))?;
    let full = crate::topology::work_queue_name(namespace, queue);
    if full.len() > AMQP_NAME_MAX {
        return Err(format!(
            "queue name {} is too long: RabbitMQ's name for it, {namespace}.work.<queue>, would be {} bytes, more than its {AMQP_NAME_MAX} (at most {} bytes of queue name in namespace {namespace:?})",
            crate::taskkey::shown(queue),
            full.len(),
            AMQP_NAME_MAX - (full.len() - queue.len()),
        ));
    }
    Ok(())
}

/// The prefix of every client's reply queue in `namespace`: a scheduler or
/// worker answers a `reply_to` only when it starts with this, so a request
/// cannot make them publish into another namespace's (or any other) queue.
pub fn client_queue_prefix(namespace: &str) -> String {
    format!("{namespace}.client.")
}

/// Whether `reply_to` names a client reply queue of `namespace`.
pub fn is_client_queue(namespace: &str, reply_to: &str) -> bool {
    reply_to.len() <= AMQP_NAME_MAX
        && reply_to
            .strip_prefix(&client_queue_prefix(namespace))
            .is_some_and(|rest| {
                !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_are_finite_positive_and_at_most_a_year() {
        assert_eq!(timeout(0.5), Ok(Duration::from_millis(500)));
        assert!(timeout(MAX_TIMEOUT_SECS).is_ok());
        for bad in [
            1e20,
            f64::INFINITY,
            f64::NAN,
            -1.0,
            0.0,
            MAX_TIMEOUT_SECS + 1.0,
        ] {
            let e = timeout(bad).unwrap_err();
            assert!(e.contains("time limit"), "{bad}: {e}");
        }
    }

    #[test]
    fn retries_are_bounded() {
        assert!(retries(MAX_RETRIES).is_ok());
        assert!(retries(u32::MAX).unwrap_err().contains("4294967295"));
    }

    #[test]
    fn a_work_queue_name_counts_with_its_namespace() {
        let ns = "team-a";
        let room = AMQP_NAME_MAX - "team-a.work.".len();
        assert!(work_queue(ns, &"q".repeat(room)).is_ok());
        let e = work_queue(ns, &"q".repeat(room + 1)).unwrap_err();
        assert!(
            e.contains("256 bytes") && e.contains(&format!("at most {room}")),
            "{e}"
        );
        // 250 bytes pass the key rule, not RabbitMQ's.
        assert!(work_queue(ns, &"q".repeat(250)).is_err());
        assert!(work_queue(ns, "has space").is_err());
    }

    #[test]
    fn only_the_namespaces_client_queues_are_answered() {
        assert!(is_client_queue("ns", "ns.client.3f2a-b_c"));
        assert!(!is_client_queue("ns", "ns.client."));
        assert!(!is_client_queue("ns", "other.client.abc"));
        assert!(!is_client_queue("ns", "ns.work.default"));
        assert!(!is_client_queue("ns", "ns.client.a.b"));
        assert!(!is_client_queue("ns", "amq.gen-abc"));
        assert!(!is_client_queue("ns", ""));
        assert!(!is_client_queue(
            "ns",
            &format!("ns.client.{}", "a".repeat(300))
        ));
    }
}

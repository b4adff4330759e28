//! Which tasks of a submit request are recorded and which are refused: a
//! pure decision (no broker, no Redis), so its rules are tested alone. The
//! client applies the same rules before it sends; the scheduler applies them
//! again because a request is anyone's who can publish to `<ns>.submit`.

use warren_core::limits;
use warren_core::messages::{Refusal, TaskSpec};

/// Splits a submitted batch into the tasks to record and those refused
/// ([`TaskSpec::validate`], the rules the client applies before sending, in
/// `namespace`). A request of `size` bytes over `max_payload` or with more
/// than [`limits::MAX_TASKS_PER_REQUEST`] tasks is refused whole: a client
/// is not trusted to have split it, and one script call must stay short.
pub(crate) fn admit(
    namespace: &str,
    tasks: Vec<TaskSpec>,
    size: usize,
    max_payload: usize,
) -> (Vec<TaskSpec>, Vec<Refusal>) {
    let whole = if size > max_payload {
        Some(format!(
            "the submit request is {size} bytes, over the limit of {max_payload} bytes (setting max_payload_bytes)"
        ))
    } else if tasks.len() > limits::MAX_TASKS_PER_REQUEST {
        Some(format!(
            "the submit request carries {} tasks, more than the {} one request may",
            tasks.len(),
            limits::MAX_TASKS_PER_REQUEST
        ))
    } else {
        None
    };
    let mut ok = Vec::with_capacity(tasks.len());
    let mut refused = Vec::new();
    for t in tasks {
        let verdict = match &whole {
            Some(reason) => Err(reason.clone()),
            None => t.validate(namespace),
        };
        match verdict {
            Ok(()) => ok.push(t),
            Err(reason) => refused.push(Refusal {
                // A key too long to echo is cut: the reason says what it was.
                key: t.key.chars().take(80).collect(),
                reason: reason.chars().take(300).collect(),
            }),
        }
    }
    (ok, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(key: &str) -> TaskSpec {
        TaskSpec::new(key, "inc", vec![serde_json::json!(1)])
    }

    #[test]
    fn an_invalid_task_is_refused_alone() {
        let long = "x".repeat(300);
        let (ok, refused) = admit("ns", vec![task("a"), task(&long), task("b")], 100, 1000);
        let keys: Vec<&str> = ok.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, vec!["a", "b"]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].key.len(), 80);
        assert!(
            refused[0].reason.contains("1-250 bytes"),
            "{}",
            refused[0].reason
        );
        assert!(refused[0].reason.len() <= 300);
    }

    #[test]
    fn an_oversized_or_overfull_request_is_refused_whole() {
        let (ok, refused) = admit("ns", vec![task("a"), task("b")], 2000, 1000);
        assert!(ok.is_empty());
        assert_eq!(refused.len(), 2);
        assert!(
            refused[0].reason.contains("max_payload_bytes"),
            "{}",
            refused[0].reason
        );
        let many: Vec<TaskSpec> = (0..=limits::MAX_TASKS_PER_REQUEST)
            .map(|i| task(&format!("k{i}")))
            .collect();
        let (ok, refused) = admit("ns", many, 100, 1000);
        assert!(ok.is_empty());
        assert!(
            refused[0].reason.contains("1001 tasks"),
            "{}",
            refused[0].reason
        );
    }
}

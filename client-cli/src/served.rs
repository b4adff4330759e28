//! Whether a live worker serves a function: the check `warren submit` makes
//! before it sends, so a misspelled name fails at once instead of at `result`.
//!
//! Workers announce their functions in their heartbeats (`WorkerInfo`), so
//! the check is one Redis read and a pure decision over what it returned.
//! A worker too old to announce its functions is trusted to run anything.

use std::collections::BTreeSet;

use warren_core::messages::WorkerInfo;

/// `Ok` if some live worker consuming `queue` runs `func`; otherwise the
/// message the user sees: what is served there, and the closest name.
pub fn check(func: &str, queue: &str, workers: &[WorkerInfo]) -> Result<(), String> {
    let on_queue: Vec<&WorkerInfo> = workers
        .iter()
        .filter(|w| w.queues.iter().any(|q| q == queue))
        .collect();
    if on_queue.is_empty() {
        let elsewhere: BTreeSet<&str> = workers
            .iter()
            .flat_map(|w| w.queues.iter().map(String::as_str))
            .collect();
        let seen = if elsewhere.is_empty() {
            "no live worker at all".to_string()
        } else {
            format!(
                "live workers serve only the queues {}",
                elsewhere.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let start = if queue == warren_core::routing::PYTHON_QUEUE {
            "python -m warren worker MODULE".to_string()
        } else {
            format!("warren-worker --queues {queue}")
        };
        return Err(format!(
            "no live worker consumes queue {queue:?} ({seen}): start one ({start}), or pass --allow-unserved to submit for a worker that comes later"
        ));
    }
    let mut served = BTreeSet::new();
    for w in &on_queue {
        match &w.functions {
            // An older worker that does not say: it may run anything.
            None => return Ok(()),
            Some(fs) => served.extend(fs.iter().map(String::as_str)),
        }
    }
    if served.contains(func) {
        return Ok(());
    }
    let elsewhere: BTreeSet<&str> = workers
        .iter()
        .filter(|w| w.functions.iter().flatten().any(|f| f == func))
        .flat_map(|w| w.queues.iter().map(String::as_str))
        .collect();
    if !elsewhere.is_empty() {
        let queues = elsewhere.into_iter().collect::<Vec<_>>().join(", ");
        return Err(format!(
            "no live worker on queue {queue:?} runs function {func:?}, but workers on queue {queues} do: pass --queue (queue= in Python) to send it there"
        ));
    }
    let hint = closest(func, served.iter().copied())
        .map(|c| format!(" Did you mean {c:?}?"))
        .unwrap_or_default();
    Err(format!(
        "no live worker on queue {queue:?} runs function {func:?}.{hint} Functions served there: {} (pass --allow-unserved to submit for a worker that comes later)",
        served.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

/// `Ok` if some live worker consuming `queue` allows `program`
/// (`--allow-command`); otherwise what the user must do.
pub fn check_command(program: &str, queue: &str, workers: &[WorkerInfo]) -> Result<(), String> {
    let on_queue = workers
        .iter()
        .filter(|w| w.queues.iter().any(|q| q == queue));
    let mut allowed = BTreeSet::new();
    for w in on_queue {
        if warren_core::command::allows(&w.commands, program) {
            return Ok(());
        }
        allowed.extend(w.commands.iter().map(String::as_str));
    }
    let what = if allowed.is_empty() {
        "none allows any program".to_string()
    } else {
        format!(
            "they allow {}",
            allowed.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(format!(
        "no live worker on queue {queue:?} allows program {program:?} ({what}): start one with warren-worker --allow-command {program} (or allowed_commands in warren.toml), or pass --allow-unserved to submit for a worker that comes later"
    ))
}

/// The candidate nearest to `name` by edit distance, if it is near enough
/// to be a likely typo (at most a third of the name's length, at least 2).
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = Vec::with_capacity(b.len() + 1);
        row.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            row.push(substitute.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(queues: &[&str], functions: Option<&[&str]>) -> WorkerInfo {
        WorkerInfo {
            worker: "h:1".into(),
            host: "h".into(),
            pid: 1,
            concurrency: 1,
            queues: queues.iter().map(|q| q.to_string()).collect(),
            running: vec![],
            completed: 0,
            at_ms: 0,
            functions: functions.map(|fs| fs.iter().map(|f| f.to_string()).collect()),
            commands: Vec::new(),
            draining: false,
        }
    }

    #[test]
    fn a_served_function_passes() {
        let ws = [worker(&["default"], Some(&["inc", "sleep"]))];
        assert_eq!(check("inc", "default", &ws), Ok(()));
    }

    #[test]
    fn a_typo_names_the_closest_function_and_lists_the_served_ones() {
        let ws = [
            worker(&["default"], Some(&["count_primes_less_than", "inc"])),
            worker(&["default"], Some(&["sleep"])),
        ];
        let e = check("count_primes_lesss_than", "default", &ws).unwrap_err();
        assert!(
            e.contains("Did you mean \"count_primes_less_than\"?"),
            "{e}"
        );
        assert!(e.contains("count_primes_less_than, inc, sleep"), "{e}");
        assert!(e.contains("--allow-unserved"), "{e}");
    }

    #[test]
    fn nothing_close_suggests_nothing() {
        let ws = [worker(&["default"], Some(&["inc"]))];
        let e = check("frobnicate", "default", &ws).unwrap_err();
        assert!(!e.contains("Did you mean"), "{e}");
    }

    #[test]
    fn only_workers_of_the_task_queue_count() {
        let ws = [
            worker(&["default"], Some(&["inc"])),
            worker(&["gpu"], Some(&["train"])),
        ];
        assert!(check("train", "default", &ws).is_err());
        assert_eq!(check("train", "gpu", &ws), Ok(()));
        let e = check("inc", "tpu", &ws).unwrap_err();
        assert!(e.contains("only the queues default, gpu"), "{e}");
    }

    #[test]
    fn a_function_served_on_another_queue_names_that_queue() {
        let ws = [
            worker(&["default"], Some(&["inc"])),
            worker(&["python"], Some(&["mod:inc"])),
        ];
        let e = check("mod:inc", "default", &ws).unwrap_err();
        assert!(e.contains("workers on queue python do"), "{e}");
        let e = check("inc", "python", &ws).unwrap_err();
        assert!(e.contains("workers on queue default do"), "{e}");
    }

    #[test]
    fn no_python_worker_says_how_to_start_one() {
        let ws = [worker(&["default"], Some(&["inc"]))];
        let e = check("mod:f", "python", &ws).unwrap_err();
        assert!(e.contains("python -m warren worker MODULE"), "{e}");
    }

    #[test]
    fn a_program_must_be_allowed_by_a_worker_of_its_queue() {
        let mut w = worker(&["default"], Some(&["warren.cmd"]));
        w.commands = vec!["seq".into(), "/opt/tools/*".into()];
        let ws = [w];
        assert_eq!(check_command("seq", "default", &ws), Ok(()));
        assert_eq!(check_command("/opt/tools/x", "default", &ws), Ok(()));
        let e = check_command("rm", "default", &ws).unwrap_err();
        assert!(
            e.contains("--allow-command rm") && e.contains("they allow /opt/tools/*, seq"),
            "{e}"
        );
        let e = check_command("seq", "gpu", &ws).unwrap_err();
        assert!(e.contains("none allows any program"), "{e}");
    }

    #[test]
    fn no_worker_at_all_says_so() {
        let e = check("inc", "default", &[]).unwrap_err();
        assert!(e.contains("no live worker at all"), "{e}");
    }

    #[test]
    fn a_worker_that_does_not_announce_its_functions_is_trusted() {
        let ws = [worker(&["default"], None)];
        assert_eq!(check("anything", "default", &ws), Ok(()));
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("inc", "inc"), 0);
        assert_eq!(edit_distance("inc", "inc2"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}

//! What a decoded message must satisfy before anything acts on it.
//!
//! Decoding only says a body has the right shape; these rules say its values
//! are ones every component can carry: names RabbitMQ takes, numbers in range,
//! arguments nested no deeper than serde_json reads back. The client applies
//! them before it sends, the scheduler on receipt (a client is not trusted to
//! have checked) and the worker before it runs, so a hostile or buggy sender
//! gets its task refused, never a panicked or wedged process.

use serde_json::Value;

use super::{Control, MAX_PRIORITY, TaskSpec, WorkMessage};
use crate::limits;

/// Nesting of a task's arguments at most. serde_json refuses documents
/// nested more than 128 deep, and a task's arguments sit a few levels down
/// in submit and work messages (and in packs), so 100 leaves room for all.
pub const MAX_ARG_DEPTH: usize = 100;

impl TaskSpec {
    /// What the client checks before it sends a task and the scheduler on
    /// receipt, with one set of rules: a valid key and function name, a
    /// queue name RabbitMQ takes in `namespace`, a priority, retries and
    /// time limit in range, arguments nested at most [`MAX_ARG_DEPTH`] deep.
    pub fn validate(&self, namespace: &str) -> Result<(), String> {
        crate::taskkey::validate_key(&self.key)?;
        crate::taskkey::validate_key(&self.func).map_err(|e| format!("function name: {e}"))?;
        limits::work_queue(namespace, &self.queue)?;
        priority(self.priority)?;
        limits::retries(self.retries)?;
        if let Some(secs) = self.timeout_secs {
            limits::timeout(secs)?;
        }
        if let Some(ms) = self.delay_ms {
            crate::timing::delay("delay", ms)?;
        }
        if let Some(ms) = self.at_ms {
            crate::timing::at(ms)?;
        }
        if let Some(policy) = &self.retry {
            policy.validate()?;
        }
        if let Some(ck) = &self.concurrency_key {
            crate::taskkey::validate_key(ck).map_err(|e| format!("concurrency key: {e}"))?;
        }
        for dep in &self.deps {
            crate::taskkey::validate_key(dep).map_err(|e| format!("dependency: {e}"))?;
        }
        if self.func == crate::routing::VALUE_FUNC
            && (self.args.len() != 1 || !self.deps.is_empty())
        {
            return Err(format!(
                "{} puts one value as it is: it takes one argument and no futures",
                crate::routing::VALUE_FUNC
            ));
        }
        args_depth(&self.key, &self.args)
    }
}

impl WorkMessage {
    /// What a worker checks before it runs a task: the same rules the
    /// scheduler applied, since anyone who can publish to a work queue can
    /// skip the scheduler.
    pub fn validate(&self) -> Result<(), String> {
        crate::taskkey::validate_key(&self.key)?;
        crate::taskkey::validate_key(&self.func).map_err(|e| format!("function name: {e}"))?;
        priority(self.priority)?;
        if let Some(secs) = self.timeout_secs {
            limits::timeout(secs)?;
        }
        args_depth(&self.key, &self.args)
    }
}

impl Control {
    /// What a worker checks before it acts on a broadcast it could verify:
    /// a run's id and function name as a task's key and name, its arguments
    /// as a task's. Cancels and restarts are checked where they are used.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Control::Run { id, func, args, .. } => {
                crate::taskkey::validate_key(id).map_err(|e| format!("run id: {e}"))?;
                crate::taskkey::validate_key(func).map_err(|e| format!("function name: {e}"))?;
                args_depth(id, args)
            }
            Control::Restart { .. } | Control::Cancel { .. } => Ok(()),
        }
    }
}

fn priority(p: i64) -> Result<(), String> {
    if p.checked_abs().is_none_or(|a| a > MAX_PRIORITY) {
        return Err(format!(
            "priority {p} is outside -{MAX_PRIORITY}..={MAX_PRIORITY}"
        ));
    }
    Ok(())
}

fn args_depth(key: &str, args: &[Value]) -> Result<(), String> {
    let depth = args.iter().map(depth).max().unwrap_or(0);
    if depth > MAX_ARG_DEPTH {
        return Err(format!(
            "arguments of task {} are nested {depth} deep, more than the {MAX_ARG_DEPTH} allowed",
            crate::taskkey::shown(key)
        ));
    }
    Ok(())
}

/// How deep lists and objects nest in `v` (a scalar is 0). Iterative, so a
/// hostile value cannot overflow the stack.
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::super::{ClientRequest, PROTOCOL_VERSION};
    use super::*;
    use serde_json::json;

    fn spec(key: &str, args: Vec<Value>) -> TaskSpec {
        // Deps left empty on purpose: the tests name them where they matter.
        TaskSpec {
            deps: vec![],
            ..TaskSpec::new(key, "inc", args)
        }
    }

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |v, _| json!([v]))
    }

    #[test]
    fn one_validation_names_what_is_wrong() {
        assert_eq!(spec("inc-1", vec![json!(1)]).validate("ns"), Ok(()));
        let long = "f".repeat(251);
        assert!(
            spec(&long, vec![])
                .validate("ns")
                .unwrap_err()
                .contains("1-250 bytes")
        );
        let mut bad = spec("k", vec![]);
        bad.func = "has space".into();
        assert!(
            bad.validate("ns")
                .unwrap_err()
                .starts_with("function name:")
        );
        let mut bad = spec("k", vec![]);
        bad.priority = MAX_PRIORITY + 1;
        assert!(bad.validate("ns").unwrap_err().contains("priority"));
        bad.priority = i64::MIN;
        assert!(bad.validate("ns").unwrap_err().contains("priority"));
        assert_eq!(
            spec("k", vec![nested(MAX_ARG_DEPTH)]).validate("ns"),
            Ok(())
        );
        let e = spec("k", vec![nested(MAX_ARG_DEPTH + 1)])
            .validate("ns")
            .unwrap_err();
        assert!(e.contains("nested 101 deep"), "{e}");
    }

    #[test]
    fn queue_names_time_limits_and_retries_are_checked_where_they_will_be_used() {
        let mut t = spec("k", vec![]);
        t.queue = "q".repeat(250);
        let e = t.validate("ns").unwrap_err();
        assert!(e.contains("ns.work.<queue>"), "{e}");
        for secs in [1e20, f64::INFINITY, -1.0, f64::NAN, 0.0] {
            let mut t = spec("k", vec![]);
            t.timeout_secs = Some(secs);
            assert!(
                t.validate("ns").unwrap_err().contains("time limit"),
                "{secs}"
            );
        }
        let mut t = spec("k", vec![]);
        t.retries = u32::MAX;
        assert!(t.validate("ns").unwrap_err().contains("retries"));
        let mut t = spec("k", vec![]);
        t.deps = vec!["has space".into()];
        assert!(t.validate("ns").unwrap_err().starts_with("dependency:"));
    }

    #[test]
    fn a_worker_refuses_what_the_scheduler_would_have() {
        let mut m = WorkMessage {
            v: PROTOCOL_VERSION,
            key: "k".into(),
            func: "inc".into(),
            args: vec![json!(1)],
            epoch: 0,
            attempt: 0,
            timeout_secs: Some(1e20),
            dispatched_at_ms: None,
            priority: 0,
        };
        assert!(m.validate().unwrap_err().contains("time limit"));
        m.timeout_secs = Some(2.0);
        assert_eq!(m.validate(), Ok(()));
        m.args = vec![nested(MAX_ARG_DEPTH + 1)];
        assert!(m.validate().is_err());
    }

    #[test]
    fn the_deepest_allowed_task_still_travels_in_a_submit_message() {
        let task = spec("k", vec![nested(MAX_ARG_DEPTH)]);
        let body = serde_json::to_vec(&ClientRequest::Submit {
            v: PROTOCOL_VERSION,
            batch: "b".into(),
            tasks: vec![task],
            deps_in_flight: false,
        })
        .unwrap();
        assert!(serde_json::from_slice::<ClientRequest>(&body).is_ok());
    }

    #[test]
    fn a_run_broadcast_is_checked_as_a_task_is() {
        let run = |id: &str, func: &str, args: Vec<Value>| Control::Run {
            v: PROTOCOL_VERSION,
            id: id.into(),
            func: func.into(),
            args,
        };
        assert_eq!(run("run-1", "inc", vec![json!(1)]).validate(), Ok(()));
        assert!(
            run("", "inc", vec![])
                .validate()
                .unwrap_err()
                .contains("run id")
        );
        assert!(run("run 1", "inc", vec![]).validate().is_err());
        assert!(
            run("run-1", "no spaces", vec![])
                .validate()
                .unwrap_err()
                .contains("function name")
        );
        assert!(
            run("run-1", "inc", vec![nested(MAX_ARG_DEPTH + 1)])
                .validate()
                .is_err()
        );
    }
}

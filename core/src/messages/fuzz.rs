//! Bounded fuzzing of every decoder of what arrives from the network: the
//! four message families (submit, work, report, control) and client events,
//! then the checks and conversions applied to what decodes. Nothing may
//! panic, whatever the bytes; a few thousand cases per run keep it in the
//! normal test command (`cargo test`), with no service needed.
//!
//! Two generators: raw bytes (mostly refused at the JSON step), and JSON
//! documents built from warren's own field names with hostile values (huge,
//! negative, NaN-like and non-finite numbers, long and odd strings, deep
//! nesting, wrong types), which get past the JSON step and exercise serde's
//! field handling and warren's validation behind it.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// Field and tag names of every message type: the generator picks these
/// so that documents reach the schema, not only the parser.
const NAMES: &[&str] = &[
    "v",
    "kind",
    "batch",
    "tasks",
    "deps_in_flight",
    "key",
    "func",
    "args",
    "deps",
    "queue",
    "retries",
    "timeout_secs",
    "priority",
    "epoch",
    "attempt",
    "dispatched_at_ms",
    "worker",
    "outcomes",
    "result",
    "ok",
    "err",
    "type",
    "message",
    "traceback",
    "previous",
    "info",
    "host",
    "pid",
    "concurrency",
    "queues",
    "running",
    "completed",
    "at_ms",
    "functions",
    "commands",
    "draining",
    "keys",
    "reply_to",
    "events",
    "state",
    "value",
    "error",
    "refused",
    "reason",
    "$future",
    "submit",
    "restart",
    "cancel",
    "outcomes",
    "heartbeat",
    "started",
    "done",
    "submitted",
    "restarted",
    "worker_ready",
    "finished",
    "cancelled",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(1i64),
            Just(0),
            Just(-1),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(|n| json!(n)),
        prop_oneof![Just(u64::MAX), any::<u64>()].prop_map(|n| json!(n)),
        prop_oneof![
            Just(1e20),
            Just(-1.0),
            Just(0.5),
            Just(1e308),
            Just(-0.0),
            any::<f64>()
        ]
        .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(NAMES).prop_map(|s| json!(s)),
        any::<String>().prop_map(Value::String),
        (1usize..400).prop_map(|n| json!("q".repeat(n))),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(NAMES), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A valid message of each family, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let task = json!({"key": "k", "func": "inc", "args": [1, {"$future": "d"}], "deps": ["d"],
                      "queue": "default", "retries": 1, "timeout_secs": 2.5, "priority": 3});
    [
        json!({"kind": "submit", "v": 1, "batch": "b", "tasks": [task]}),
        json!({"kind": "cancel", "v": 1, "batch": "b", "keys": ["k"]}),
        json!({"kind": "restart", "v": 1}),
        json!({"v": 1, "key": "k", "func": "inc", "args": [1], "epoch": 0, "timeout_secs": 1.0}),
        json!([{"v": 1, "key": "k", "func": "inc", "args": [1], "epoch": 0}]),
        json!({"kind": "outcomes", "v": 1, "worker": "w", "outcomes": [
            {"key": "k", "result": {"err": {"type": "E", "message": "m", "traceback": ""}}}]}),
        json!({"kind": "started", "v": 1, "worker": "w", "keys": ["k"]}),
        json!({"kind": "restart", "v": 1, "epoch": 3, "reply_to": "ns.client.x"}),
        json!({"v": 1, "events": [{"kind": "done", "key": "k", "state": "finished", "value": 1}]}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap_or_default())
    .collect()
}

/// Everything a receiver does with a body before acting on it.
fn receive(body: &[u8]) {
    if let Ok(request) = decode::<ClientRequest>(body)
        && let ClientRequest::Submit { tasks, .. } = request
    {
        for t in &tasks {
            if t.validate("ns").is_ok() {
                let _ = crate::args::dependencies(&t.args);
                let _ = crate::taskkey::pure_key(&t.func, &t.args);
                let _ = crate::limits::work_queue("ns", &t.queue);
                let _ = crate::sizing::json_len(t);
            }
            if t.func == crate::command::COMMAND_FUNC
                && let Ok((_, options)) = crate::command::from_task_args(t.args.clone())
            {
                for name in options.env.keys() {
                    let _ = crate::allow::env_allowed(&["*".into()], name, "w");
                }
                if let Some(cwd) = &options.cwd {
                    let _ = crate::allow::cwd_allowed(&["/tmp".into()], cwd, "w");
                }
            }
        }
    }
    if let Ok(work) = decode_work(body) {
        for m in &work {
            if m.validate().is_ok()
                && let Some(secs) = m.timeout_secs
            {
                // What the worker turns it into: must not panic.
                let _ = crate::limits::timeout(secs);
            }
        }
    }
    if let Ok(WorkerReport::Outcomes { outcomes, .. }) = decode::<WorkerReport>(body) {
        for o in outcomes {
            let _ = crate::taskkey::validate_key(&o.key);
        }
    }
    if let Ok(control) = decode::<Control>(body) {
        let _ = control.validate();
        if let Control::Restart { reply_to, .. } = control {
            let _ = crate::limits::is_client_queue("ns", &reply_to);
        }
    }
    let _ = decode::<ClientEvents>(body);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn raw_bytes_panic_no_decoder(body in prop::collection::vec(any::<u8>(), 0..512)) {
        receive(&body);
    }

    #[test]
    fn hostile_documents_panic_no_decoder_or_check(doc in document()) {
        receive(&serde_json::to_vec(&doc).unwrap_or_default());
        // And the same document as a task, a work message and a report item.
        for wrap in [json!({"kind": "submit", "v": 1, "batch": "b", "tasks": [doc.clone()]}),
                     json!([doc.clone()]),
                     json!({"kind": "outcomes", "v": 1, "worker": "w", "outcomes": [doc]})] {
            receive(&serde_json::to_vec(&wrap).unwrap_or_default());
        }
    }

    #[test]
    fn mutated_valid_messages_panic_no_decoder(
        seed in prop::sample::select(seeds()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut body = seed;
        for (at, byte) in edits {
            let i = at.index(body.len().max(1));
            if i < body.len() { body[i] = byte; }
        }
        receive(&body);
    }
}

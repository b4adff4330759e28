//! Encoding the scripts' arguments.
//!
//! Every script takes only `ARGV` (see the layout note in the module above),
//! flat: the prefix first, then fixed fields, then a count and that many
//! records. These builders are the one place each script's argument layout is
//! written on the Rust side; the script's header comment is the other.

use super::Transition;
use crate::error::Result;
use crate::messages::{TaskSpec, Terminal};

/// A script's `ARGV`, built front to back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Args(Vec<Vec<u8>>);

impl Args {
    /// Arguments starting with the namespace prefix (`ARGV[1]`, `P` in the scripts).
    pub(crate) fn new(prefix: &str) -> Self {
        Self(vec![prefix.as_bytes().to_vec()])
    }

    /// Appends text.
    pub(crate) fn text(mut self, s: &str) -> Self {
        self.0.push(s.as_bytes().to_vec());
        self
    }

    /// Appends a number as its decimal text.
    pub(crate) fn num(self, n: impl ToString) -> Self {
        let s = n.to_string();
        self.text(&s)
    }

    /// Appends each string.
    pub(crate) fn all<'a>(mut self, items: impl IntoIterator<Item = &'a String>) -> Self {
        self.0
            .extend(items.into_iter().map(|s| s.as_bytes().to_vec()));
        self
    }

    fn bytes(mut self, b: Vec<u8>) -> Self {
        self.0.push(b);
        self
    }

    /// The arguments, in order.
    pub(crate) fn into_inner(self) -> Vec<Vec<u8>> {
        self.0
    }
}

/// `submit.lua`: prefix, reply_to (`""`: nobody watches), ttl, n, defer,
/// eager owner (`""`: claim nothing), then per task: key, func, queue,
/// retries, timeout, priority, delay ms, due time (Unix ms), retry policy
/// (JSON), concurrency key, args, n deps, deps... (`""` for any option not
/// given).
pub(crate) fn submit(
    prefix: &str,
    reply_to: Option<&str>,
    ttl: u64,
    tasks: &[TaskSpec],
    defer: bool,
    owner: Option<&str>,
) -> Result<Args> {
    let mut a = Args::new(prefix)
        .text(reply_to.unwrap_or(""))
        .num(ttl)
        .num(tasks.len())
        .text(if defer { "1" } else { "0" })
        .text(owner.unwrap_or(""));
    for t in tasks {
        a = a
            .text(&t.key)
            .text(&t.func)
            .text(&t.queue)
            .num(t.retries)
            .text(&t.timeout_secs.map(|s| s.to_string()).unwrap_or_default())
            .num(t.priority)
            .text(&t.delay_ms.map(|ms| ms.to_string()).unwrap_or_default())
            .text(&t.at_ms.map(|ms| ms.to_string()).unwrap_or_default())
            .text(&match &t.retry {
                Some(policy) => serde_json::to_string(policy)?,
                None => String::new(),
            })
            .text(t.concurrency_key.as_deref().unwrap_or(""))
            .bytes(match (t.func.as_str(), t.args.as_slice()) {
                // A value put as it is (scatter): its JSON, recorded finished.
                (crate::routing::VALUE_FUNC, [value]) => serde_json::to_vec(value)?,
                _ => serde_json::to_vec(&t.args)?,
            })
            .num(t.deps.len())
            .all(&t.deps);
    }
    Ok(a)
}

/// `complete.lua`: prefix, ttl, owner (`""`: claim nothing), n, then per
/// report: key, kind, payload, attempt, draw (in `[0, 1)`: the jitter of a
/// retry's pause, from `draw()` per report; Lua's own random numbers are
/// the same in every script run).
pub(crate) fn complete(
    prefix: &str,
    ttl: u64,
    owner: Option<&str>,
    reports: &[(String, Transition)],
    mut draw: impl FnMut() -> f64,
) -> Result<Args> {
    let mut a = Args::new(prefix)
        .num(ttl)
        .text(owner.unwrap_or(""))
        .num(reports.len());
    for (key, tr) in reports {
        let (kind, payload, attempt) = match tr {
            Transition::Processing => ("processing", Vec::new(), 0),
            Transition::Failed { error, attempt } => {
                ("failed", serde_json::to_vec(error)?, *attempt)
            }
            Transition::Terminal(Terminal::Finished { value }) => {
                ("finished", serde_json::to_vec(value)?, 0)
            }
            Transition::Terminal(Terminal::Error { error }) => {
                ("error", serde_json::to_vec(error)?, 0)
            }
            Transition::Terminal(Terminal::Cancelled) => ("cancelled", Vec::new(), 0),
        };
        let u = if kind == "failed" { draw() } else { 0.0 };
        a = a.text(key).text(kind).bytes(payload).num(attempt).num(u);
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::TaskFailure;
    use serde_json::json;

    fn texts(a: Args) -> Vec<String> {
        a.into_inner()
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    }

    #[test]
    fn a_value_put_as_it_is_travels_as_its_own_json() {
        let task = TaskSpec {
            queue: "python".into(),
            ..TaskSpec::new(
                "tuple-1",
                crate::routing::VALUE_FUNC,
                vec![json!({"$blob": "ab", "size": 2})],
            )
        };
        let a = texts(submit("ns:", None, 60, &[task], true, None).unwrap());
        assert_eq!(
            a[16], r#"{"$blob":"ab","size":2}"#,
            "the value, not [value]"
        );
    }

    #[test]
    fn submit_args_flatten_each_task_with_none_as_empty_text() {
        let task = TaskSpec {
            key: "add-1".into(),
            func: "add".into(),
            args: vec![json!({"$future": "a-1"}), json!(2)],
            deps: vec!["a-1".into()],
            queue: "default".into(),
            retries: 2,
            timeout_secs: None,
            priority: -1,
            delay_ms: None,
            at_ms: Some(1_798_106_400_000),
            retry: Some(crate::timing::RetryPolicy {
                delay_ms: 500,
                backoff: 2.0,
                ..Default::default()
            }),
            concurrency_key: Some("tenant-42".into()),
        };
        let a = texts(submit("ns:", None, 60, &[task], true, Some("s#e0")).unwrap());
        assert_eq!(
            a,
            vec![
                "ns:",
                "",
                "60",
                "1",
                "1",
                "s#e0",
                "add-1",
                "add",
                "default",
                "2",
                "",
                "-1",
                "",
                "1798106400000",
                r#"{"delay_ms":500,"backoff":2.0,"max_delay_ms":600000,"jitter":false}"#,
                "tenant-42",
                r#"[{"$future":"a-1"},2]"#,
                "1",
                "a-1"
            ]
        );
    }

    #[test]
    fn complete_args_carry_the_kind_payload_and_only_a_failures_attempt() {
        let failure = TaskFailure::new("ValueError", "bad", "");
        let reports = vec![
            (
                "a".to_string(),
                Transition::Terminal(Terminal::Finished { value: json!(3) }),
            ),
            (
                "b".to_string(),
                Transition::Failed {
                    error: failure,
                    attempt: 4,
                },
            ),
            ("c".to_string(), Transition::Processing),
        ];
        let a = texts(complete("ns:", 0, Some("s#e1"), &reports, || 0.25).unwrap());
        assert_eq!(&a[..4], ["ns:", "0", "s#e1", "3"]);
        assert_eq!(&a[4..9], ["a", "finished", "3", "0", "0"]);
        assert_eq!(a[10], "failed");
        assert!(a[11].contains("ValueError"));
        assert_eq!(&a[12..14], ["4", "0.25"], "only a failure draws");
        assert_eq!(&a[14..], ["c", "processing", "", "0", "0"]);
    }
}

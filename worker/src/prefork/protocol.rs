//! The lines of the prefork protocol (pure): a child's hello, what it may
//! say while a task runs (secede, rejoin), its final answer, and the
//! greeting a worker sends a new child.

use serde::Deserialize;
use serde_json::Value;
use warren_core::messages::TaskFailure;

/// A child's first line.
#[derive(Deserialize)]
pub(super) struct Hello {
    #[serde(default)]
    pub(super) ready: bool,
    #[serde(default)]
    pub(super) fatal: Option<String>,
}

/// What the worker sends a child once it is ready, before any task: the
/// settings a task's `get_client()` connects with. Its text holds
/// passwords, so it is never printed.
#[derive(Clone)]
pub struct Greeting(pub String);

impl std::fmt::Debug for Greeting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Greeting(..)")
    }
}

/// A line from a child that runs a task.
#[derive(Debug, PartialEq)]
pub(super) enum Line {
    /// `{"secede": true}`: it only waits for other tasks now; its slot may
    /// serve another.
    Secede,
    /// `{"rejoin": true}`: it computes again once it holds a slot; it
    /// reads `{"rejoined": bool}` before it goes on.
    Rejoin,
    /// `{"output": {"stream", "text"}}`: something it printed just now.
    Output(Value),
    /// Anything else: the task's answer (see [`parse_reply_logged`]).
    Answer,
}

impl Line {
    /// Which kind `line` is.
    pub(super) fn of(line: &str) -> Self {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Aside {
            #[serde(default)]
            secede: bool,
            #[serde(default)]
            rejoin: bool,
            #[serde(default)]
            output: Option<Value>,
        }
        match serde_json::from_str::<Aside>(line) {
            Ok(Aside {
                secede: true,
                rejoin: false,
                output: None,
            }) => Self::Secede,
            Ok(Aside {
                secede: false,
                rejoin: true,
                output: None,
            }) => Self::Rejoin,
            Ok(Aside {
                secede: false,
                rejoin: false,
                output: Some(chunk),
            }) => Self::Output(chunk),
            _ => Self::Answer,
        }
    }
}

/// The most bytes one blob of a child's answer may announce.
const MAX_BLOB: usize = 1 << 31;

/// What a call gives: the value and the blobs it refers to, or the failure.
pub type Called = Result<(Value, Vec<Vec<u8>>), TaskFailure>;

/// A value that is not JSON, handed to a child with the arguments that
/// refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its hash (BLAKE3, hex), as the reference in the arguments names it.
    pub hash: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A child's answer as the task's result and the sizes of the blobs that
/// follow it (pure).
pub fn parse_reply(line: &str) -> Result<(Value, Vec<usize>), TaskFailure> {
    parse_reply_logged(line, &mut None)
}

/// [`parse_reply`], taking the task's printed output (`"logs"`, an object)
/// into `logs` whatever the outcome.
pub fn parse_reply_logged(
    line: &str,
    logs: &mut Option<Value>,
) -> Result<(Value, Vec<usize>), TaskFailure> {
    let not_a_result = || {
        TaskFailure::new(
            "WorkerError",
            format!(
                "the task process answered something that is not a result: {}",
                line.trim_end()
            ),
            "",
        )
    };
    let Ok(Value::Object(mut reply)) = serde_json::from_str::<Value>(line) else {
        return Err(not_a_result());
    };
    *logs = reply.remove("logs").filter(Value::is_object);
    if let Some(error) = reply.remove("error") {
        return Err(serde_json::from_value(error).unwrap_or_else(|_| not_a_result()));
    }
    let sizes = match reply.remove("blobs") {
        None => Vec::new(),
        Some(Value::Array(sizes)) => sizes
            .iter()
            .map(|n| {
                n.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| *n <= MAX_BLOB)
                    .ok_or_else(not_a_result)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(not_a_result()),
    };
    Ok((reply.remove("ok").ok_or_else(not_a_result)?, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asides_are_told_from_answers() {
        assert_eq!(Line::of("{\"secede\":true}\n"), Line::Secede);
        assert_eq!(Line::of("{\"rejoin\": true}"), Line::Rejoin);
        assert_eq!(Line::of("{\"ok\":1}"), Line::Answer);
        assert_eq!(Line::of("{\"secede\":true,\"rejoin\":true}"), Line::Answer);
        assert_eq!(Line::of("{\"secede\":true,\"ok\":1}"), Line::Answer);
        assert_eq!(Line::of("not json"), Line::Answer);
        assert_eq!(
            Line::of(r#"{"output":{"stream":"stdout","text":"hi"}}"#),
            Line::Output(serde_json::json!({"stream": "stdout", "text": "hi"}))
        );
        assert_eq!(Line::of(r#"{"output":{},"secede":true}"#), Line::Answer);
    }

    #[test]
    fn a_greeting_never_shows_its_text() {
        let g = Greeting("{\"amqp_url\":\"amqp://u:secret@h\"}".into());
        assert!(!format!("{g:?}").contains("secret"));
    }
}

//! Decoding the scripts' replies.
//!
//! A script replies with one flat array (Lua tables cannot nest cheaply), so a
//! reply is read front to back with a [`Reply`] cursor and a decoder per
//! record: [`claimed`] for a task ready to publish (`claim_record` in
//! `common.lua`), [`events`] for the notifications that end every reply of a
//! script that changes state. Decoders are pure, so they are tested on replies
//! built in the test.

use redis::Value as RValue;

use super::{ClaimedTask, Notification};
use crate::error::{Error, Result};
use crate::messages::{TaskFailure, Terminal};
use crate::status::State;

/// A cursor over a flat script reply.
pub(crate) struct Reply {
    items: std::vec::IntoIter<RValue>,
    left: usize,
}

impl Reply {
    /// A cursor at the start of `v`, which must be an array.
    pub(crate) fn new(v: RValue) -> Result<Self> {
        match v {
            RValue::Array(items) => Ok(Self {
                left: items.len(),
                items: items.into_iter(),
            }),
            other => Err(Error::Script(format!("expected an array, got {other:?}"))),
        }
    }

    /// Whether every item was read.
    pub(crate) fn done(&self) -> bool {
        self.left == 0
    }

    fn next(&mut self) -> Result<RValue> {
        self.left = self.left.saturating_sub(1);
        self.items
            .next()
            .ok_or_else(|| Error::Script("reply ended early".into()))
    }

    /// The next item as text (Lua numbers arrive as integers).
    pub(crate) fn string(&mut self) -> Result<String> {
        match self.next()? {
            RValue::BulkString(b) => String::from_utf8(b).map_err(|e| Error::Script(e.to_string())),
            RValue::SimpleString(s) => Ok(s),
            RValue::Int(i) => Ok(i.to_string()),
            other => Err(Error::Script(format!("expected a string, got {other:?}"))),
        }
    }

    /// The next item as an integer (or as text holding one).
    pub(crate) fn int(&mut self) -> Result<i64> {
        match self.next()? {
            RValue::Int(i) => Ok(i),
            RValue::BulkString(b) => String::from_utf8_lossy(&b)
                .parse()
                .map_err(|_| Error::Script("expected an integer".into())),
            other => Err(Error::Script(format!("expected an integer, got {other:?}"))),
        }
    }

    /// A count, then that many strings.
    pub(crate) fn strings(&mut self) -> Result<Vec<String>> {
        let n = self.int()?;
        (0..n).map(|_| self.string()).collect()
    }

    /// The namespace epoch.
    pub(crate) fn epoch(&mut self) -> Result<u64> {
        let text = self.string()?;
        text.parse()
            .map_err(|_| Error::Script(format!("epoch {text:?} is not a number")))
    }
}

/// Builds the [`Terminal`] stored for `state` with `payload`.
pub(crate) fn terminal(state: State, payload: &str) -> Result<Terminal> {
    Ok(match state {
        State::Finished => Terminal::Finished {
            value: serde_json::from_str(payload)?,
        },
        State::Error => Terminal::Error {
            error: serde_json::from_str::<TaskFailure>(payload)?,
        },
        _ => Terminal::Cancelled,
    })
}

/// The events that end a script reply: key, state, payload, watchers each.
pub(crate) fn events(r: &mut Reply) -> Result<Vec<Notification>> {
    let mut notes = Vec::new();
    while !r.done() {
        let key = r.string()?;
        let state: State = r.string()?.parse().map_err(Error::Script)?;
        let payload = r.string()?;
        let watchers = r.strings()?;
        notes.push(Notification {
            key,
            terminal: terminal(state, &payload)?,
            watchers,
        });
    }
    Ok(notes)
}

/// One claimed task (`claim_record` in common.lua). A timeout of `""` is none.
/// The head of `submit.lua`'s and `complete.lua`'s replies (`eager_head` in
/// `common.lua`): tasks queued, the epoch, and the task claimed eagerly.
pub(crate) fn eager_head(r: &mut Reply) -> Result<(u64, u64, Vec<ClaimedTask>)> {
    let queued = r.int()? as u64;
    let epoch = r.epoch()?;
    let claimed = (0..r.int()?)
        .map(|_| claimed(r))
        .collect::<Result<Vec<_>>>()?;
    Ok((queued, epoch, claimed))
}

pub(crate) fn claimed(r: &mut Reply) -> Result<ClaimedTask> {
    let key = r.string()?;
    let func = r.string()?;
    let queue = r.string()?;
    let args = r.string()?;
    let attempt = u32::try_from(r.int()?)
        .map_err(|_| Error::Script(format!("task {key}: attempt out of range")))?;
    let timeout_secs = r.string()?.parse::<f64>().ok();
    let priority = r.int()?;
    let n = r.int()?;
    let mut deps = Vec::new();
    for _ in 0..n {
        let dep = r.string()?;
        let has = r.int()? == 1;
        let value = r.string()?;
        deps.push((dep, has.then_some(value)));
    }
    Ok(ClaimedTask {
        key,
        func,
        queue,
        args,
        attempt,
        timeout_secs,
        priority,
        deps,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reply item as Redis sends Lua strings.
    pub(crate) fn s(text: &str) -> RValue {
        RValue::BulkString(text.as_bytes().to_vec())
    }

    fn reply(items: Vec<RValue>) -> Reply {
        Reply::new(RValue::Array(items)).unwrap()
    }

    #[test]
    fn a_claimed_task_reads_its_dependencies_with_and_without_values() {
        let mut r = reply(vec![
            s("c-1"),
            s("add"),
            s("default"),
            s("[1]"),
            RValue::Int(2),
            s(""),
            RValue::Int(-3),
            RValue::Int(2),
            s("a-1"),
            RValue::Int(1),
            s("10"),
            s("b-1"),
            RValue::Int(0),
            s(""),
        ]);
        let t = claimed(&mut r).unwrap();
        assert!(r.done());
        assert_eq!(t.key, "c-1");
        assert_eq!(t.attempt, 2);
        assert_eq!(t.timeout_secs, None);
        assert_eq!(t.priority, -3);
        assert_eq!(
            t.deps,
            vec![("a-1".into(), Some("10".into())), ("b-1".into(), None)]
        );
    }

    #[test]
    fn events_decode_each_terminal_state_with_its_watchers() {
        let err = r#"{"type":"ValueError","message":"bad","traceback":"tb"}"#;
        let mut r = reply(vec![
            s("a"),
            s("finished"),
            s("[1,2]"),
            RValue::Int(2),
            s("r1"),
            s("r2"),
            s("b"),
            s("error"),
            s(err),
            RValue::Int(0),
            s("c"),
            s("cancelled"),
            s(""),
            RValue::Int(1),
            s("r1"),
        ]);
        let notes = events(&mut r).unwrap();
        assert_eq!(notes.len(), 3);
        assert_eq!(
            notes[0].terminal,
            Terminal::Finished {
                value: serde_json::json!([1, 2])
            }
        );
        assert_eq!(notes[0].watchers, vec!["r1", "r2"]);
        assert!(
            matches!(&notes[1].terminal, Terminal::Error { error } if error.kind == "ValueError")
        );
        assert_eq!(notes[2].terminal, Terminal::Cancelled);
    }

    #[test]
    fn a_short_or_mistyped_reply_is_a_script_error_not_a_panic() {
        let mut r = reply(vec![s("a"), s("finished")]);
        assert!(matches!(events(&mut r), Err(Error::Script(_))));
        let mut r = reply(vec![s("a"), s("exploded"), s(""), RValue::Int(0)]);
        assert!(matches!(events(&mut r), Err(Error::Script(_))));
        assert!(Reply::new(RValue::Int(1)).is_err());
        let mut r = reply(vec![s("x")]);
        assert!(r.epoch().is_err());
        let mut r = reply(vec![RValue::Int(7)]);
        assert_eq!(r.epoch().unwrap(), 7);
    }

    mod fuzz {
        //! Replies are read from Redis, which anyone with its password can
        //! write: no reply, however malformed, may panic a decoder.
        use super::super::*;
        use proptest::prelude::*;

        fn item() -> impl Strategy<Value = RValue> {
            let leaf = prop_oneof![
                Just(RValue::Nil),
                prop_oneof![
                    Just(i64::MAX),
                    Just(i64::MIN),
                    Just(-1i64),
                    0i64..4,
                    any::<i64>()
                ]
                .prop_map(RValue::Int),
                prop::sample::select(vec![
                    "finished",
                    "error",
                    "cancelled",
                    "queued",
                    "1",
                    "-1",
                    "",
                    "{}",
                    "1e20",
                    "18446744073709551616"
                ])
                .prop_map(|t| RValue::BulkString(t.as_bytes().to_vec())),
                prop::collection::vec(any::<u8>(), 0..24).prop_map(RValue::BulkString),
                any::<String>().prop_map(RValue::SimpleString),
                any::<f64>().prop_map(RValue::Double),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop::collection::vec(inner, 0..6).prop_map(RValue::Array)
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn no_reply_panics_a_decoder(items in prop::collection::vec(item(), 0..24)) {
                for decode in 0..3 {
                    let Ok(mut r) = Reply::new(RValue::Array(items.clone())) else { continue };
                    let _ = match decode {
                        0 => events(&mut r).map(|_| ()),
                        1 => eager_head(&mut r).map(|_| ()),
                        _ => claimed(&mut r).map(|_| ()),
                    };
                }
            }
        }
    }
}

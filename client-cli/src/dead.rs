//! Dead letters in warren's own terms: list, show, replay, purge.
//!
//! `<ns>.dead` collects what could not be processed: malformed messages, what
//! a scheduler refused, intake messages past their delivery limit. An operator
//! needs to see each one as warren sees it (where it came from, why it died,
//! which task it was) and to put one back once the cause is fixed.
//!
//! RabbitMQ has no way to pick one message out of a queue, so every operation
//! takes all of them unacked with `basic.get`, acts on the chosen ones, and
//! gives the rest back (`basic.nack` with requeue). Nothing is lost: a replayed
//! message leaves the dead queue only after its copy's publish is confirmed,
//! and a crash meanwhile returns every message to the dead queue. Ids are a
//! hash of the message, so they stay the same from one listing to the next.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use serde::Serialize;
use warren_core::amqp;
use warren_core::topology::{ORIGIN_HEADER, REASON_HEADER};

use crate::error::Error;

/// Counts how often a dead letter was put back.
pub const REPLAYS_HEADER: &str = "x-warren-replays";

/// One dead letter, described.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// A stable id (a hash of the message).
    pub id: String,
    /// The queue it came from.
    pub origin: String,
    /// Why it died.
    pub reason: String,
    /// The task key, where it has one.
    pub key: Option<String>,
    /// The function, where it has one.
    pub func: Option<String>,
    /// Unix time it died (seconds), if known.
    pub died_at: Option<u64>,
    /// How often it was replayed before.
    pub replays: u32,
    /// Every header, as text.
    pub headers: Vec<(String, String)>,
    /// The body, as text (lossy for binary bodies).
    pub body: String,
}

/// What to do with the chosen dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look only.
    List,
    /// Publish back to the origin (or this queue), then remove.
    Replay(Option<String>),
    /// Remove.
    Purge,
}

/// Which dead letters an action takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every one.
    All,
    /// Those with these ids (or id prefixes).
    Ids(Vec<String>),
}

impl Selection {
    /// Whether `id` is chosen.
    pub fn takes(&self, id: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.iter().any(|p| !p.is_empty() && id.starts_with(p)),
        }
    }
}

/// A stable id: FNV-1a over the origin, reason and body (12 hex digits).
pub fn dead_id(origin: &str, reason: &str, body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [origin.as_bytes(), b"\0", reason.as_bytes(), b"\0", body] {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:012x}", h >> 16)
}

fn text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// Describes a dead message from its properties and body: warren's headers,
/// or RabbitMQ's `x-death` for what the broker dead-lettered itself.
pub fn describe(props: &BasicProperties, body: &[u8]) -> DeadLetter {
    let headers = props.headers().clone().unwrap_or_default();
    let get = |k: &str| headers.inner().get(k).map(text);
    let death = headers.inner().get("x-death").and_then(|v| match v {
        AMQPValue::FieldArray(a) => a.as_slice().first().and_then(|d| match d {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    });
    let from_death = |k: &str| death.as_ref().and_then(|t| t.inner().get(k).map(text));
    let origin = get(ORIGIN_HEADER)
        .or_else(|| from_death("queue"))
        .unwrap_or_default();
    let reason = get(REASON_HEADER)
        .or_else(|| from_death("reason").map(|r| format!("dead-lettered by RabbitMQ: {r}")))
        .unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    // A task's key and function: a work message, a pack, or a submit request.
    let first_task = json.as_ref().and_then(|v| match v {
        serde_json::Value::Array(items) => items.first().cloned(),
        serde_json::Value::Object(o) => match o.get("tasks") {
            Some(serde_json::Value::Array(t)) => t.first().cloned(),
            _ => Some(v.clone()),
        },
        _ => None,
    });
    let field = |k: &str| {
        first_task
            .as_ref()
            .and_then(|t| t.get(k))
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    let key = get("key").or_else(|| field("key"));
    let func = get("task").or_else(|| field("func"));
    DeadLetter {
        id: dead_id(&origin, &reason, body),
        replays: get(REPLAYS_HEADER)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        died_at: *props.timestamp(),
        headers: headers
            .inner()
            .iter()
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect(),
        body: String::from_utf8_lossy(body).into_owned(),
        origin,
        reason,
        key,
        func,
    }
}

/// The properties of a replayed copy: the original's, with the replay counted.
fn replay_properties(props: &BasicProperties, replays: u32) -> BasicProperties {
    let mut headers: FieldTable = props.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from(REPLAYS_HEADER),
        AMQPValue::LongString(LongString::from((replays + 1).to_string())),
    );
    props.clone().with_headers(headers)
}

/// Runs `action` on the chosen dead letters of `queue`; returns every dead
/// letter seen and the ids acted on.
pub async fn act(
    ch: &Channel,
    queue: &str,
    selection: &Selection,
    action: &Action,
) -> Result<(Vec<DeadLetter>, Vec<String>), Error> {
    let mut held = Vec::new();
    while let Some(msg) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map_err(warren_core::Error::from)?
    {
        let d = msg.delivery;
        let letter = describe(&d.properties, &d.data);
        held.push((d, letter));
    }
    let mut acted = Vec::new();
    for (d, letter) in &held {
        let chosen = *action != Action::List && selection.takes(&letter.id);
        if chosen {
            if let Action::Replay(to) = action {
                let target = to.clone().unwrap_or_else(|| letter.origin.clone());
                if target.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "dead letter {} has no origin queue: replay it with --to QUEUE",
                        letter.id
                    )));
                }
                let props = replay_properties(&d.properties, letter.replays);
                let confirm = amqp::publish(ch, "", &target, &d.data, props).await?;
                amqp::confirmed(vec![confirm], &target).await?;
            }
            d.acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(warren_core::Error::from)?;
            acted.push(letter.id.clone());
        } else {
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            d.acker
                .nack(requeue)
                .await
                .map_err(warren_core::Error::from)?;
        }
    }
    if let Selection::Ids(ids) = selection
        && *action != Action::List
    {
        let missing: Vec<&String> = ids
            .iter()
            .filter(|p| !held.iter().any(|(_, l)| selection_hit(p, &l.id)))
            .collect();
        if !missing.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "no dead letter with id {}: see `warren dead list`",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok((held.into_iter().map(|(_, l)| l).collect(), acted))
}

fn selection_hit(prefix: &str, id: &str) -> bool {
    !prefix.is_empty() && id.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(headers: &[(&str, &str)]) -> BasicProperties {
        amqp::json_properties(headers)
    }

    #[test]
    fn a_warren_dead_letter_names_its_origin_reason_and_task() {
        let body = br#"{"v":1,"key":"inc-1","func":"inc","args":[1]}"#;
        let d = describe(
            &props(&[(ORIGIN_HEADER, "ns.work.default"), (REASON_HEADER, "bad")]),
            body,
        );
        assert_eq!(d.origin, "ns.work.default");
        assert_eq!(d.reason, "bad");
        assert_eq!(d.key.as_deref(), Some("inc-1"));
        assert_eq!(d.func.as_deref(), Some("inc"));
        assert_eq!(d.replays, 0);
        assert_eq!(d.id, dead_id("ns.work.default", "bad", body));
        assert_eq!(d.id.len(), 12);
    }

    #[test]
    fn a_submit_request_names_its_first_task_and_garbage_names_none() {
        let body = br#"{"type":"submit","tasks":[{"key":"sum-9","func":"sum"}]}"#;
        let d = describe(&props(&[(REASON_HEADER, "r")]), body);
        assert_eq!(d.key.as_deref(), Some("sum-9"));
        let junk = describe(&props(&[]), b"\xff\x00");
        assert_eq!(
            (junk.key, junk.func, junk.origin.as_str()),
            (None, None, "")
        );
    }

    #[test]
    fn a_replay_counts_itself_and_ids_select_by_prefix() {
        let p = replay_properties(&props(&[(REPLAYS_HEADER, "2")]), 2);
        assert_eq!(describe(&p, b"{}").replays, 3);
        let sel = Selection::Ids(vec!["abc".into()]);
        assert!(sel.takes("abcdef012345"));
        assert!(!sel.takes("bcd"));
        assert!(!Selection::Ids(vec![String::new()]).takes("abc"));
        assert!(Selection::All.takes("x"));
        // The same message has the same id every time; another has another.
        assert_eq!(dead_id("q", "r", b"1"), dead_id("q", "r", b"1"));
        assert_ne!(dead_id("q", "r", b"1"), dead_id("q", "r", b"2"));
    }
}

//! Work messages and packs, built from claimed tasks: pure, tested without a
//! broker. A task's dependencies' values are inlined into its message; when a
//! window holds far more tasks than the queue has consumers, tasks travel in
//! packs (one message, a JSON array, at most [`MAX_PACK`] tasks), small enough
//! that every consumer still gets [`SPREAD`] messages; a lone task travels
//! alone. A message over the broker's limit fails its task alone.

use std::collections::HashMap;

use serde_json::Value;
use tracing::warn;
use warren_core::messages::{PROTOCOL_VERSION, TaskFailure, WorkMessage};
use warren_core::store::ClaimedTask;
use warren_core::{amqp, sizing};

/// Messages per consumer a window is split into at least, before packing.
pub const SPREAD: usize = 4;
/// Tasks in one work message at most.
pub const MAX_PACK: usize = 8;

/// Room in a work queue for more messages.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    /// Messages the queue may take now.
    pub messages: usize,
    /// Its consumers (workers).
    pub consumers: usize,
}

/// Tasks per message for a window of `tasks`: as many as possible (at most
/// [`MAX_PACK`]) while every consumer still gets [`SPREAD`] messages, and few
/// enough messages to fit the room.
pub fn pack_size(tasks: usize, room: Room) -> usize {
    let spread = tasks / (room.consumers.max(1) * SPREAD);
    let fit = tasks.div_ceil(room.messages.max(1));
    spread.max(fit).clamp(1, MAX_PACK)
}

/// One task's work message, serialized once: alone it is the body, in a
/// pack it is an element of the body's array.
pub struct Encoded {
    /// The task's key.
    pub key: String,
    /// Its function.
    pub func: String,
    /// Its attempt.
    pub attempt: u32,
    /// The serialized work message.
    pub body: Vec<u8>,
}

/// Serializes a work message, or fails its task if the message could never
/// be published: RabbitMQ would close the channel, and retrying it for ever
/// would stop every task of the namespace behind this one.
pub fn encode(msg: WorkMessage, limit: usize) -> Result<Encoded, (String, TaskFailure)> {
    let body = match serde_json::to_vec(&msg) {
        Ok(body) => body,
        Err(e) => {
            let failure = TaskFailure::new("MalformedTask", format!("work message: {e}"), "");
            return Err((msg.key, failure));
        }
    };
    if body.len() > limit {
        let message = format!(
            "the work message of task {} (its arguments, dependencies' values inlined) is {} bytes ({}), over the limit of {limit} bytes ({}); raise setting max_message_bytes, at most to RabbitMQ's max_message_size, or pass smaller values",
            msg.key,
            body.len(),
            sizing::human_bytes(body.len()),
            sizing::human_bytes(limit),
        );
        warn!(key = %msg.key, bytes = body.len(), limit, "work message too large; failing the task");
        return Err((msg.key, TaskFailure::new("PayloadTooLarge", message, "")));
    }
    Ok(Encoded {
        key: msg.key,
        func: msg.func,
        attempt: msg.attempt,
        body,
    })
}

/// The body and headers of one work message. Headers name the task, key and
/// attempt (of the first task in a pack, with `tasks` counting them), so the
/// management UI's "Get messages" tells an operator what is waiting.
pub fn pack_body(mut pack: Vec<Encoded>) -> (Vec<u8>, lapin::BasicProperties) {
    let count = pack.len().to_string();
    let first = &pack[0];
    let attempt = first.attempt.to_string();
    let mut headers = vec![
        ("task", first.func.as_str()),
        ("key", first.key.as_str()),
        ("attempt", attempt.as_str()),
    ];
    if pack.len() > 1 {
        headers.push(("tasks", count.as_str()));
    }
    let props = amqp::json_properties(&headers);
    let body = if pack.len() == 1 {
        std::mem::take(&mut pack[0].body)
    } else {
        let len = pack.iter().map(|m| m.body.len() + 1).sum::<usize>() + 1;
        let mut body = Vec::with_capacity(len);
        body.push(b'[');
        for (i, m) in pack.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&m.body);
        }
        body.push(b']');
        body
    };
    (body, props)
}

/// Builds the work message of a claimed task, inlining dependency values. A task
/// whose arguments are unreadable or whose dependency lost its value fails here.
pub fn work_message(
    task: ClaimedTask,
    epoch: u64,
) -> Result<(String, WorkMessage), (String, TaskFailure)> {
    let fail = |kind: &str, message: String| TaskFailure::new(kind, message, "");
    let mut args: Vec<Value> = serde_json::from_str(&task.args).map_err(|e| {
        (
            task.key.clone(),
            fail("MalformedTask", format!("stored arguments: {e}")),
        )
    })?;
    let mut values = HashMap::with_capacity(task.deps.len());
    for (dep, value) in task.deps {
        let Some(text) = value else {
            warn!(key = %task.key, %dep, "dependency has no value any more");
            return Err((
                task.key,
                fail(
                    "LostDependency",
                    format!(
                        "the value of dependency {dep} expired or was forgotten before this task ran"
                    ),
                ),
            ));
        };
        let v = serde_json::from_str(&text).map_err(|e| {
            (
                task.key.clone(),
                fail("MalformedTask", format!("value of {dep}: {e}")),
            )
        })?;
        values.insert(dep, v);
    }
    warren_core::args::substitute(&mut args, &values).map_err(|dep| {
        (
            task.key.clone(),
            fail("LostDependency", format!("no value for {dep}")),
        )
    })?;
    Ok((
        task.queue,
        WorkMessage {
            v: PROTOCOL_VERSION,
            key: task.key,
            func: task.func,
            args,
            epoch,
            attempt: task.attempt,
            timeout_secs: task.timeout_secs,
            dispatched_at_ms: Some(warren_core::messages::now_ms()),
            priority: task.priority,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inlines_dependency_values_and_names_lost_ones() {
        let task = ClaimedTask {
            key: "add-1".into(),
            func: "add_them".into(),
            queue: "default".into(),
            args: r#"[{"$future":"a"},[{"$future":"b"}]]"#.into(),
            attempt: 0,
            timeout_secs: None,
            priority: 0,
            deps: vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("\"x\"".into())),
            ],
        };
        let (q, msg) = work_message(task.clone(), 7).unwrap();
        assert_eq!(q, "default");
        assert_eq!(msg.args, vec![json!(1), json!(["x"])]);
        assert_eq!(msg.epoch, 7);

        let mut lost = task;
        lost.deps[1].1 = None;
        let (key, failure) = work_message(lost, 0).unwrap_err();
        assert_eq!(key, "add-1");
        assert_eq!(failure.kind, "LostDependency");
        assert!(failure.message.contains('b'));
    }

    fn claimed(key: &str, args: &str) -> ClaimedTask {
        ClaimedTask {
            key: key.into(),
            func: "identity".into(),
            queue: "default".into(),
            args: args.into(),
            attempt: 0,
            timeout_secs: None,
            priority: 0,
            deps: vec![],
        }
    }

    #[test]
    fn a_work_message_over_the_limit_fails_its_task_naming_both_sizes() {
        let (_, msg) =
            work_message(claimed("big-1", &format!("[\"{}\"]", "x".repeat(500))), 0).unwrap();
        let (key, failure) = encode(msg.clone(), 400).err().unwrap();
        assert_eq!(key, "big-1");
        assert_eq!(failure.kind, "PayloadTooLarge");
        assert!(
            failure.message.contains("over the limit of 400 bytes"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("max_message_bytes"),
            "{}",
            failure.message
        );
        assert!(encode(msg, 4_000).is_ok());
    }

    #[test]
    fn packs_are_json_arrays_of_the_messages_and_one_travels_bare() {
        let enc = |k: &str| {
            let (_, msg) = work_message(claimed(k, "[1]"), 3).unwrap();
            encode(msg, 1_000).ok().unwrap()
        };
        let (body, props) = pack_body(vec![enc("a"), enc("b")]);
        let back: Vec<WorkMessage> = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            back.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let headers = props.headers().clone().unwrap();
        assert!(headers.inner().contains_key("tasks"));
        let (body, props) = pack_body(vec![enc("c")]);
        let back: WorkMessage = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.key, "c");
        assert!(
            !props
                .headers()
                .clone()
                .unwrap()
                .inner()
                .contains_key("tasks")
        );
    }

    #[test]
    fn packs_only_when_every_consumer_still_gets_several_messages() {
        let room = |messages, consumers| Room {
            messages,
            consumers,
        };
        // A lone task, or a handful, travel alone.
        assert_eq!(pack_size(1, room(128, 2)), 1);
        assert_eq!(pack_size(16, room(128, 2)), 2);
        // A big window is packed, up to the cap.
        assert_eq!(pack_size(256, room(128, 2)), MAX_PACK);
        assert_eq!(pack_size(64, room(128, 2)), 8);
        // Little room left: pack to fit.
        assert_eq!(pack_size(8, room(1, 1)), 8);
        // No consumers yet: treated as one.
        assert_eq!(pack_size(3, room(64, 0)), 1);
    }
}

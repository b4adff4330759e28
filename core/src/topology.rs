//! RabbitMQ topology: every exchange, queue and policy warren uses, named for
//! what it holds.
//!
//! The code is the source of truth. Components declare the queues and exchanges
//! they need on start (declaration is idempotent), and
//! `broker-config/definitions.json` is *exported* from [`Topology::definitions`],
//! with a test that fails when the file and the code disagree.
//!
//! Queues are declared with one argument, their type; everything an operator may
//! want to tune lives in **policies** (dead-lettering, the delivery-limit
//! backstop, overflow), which `broker-config/` applies with
//! `rabbitmqctl import_definitions` and the management UI shows beside each
//! queue. Arguments would freeze those values at first declaration (changing one
//! means deleting the queue); a policy changes them in place. Nothing warren
//! promises depends on a policy being there: `KilledWorker` is counted in Redis
//! (only runs that started count, see `lua/start.lua`), so the delivery limit
//! is only a backstop against a message that kills workers before it can start.
//!
//! With namespace `warren` (the default):
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `warren.submit` | queue | client requests: submit batches, restart |
//! | `warren.work.<queue>` | queue | runnable tasks for workers of `<queue>` (`default`) |
//! | `warren.results` | queue | worker reports: outcomes, started notices |
//! | `warren.killed` | queue | work messages past the delivery-limit backstop (→ `KilledWorker`) |
//! | `warren.dead` | queue | malformed or poison messages, kept for an operator, reason in a header |
//! | `warren.dlx` | direct exchange | dead-letter routing to `killed` and `dead` |
//! | `warren.control` | fanout exchange | scheduler → every worker broadcasts |
//! | `warren.work` | policy on `^warren\.work\.` | dead-letter to `killed`; quorum: delivery limit 20 |
//! | `warren.intake` | policy on `^warren\.(submit\|results)$` | dead-letter to `dead`; quorum: delivery limit 10 |
//!
//! Queues are `classic` (durable, persistent messages, publisher confirms: the
//! lowest latency on one node) or `quorum` (replicated over a cluster), per the
//! `queue_type` setting. Client reply queues are server-named, exclusive and
//! auto-deleted: they live exactly as long as the client's connection.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Result;
use crate::message_limit::MessageLimit;
use crate::msgauth::Auth;

/// Routing key (on the dead-letter exchange) of work messages past the
/// delivery-limit backstop.
pub const KILLED_ROUTING_KEY: &str = "killed";
/// Routing key (on the dead-letter exchange) of malformed messages.
pub const DEAD_ROUTING_KEY: &str = "dead";
/// Header carrying the reason a message was dead-lettered by warren.
pub const REASON_HEADER: &str = "x-warren-reason";
/// Header carrying the queue a message warren dead-lettered came from.
pub const ORIGIN_HEADER: &str = "x-warren-origin-queue";
/// Deliveries of a submit or results message before it is treated as poison
/// (quorum queues; policy `<ns>.intake`).
pub const INTAKE_DELIVERY_LIMIT: u32 = 10;
/// Deliveries of a work message before RabbitMQ gives up on it (quorum queues;
/// policy `<ns>.work`). Far above `allowed_failures`: every return counts here,
/// prefetched messages of a dead worker included, so it only catches a message
/// that kills workers before the start is recorded.
pub const WORK_DELIVERY_LIMIT: u32 = 20;

/// The RabbitMQ queue type of warren's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Durable classic queues: persistent messages, publisher confirms, one
    /// node. A message reaches a consumer without waiting for the disk, so each
    /// hop costs about a quarter of a quorum queue's (BENCHMARKS.md).
    Classic,
    /// Quorum queues: replicated by Raft over a RabbitMQ cluster, for
    /// deployments that must survive the loss of a broker node.
    Quorum,
}

impl QueueType {
    /// The value of `x-queue-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

impl std::fmt::Display for QueueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queue argument value: RabbitMQ wants strings or integers here.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A string argument.
    Str(String),
    /// An integer argument.
    Int(i64),
}

/// A durable queue warren declares.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDef {
    /// Full queue name.
    pub name: String,
    /// `x-` arguments.
    pub arguments: Vec<(&'static str, Arg)>,
}

/// An exchange warren declares.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeDef {
    /// Full exchange name.
    pub name: String,
    /// `direct` or `fanout`.
    pub kind: &'static str,
}

/// A policy: settings RabbitMQ applies to every queue whose name matches.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDef {
    /// Policy name.
    pub name: String,
    /// Regular expression over queue names.
    pub pattern: String,
    /// Policy keys (`dead-letter-exchange`, `delivery-limit`, ...).
    pub definition: Vec<(&'static str, Arg)>,
}

impl PolicyDef {
    /// The policy as RabbitMQ's management API takes it (`PUT
    /// /api/policies/<vhost>/<name>`), and as a definitions document holds
    /// it beside its name and vhost.
    pub fn body(&self) -> Value {
        json!({"pattern": self.pattern, "apply-to": "queues", "priority": 1,
               "definition": json_object(&self.definition)})
    }
}

/// Queue arguments or policy keys as the JSON object RabbitMQ's documents
/// hold them in.
pub fn json_object(pairs: &[(&str, Arg)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Arg::Str(s) => json!(s),
                Arg::Int(i) => json!(i),
            };
            ((*k).to_string(), v)
        })
        .collect()
}

/// A binding of a queue to an exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingDef {
    /// Exchange.
    pub source: String,
    /// Queue.
    pub queue: String,
    /// Routing key.
    pub routing_key: String,
}

/// RabbitMQ's name for work queue `queue` of namespace `ns`: the name whose
/// length counts ([`crate::limits::work_queue`]).
pub fn work_queue_name(ns: &str, queue: &str) -> String {
    format!("{ns}.work.{queue}")
}

/// The names and shapes of everything in one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    ns: String,
    queue_type: QueueType,
    message_limit: MessageLimit,
    max_payload_bytes: usize,
    auth: Auth,
}

impl Topology {
    /// The topology of namespace `ns`, with queues of type `queue_type` and
    /// the default message size limit.
    pub fn new(ns: &str, queue_type: QueueType) -> Self {
        Self {
            ns: ns.to_string(),
            queue_type,
            message_limit: MessageLimit::new(crate::Settings::default().max_message_bytes),
            max_payload_bytes: crate::Settings::default().max_payload_bytes,
            auth: Auth::default(),
        }
    }

    /// The topology `settings` describe (namespace, queue type, message limit).
    pub fn from_settings(settings: &crate::Settings) -> Self {
        Self {
            message_limit: MessageLimit::new(settings.max_message_bytes),
            max_payload_bytes: settings.max_payload_bytes,
            ..Self::new(&settings.namespace, settings.queue_type)
        }
    }

    /// The largest message to publish: setting `max_message_bytes`, or the
    /// broker's own limit once a refusal has told it (see [`MessageLimit`]).
    pub fn max_message_bytes(&self) -> usize {
        self.message_limit.get()
    }

    /// The largest request a client may send (setting `max_payload_bytes`):
    /// a scheduler checks it again, not trusting the client to have.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// This topology signing and checking its messages with `keys` (see
    /// [`Auth`]); without keys, messages are neither signed nor checked.
    pub fn with_keys(mut self, keys: Option<crate::signing::Keyring>) -> Self {
        self.auth = Auth::new(keys, &self.ns);
        self
    }

    /// How this namespace's messages are signed and checked.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The message size limit, shared by every clone of this topology.
    pub fn message_limit(&self) -> &MessageLimit {
        &self.message_limit
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }
    /// Client requests.
    pub fn submit_queue(&self) -> String {
        format!("{}.submit", self.ns)
    }
    /// Worker reports.
    pub fn results_queue(&self) -> String {
        format!("{}.results", self.ns)
    }
    /// Runnable tasks of work queue `name`.
    pub fn work_queue(&self, name: &str) -> String {
        work_queue_name(&self.ns, name)
    }
    /// Work messages past the delivery-limit backstop.
    pub fn killed_queue(&self) -> String {
        format!("{}.killed", self.ns)
    }
    /// Malformed messages, kept for operators.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.ns)
    }
    /// The dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.ns)
    }
    /// The scheduler → workers broadcast exchange.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.ns)
    }

    fn queue(&self, name: String) -> QueueDef {
        QueueDef {
            name,
            arguments: vec![("x-queue-type", Arg::Str(self.queue_type.as_str().into()))],
        }
    }

    /// The definition of work queue `name`.
    pub fn work_queue_def(&self, name: &str) -> QueueDef {
        self.queue(self.work_queue(name))
    }

    /// Every fixed queue, plus the work queues named.
    pub fn queues(&self, work_queues: &[&str]) -> Vec<QueueDef> {
        let mut qs = vec![
            self.queue(self.submit_queue()),
            self.queue(self.results_queue()),
            self.queue(self.killed_queue()),
            self.queue(self.dead_queue()),
        ];
        qs.extend(work_queues.iter().map(|w| self.work_queue_def(w)));
        qs
    }

    /// The policies of the namespace's queues. Namespaces are letters, digits,
    /// `-` and `_`, so they need no escaping in a pattern.
    pub fn policies(&self) -> Vec<PolicyDef> {
        let ns = &self.ns;
        // RabbitMQ applies a policy only to queues of a type that knows every
        // key in it: classic queues have no delivery limit nor dead-letter
        // strategy, so theirs is dead-lettering alone.
        let dead_lettering = |routing_key: &str, limit: u32| {
            let mut keys = vec![
                (
                    "dead-letter-exchange",
                    Arg::Str(self.dead_letter_exchange()),
                ),
                ("dead-letter-routing-key", Arg::Str(routing_key.into())),
            ];
            if self.queue_type == QueueType::Quorum {
                keys.extend([
                    ("delivery-limit", Arg::Int(i64::from(limit))),
                    // Quorum queues dead-letter at-most-once unless told
                    // otherwise; at-least-once needs reject-publish overflow.
                    ("dead-letter-strategy", Arg::Str("at-least-once".into())),
                    ("overflow", Arg::Str("reject-publish".into())),
                ]);
            }
            keys
        };
        vec![
            PolicyDef {
                name: format!("{ns}.work"),
                pattern: format!(r"^{ns}\.work\."),
                definition: dead_lettering(KILLED_ROUTING_KEY, WORK_DELIVERY_LIMIT),
            },
            PolicyDef {
                name: format!("{ns}.intake"),
                pattern: format!(r"^{ns}\.(submit|results)$"),
                definition: dead_lettering(DEAD_ROUTING_KEY, INTAKE_DELIVERY_LIMIT),
            },
        ]
    }

    /// Every exchange.
    pub fn exchanges(&self) -> Vec<ExchangeDef> {
        vec![
            ExchangeDef {
                name: self.dead_letter_exchange(),
                kind: "direct",
            },
            ExchangeDef {
                name: self.control_exchange(),
                kind: "fanout",
            },
        ]
    }

    /// Every binding between the fixed exchanges and queues.
    pub fn bindings(&self) -> Vec<BindingDef> {
        vec![
            BindingDef {
                source: self.dead_letter_exchange(),
                queue: self.killed_queue(),
                routing_key: KILLED_ROUTING_KEY.into(),
            },
            BindingDef {
                source: self.dead_letter_exchange(),
                queue: self.dead_queue(),
                routing_key: DEAD_ROUTING_KEY.into(),
            },
        ]
    }

    /// Declares every exchange, fixed queue and binding, plus the work queues named.
    pub async fn declare(&self, ch: &Channel, work_queues: &[&str]) -> Result<()> {
        for ex in self.exchanges() {
            let kind = if ex.kind == "fanout" {
                ExchangeKind::Fanout
            } else {
                ExchangeKind::Direct
            };
            ch.exchange_declare(
                crate::amqp::name(&ex.name)?,
                kind,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        }
        for q in self.queues(work_queues) {
            declare_queue(ch, &q).await?;
        }
        for b in self.bindings() {
            ch.queue_bind(
                crate::amqp::name(&b.queue)?,
                crate::amqp::name(&b.source)?,
                b.routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// The topology as a RabbitMQ definitions document (vhost `/`), importable
    /// through the management UI or `rabbitmqctl import_definitions`.
    pub fn definitions(&self, work_queues: &[&str]) -> Value {
        let queues: Vec<Value> = self
            .queues(work_queues)
            .iter()
            .map(|q| {
                json!({"name": q.name, "vhost": "/", "durable": true, "auto_delete": false,
                       "arguments": json_object(&q.arguments)})
            })
            .collect();
        let policies: Vec<Value> = self
            .policies()
            .iter()
            .map(|p| {
                let mut doc = p.body();
                doc["name"] = json!(p.name);
                doc["vhost"] = json!("/");
                doc
            })
            .collect();
        let exchanges: Vec<Value> = self
            .exchanges()
            .iter()
            .map(|e| {
                json!({"name": e.name, "vhost": "/", "type": e.kind, "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}})
            })
            .collect();
        let bindings: Vec<Value> = self
            .bindings()
            .iter()
            .map(|b| {
                json!({"source": b.source, "vhost": "/", "destination": b.queue,
                       "destination_type": "queue", "routing_key": b.routing_key, "arguments": {}})
            })
            .collect();
        json!({"queues": queues, "exchanges": exchanges, "bindings": bindings, "policies": policies})
    }
}

/// Declares one durable queue with its arguments; the answer carries its ready
/// messages and consumers.
pub async fn declare_queue(ch: &Channel, q: &QueueDef) -> Result<lapin::Queue> {
    let mut args = FieldTable::default();
    for (k, v) in &q.arguments {
        let v = match v {
            Arg::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
            Arg::Int(i) => AMQPValue::LongLongInt(*i),
        };
        args.insert(ShortString::from(*k), v);
    }
    ch.queue_declare(
        crate::amqp::name(&q.name)?,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace() {
        let t = Topology::new("team", QueueType::Classic);
        assert_eq!(t.work_queue("gpu"), "team.work.gpu");
        assert_eq!(t.submit_queue(), "team.submit");
        let defs = t.definitions(&["default"]);
        let names: Vec<&str> = defs["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"team.work.default"));
        assert!(names.iter().all(|n| n.starts_with("team.")));
    }

    /// `broker-config/definitions.json` is the export of this module for the
    /// default namespace; regenerate it with `WARREN_BLESS=1 cargo test -p warren-core`.
    #[test]
    fn definitions_file_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../broker-config/definitions.json");
        let expected = Topology::new("warren", QueueType::Classic).definitions(&["default"]);
        if std::env::var_os("WARREN_BLESS").is_some() {
            let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
        }
        let text =
            std::fs::read_to_string(&path).expect("broker-config/definitions.json is missing");
        let found: Value = serde_json::from_str(&text).expect("definitions.json is not JSON");
        assert_eq!(
            found, expected,
            "broker-config/definitions.json disagrees with core/src/topology.rs; \
             regenerate it with WARREN_BLESS=1 cargo test -p warren-core"
        );
    }

    #[test]
    fn queues_carry_only_their_type_and_policies_dead_letter_them() {
        let t = Topology::new("w", QueueType::Quorum);
        let q = t.work_queue_def("default");
        assert_eq!(
            q.arguments,
            vec![("x-queue-type", Arg::Str("quorum".into()))]
        );
        let work = &t.policies()[0];
        let pattern = work.pattern.trim_start_matches('^').replace(r"\.", ".");
        assert!(
            q.name.starts_with(&pattern),
            "{pattern} does not cover {}",
            q.name
        );
        assert!(
            work.definition
                .contains(&("dead-letter-routing-key", Arg::Str("killed".into())))
        );
        assert!(
            work.definition
                .contains(&("delivery-limit", Arg::Int(i64::from(WORK_DELIVERY_LIMIT))))
        );
        // RabbitMQ skips a policy holding keys a classic queue does not know.
        let classic = Topology::new("w", QueueType::Classic).policies();
        assert!(
            classic.iter().all(|p| p.definition.len() == 2),
            "{classic:?}"
        );
    }
}

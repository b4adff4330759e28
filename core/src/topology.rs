//! RabbitMQ topology: every exchange and queue warren uses, named for what it holds.
//!
//! The code is the source of truth. Components declare what they need on start
//! (declaration is idempotent), and `broker-config/definitions.json` is *exported*
//! from [`Topology::definitions`], with a test that fails when the file and the code
//! disagree, so operators can pre-create everything from the management UI.
//!
//! With namespace `warren` (the default):
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `warren.submit` | quorum queue | client requests: submit batches, restart |
//! | `warren.work.<queue>` | quorum queue | runnable tasks for workers of `<queue>` (`default`) |
//! | `warren.results` | quorum queue | worker reports: outcomes, started notices |
//! | `warren.killed` | quorum queue | work messages past the delivery limit (→ `KilledWorker`) |
//! | `warren.dead` | quorum queue | malformed or poison messages, kept for an operator, reason in a header |
//! | `warren.dlx` | direct exchange | dead-letter routing to `killed` and `dead` |
//! | `warren.control` | fanout exchange | scheduler → every worker broadcasts |
//!
//! Client reply queues are server-named, exclusive and auto-deleted: they live
//! exactly as long as the client's connection.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use serde_json::{Value, json};

use crate::error::Result;

/// Routing key (on the dead-letter exchange) of messages past the delivery limit.
pub const KILLED_ROUTING_KEY: &str = "killed";
/// Routing key (on the dead-letter exchange) of malformed messages.
pub const DEAD_ROUTING_KEY: &str = "dead";
/// Header carrying the reason a message was dead-lettered by warren.
pub const REASON_HEADER: &str = "x-warren-reason";
/// Header carrying the queue a message warren dead-lettered came from.
pub const ORIGIN_HEADER: &str = "x-warren-origin-queue";
/// Deliveries of a submit or results message before it is treated as poison.
pub const CONTROL_DELIVERY_LIMIT: u32 = 10;

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

/// The names and shapes of everything in one namespace.
#[derive(Debug, Clone)]
pub struct Topology {
    ns: String,
    delivery_limit: u32,
}

impl Topology {
    /// The topology of namespace `ns`, with work queues dead-lettering after
    /// `delivery_limit` deliveries.
    pub fn new(ns: &str, delivery_limit: u32) -> Self {
        Self {
            ns: ns.to_string(),
            delivery_limit,
        }
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
        format!("{}.work.{name}", self.ns)
    }
    /// Work messages past the delivery limit.
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

    fn quorum(&self, name: String, limit: u32, dl_key: &str) -> QueueDef {
        QueueDef {
            name,
            arguments: vec![
                ("x-queue-type", Arg::Str("quorum".into())),
                ("x-delivery-limit", Arg::Int(i64::from(limit))),
                (
                    "x-dead-letter-exchange",
                    Arg::Str(self.dead_letter_exchange()),
                ),
                ("x-dead-letter-routing-key", Arg::Str(dl_key.into())),
                // Quorum queues dead-letter at-most-once unless told otherwise: a
                // lost KilledWorker would leave its future pending forever.
                ("x-dead-letter-strategy", Arg::Str("at-least-once".into())),
                ("x-overflow", Arg::Str("reject-publish".into())),
            ],
        }
    }

    /// The definition of work queue `name`.
    pub fn work_queue_def(&self, name: &str) -> QueueDef {
        self.quorum(
            self.work_queue(name),
            self.delivery_limit,
            KILLED_ROUTING_KEY,
        )
    }

    /// Every fixed queue, plus the work queues named.
    pub fn queues(&self, work_queues: &[&str]) -> Vec<QueueDef> {
        let plain = |name| QueueDef {
            name,
            arguments: vec![("x-queue-type", Arg::Str("quorum".into()))],
        };
        let mut qs = vec![
            self.quorum(
                self.submit_queue(),
                CONTROL_DELIVERY_LIMIT,
                DEAD_ROUTING_KEY,
            ),
            self.quorum(
                self.results_queue(),
                CONTROL_DELIVERY_LIMIT,
                DEAD_ROUTING_KEY,
            ),
            plain(self.killed_queue()),
            plain(self.dead_queue()),
        ];
        qs.extend(work_queues.iter().map(|w| self.work_queue_def(w)));
        qs
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
                ex.name.into(),
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
                b.queue.into(),
                b.source.into(),
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
                let args: serde_json::Map<String, Value> = q
                    .arguments
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Arg::Str(s) => json!(s),
                            Arg::Int(i) => json!(i),
                        };
                        ((*k).to_string(), v)
                    })
                    .collect();
                json!({"name": q.name, "vhost": "/", "durable": true, "auto_delete": false, "arguments": args})
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
        json!({"queues": queues, "exchanges": exchanges, "bindings": bindings})
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
        q.name.as_str().into(),
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
        let t = Topology::new("team", 3);
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
        let expected = Topology::new("warren", 3).definitions(&["default"]);
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
    fn work_queues_dead_letter_past_the_delivery_limit() {
        let q = Topology::new("w", 5).work_queue_def("default");
        assert!(q.arguments.contains(&("x-delivery-limit", Arg::Int(5))));
        assert!(
            q.arguments
                .contains(&("x-dead-letter-routing-key", Arg::Str("killed".into())))
        );
    }
}

//! Connecting to RabbitMQ and publishing with confirms.
//!
//! Every warren message is persistent JSON published on a channel in confirm
//! mode: a publish only counts once the broker has confirmed it, because only then
//! is it safe to ack the message that caused it or to drop it from the outbox.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tracing::{info, warn};

use lapin::Confirmation;
/// A pending publisher confirm, awaited with [`confirmed`].
pub use lapin::PublisherConfirm;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

use crate::error::{Error, Result};
use crate::messages::CONTENT_TYPE;
use crate::settings::{Settings, redact_url};
use crate::tls::Tls;

/// A fresh name for a private queue of `namespace`, of `kind` (`client`,
/// `control`).
pub fn private_queue_name(namespace: &str, kind: &str) -> String {
    format!("{namespace}.{kind}.{}", uuid::Uuid::new_v4().simple())
}

/// How long to wait for RabbitMQ to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds between AMQP heartbeats, unless the URL sets `heartbeat=`.
///
/// RabbitMQ's own default is 60 s, and a peer counts as dead after two
/// missed beats: a stopped (SIGSTOP) or cut-off worker held its prefetched
/// tasks for minutes beside idle workers, and a stopped scheduler the
/// reports of finished tasks. At 5 s the broker closes such a connection,
/// and requeues what it held, within about 10 s.
pub const HEARTBEAT_SECS: u16 = 5;

/// `url` with `heartbeat=HEARTBEAT_SECS` added, unless it names one itself.
pub fn with_heartbeat(url: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if query.split('&').any(|p| p.starts_with("heartbeat=")) {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={HEARTBEAT_SECS}")
}

/// Whether RabbitMQ has blocked a connection's publishes, and why.
///
/// Under a memory or disk alarm the broker stops reading from publishing
/// connections and says so with `connection.blocked` and a reason ("low on
/// memory"). Nothing published meanwhile is confirmed, so a client must not
/// call it safe, and a wait for a confirm must name the alarm.
#[derive(Debug, Clone, Default)]
pub struct Blocked(Arc<Mutex<Option<String>>>);

impl Blocked {
    /// The broker's reason while the connection is blocked.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, reason: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }
}

/// Logs the connection's blocks and unblocks (once each), and keeps the reason.
fn watch_blocked(conn: &Connection, name: String) -> Blocked {
    let blocked = Blocked::default();
    let events = conn.events_listener();
    let state = blocked.clone();
    tokio::spawn(async move {
        tokio::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                lapin::Event::ConnectionBlocked(reason) => {
                    warn!(
                        connection = %name,
                        %reason,
                        "RabbitMQ blocked this connection's publishes (a resource alarm: memory or disk); nothing is confirmed until it clears: see `rabbitmqctl status` or the management UI's Overview"
                    );
                    state.set(Some(reason));
                }
                lapin::Event::ConnectionUnblocked => {
                    info!(connection = %name, "RabbitMQ unblocked this connection's publishes");
                    state.set(None);
                }
                _ => {}
            }
        }
    });
    blocked
}

/// Opens a connection named `name [<namespace>]` (shown in the management UI's
/// Connections tab, so an operator of a shared broker can tell namespaces apart).
/// A block by a broker alarm is logged (see [`connect_watched`] to read it).
pub async fn connect(settings: &Settings, name: &str) -> Result<Connection> {
    Ok(connect_watched(settings, name).await?.0)
}

/// [`connect`], with the connection's [`Blocked`] state.
///
/// `amqp_url` may name several nodes of a RabbitMQ cluster, separated by
/// commas: they are tried in turn, starting with the one that answered last
/// in this process (at first, one chosen by the process id), so that a
/// process whose node went away reconnects to another one (any node of a
/// cluster serves every queue).
pub async fn connect_watched(settings: &Settings, name: &str) -> Result<(Connection, Blocked)> {
    let name = format!("{name} [{}]", settings.namespace);
    let urls = node_urls(&settings.amqp_url);
    // With other nodes to try, a node that does not answer is left sooner.
    let timeout = match urls.len() {
        1 => CONNECT_TIMEOUT,
        _ => NODE_CONNECT_TIMEOUT,
    };
    // Processes start on different nodes (by pid), spreading a fleet's
    // connections over the cluster, and stay on the node that answers.
    let first = match LAST_GOOD_NODE.load(Ordering::Relaxed) {
        usize::MAX => std::process::id() as usize % urls.len(),
        i => i % urls.len(),
    };
    // Read at every connect: a certificate renewed on disk is used at the
    // next reconnect.
    let tls = Tls::load(settings)?;
    let runtime = lapin::runtime::default_runtime()?;
    let mut failures = Vec::new();
    for url in node_order(&urls, first) {
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from(name.clone()));
        let login = with_heartbeat(&tls.amqp_url(url));
        let connecting =
            Connection::connect_with_config(&login, props, tls.amqp(), runtime.clone());
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => {
                if let Some(i) = urls.iter().position(|u| *u == url) {
                    LAST_GOOD_NODE.store(i, Ordering::Relaxed);
                }
                if !failures.is_empty() {
                    info!(node = %redact_url(url), "connected to another RabbitMQ node");
                }
                let blocked = watch_blocked(&conn, name);
                return Ok((conn, blocked));
            }
            Ok(Err(cause)) => failures.push((redact_url(url), cause)),
            Err(_) => failures.push((
                redact_url(url),
                lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}s", timeout.as_secs()),
                )),
            )),
        }
    }
    let tried: Vec<String> = failures.iter().map(|(u, _)| u.clone()).collect();
    let (_, cause) = failures.pop().expect("amqp_url names at least one node");
    Err(Error::AmqpConnect {
        url: tried.join(", "),
        cause,
    })
}

/// [`connect_watched`] for a process that cannot start over, a CLI command
/// above all: with several nodes in `amqp_url`, a connect that fails because
/// no node answers (one dying, the others restarting or pausing) is tried
/// again within `patience`, saying so once, as running services ride it out.
/// One node, or a refusal no wait mends (login, vhost, certificate), fails
/// at once.
pub async fn connect_riding(
    settings: &Settings,
    name: &str,
    patience: Duration,
) -> Result<(Connection, Blocked)> {
    let deadline = tokio::time::Instant::now() + patience;
    let several = node_urls(&settings.amqp_url).len() > 1;
    let mut waiting = false;
    loop {
        match connect_watched(settings, name).await {
            Ok(found) => {
                if waiting {
                    info!("reached a RabbitMQ node");
                }
                return Ok(found);
            }
            Err(Error::AmqpConnect { url, cause })
                if several
                    && crate::error::amqp_unreachable(&cause.to_string())
                    && tokio::time::Instant::now() < deadline =>
            {
                if !waiting {
                    warn!(
                        nodes = %url,
                        error = %cause,
                        "no RabbitMQ node answers: waiting up to {}s (request_timeout_secs) for one; check that the cluster's nodes run",
                        patience.as_secs()
                    );
                    waiting = true;
                }
                tokio::time::sleep(RIDE_EVERY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How often [`connect_riding`] tries the nodes again.
const RIDE_EVERY: Duration = Duration::from_secs(1);

/// How long one node of several may take to accept a connection.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The node of `amqp_url` this process connected to last (`usize::MAX`:
/// none yet).
static LAST_GOOD_NODE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The URLs of `amqp_url`: one, or several separated by commas.
pub fn node_urls(amqp_url: &str) -> Vec<&str> {
    amqp_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// `urls` in the order to try them: from `first` on, wrapping around.
fn node_order<'a>(urls: &[&'a str], first: usize) -> Vec<&'a str> {
    let n = urls.len();
    (0..n).map(|i| urls[(first + i) % n]).collect()
}

/// A new channel in publisher-confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Result<Channel> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

/// Properties of a persistent JSON message, with `headers` (shown in the
/// management UI's "Get messages").
pub fn json_properties(headers: &[(&str, &str)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert(
            ShortString::from(*k),
            AMQPValue::LongString(LongString::from(*v)),
        );
    }
    BasicProperties::default()
        .with_content_type(ShortString::from(CONTENT_TYPE))
        .with_delivery_mode(2)
        .with_headers(table)
}

/// Properties for a copy of `body` moved to a dead-letter queue: the
/// original's headers (a replay count survives another death) with `headers`
/// (the reason and origin) over them, and the original's content type, or
/// JSON only if the body is JSON, so "Get messages" does not mislabel a
/// binary body.
pub fn dead_letter_properties(
    headers: &[(&str, &str)],
    original: &BasicProperties,
    body: &[u8],
) -> BasicProperties {
    let content_type = original.content_type().clone().unwrap_or_else(|| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            ShortString::from(CONTENT_TYPE)
        } else {
            ShortString::from("application/octet-stream")
        }
    });
    let mut table = original.headers().clone().unwrap_or_default();
    for (k, v) in headers {
        table.insert(
            ShortString::from(*k),
            AMQPValue::LongString(LongString::from(*v)),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The time it died, so `warren dead list` can show its age.
    json_properties(&[])
        .with_headers(table)
        .with_content_type(content_type)
        .with_timestamp(now)
}

/// `name` as the short string RabbitMQ wants for a queue, exchange or
/// routing key, or an error naming it: lapin's own conversion panics on a
/// name over 255 bytes, and names come from users and from Redis.
pub fn name(name: &str) -> Result<ShortString> {
    ShortString::try_new(name).map_err(|_| {
        Error::AmqpName(format!(
            "the name {} is {} bytes, more than RabbitMQ's {} (an AMQP short string)",
            crate::taskkey::shown(name),
            name.len(),
            crate::limits::AMQP_NAME_MAX
        ))
    })
}

/// Publishes `body`; the returned confirm must be awaited (see [`confirmed`]).
pub async fn publish(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<PublisherConfirm> {
    Ok(ch
        .basic_publish(
            self::name(exchange)?,
            self::name(routing_key)?,
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await?)
}

/// Awaits confirms of a window of publishes; any nack fails the whole window, so
/// the caller retries it (publishing is at-least-once, consumers deduplicate).
pub async fn confirmed(confirms: Vec<PublisherConfirm>, what: &str) -> Result<()> {
    for c in confirms {
        match c.await? {
            Confirmation::Nack(_) => return Err(Error::Nacked(what.to_string())),
            Confirmation::Ack(_) | Confirmation::NotRequested => {}
        }
    }
    Ok(())
}

/// Ready messages and consumers of queue `name`; `None` if it does not exist
/// (or RabbitMQ cannot say). A passive declare on a channel of its own: a
/// missing queue closes that channel, never the caller's.
pub async fn queue_stats(conn: &Connection, name: &str) -> Option<(u32, u32)> {
    let queue = self::name(name).ok()?;
    let ch = conn.create_channel().await.ok()?;
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue, opts, FieldTable::default())
        .await
        .ok()?;
    let _ = ch.close(200, "done".into()).await;
    Some((q.message_count(), q.consumer_count()))
}

/// A private queue named `name`: exclusive and auto-deleted (it lives
/// exactly as long as this connection), optionally bound to `exchange`, and
/// consumed without acks as `consumer_tag`. Client reply queues
/// (`<ns>.client.<id>`, the only `reply_to` a scheduler answers) and
/// workers' control queues (`<ns>.control.<id>`) are these: named in their
/// namespace, so that an operator's permissions on `^<ns>\.` cover them.
/// Returns the queue's name and its consumer.
pub async fn private_queue(
    ch: &Channel,
    name: &str,
    exchange: Option<&str>,
    consumer_tag: &str,
) -> Result<(String, Consumer)> {
    let q = ch
        .queue_declare(
            self::name(name)?,
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    if let Some(exchange) = exchange {
        ch.queue_bind(
            q.name().clone(),
            self::name(exchange)?,
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let consumer = ch
        .basic_consume(
            q.name().clone(),
            self::name(consumer_tag)?,
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((q.name().to_string(), consumer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_nodes_are_tried_from_the_last_good_one_around() {
        let urls = node_urls("amqp://a:1/%2f, amqp://b:2/%2f,,amqp://c:3/%2f");
        assert_eq!(urls, ["amqp://a:1/%2f", "amqp://b:2/%2f", "amqp://c:3/%2f"]);
        assert_eq!(node_order(&urls, 0), urls);
        assert_eq!(
            node_order(&urls, 2),
            ["amqp://c:3/%2f", "amqp://a:1/%2f", "amqp://b:2/%2f"]
        );
        assert_eq!(node_urls("amqp://one/%2f"), ["amqp://one/%2f"]);
    }

    #[test]
    fn heartbeats_are_short_unless_the_url_sets_them() {
        assert_eq!(
            with_heartbeat("amqp://h/%2f"),
            format!("amqp://h/%2f?heartbeat={HEARTBEAT_SECS}")
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=8192"),
            format!("amqp://h/%2f?frame_max=8192&heartbeat={HEARTBEAT_SECS}")
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?heartbeat=30"),
            "amqp://h/%2f?heartbeat=30"
        );
    }

    #[test]
    fn dead_letters_keep_their_content_type_or_say_what_the_body_is() {
        let ct = |p: BasicProperties| p.content_type().as_ref().map(|s| s.to_string());
        let headers = [("x-warren-reason", "bad")];
        let none = BasicProperties::default();
        assert_eq!(
            ct(dead_letter_properties(&headers, &none, b"\xff\x00 binary")).as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(
            ct(dead_letter_properties(&headers, &none, br#"{"v":1}"#)).as_deref(),
            Some(CONTENT_TYPE)
        );
        let original = json_properties(&[("x-warren-replays", "2")])
            .with_content_type(ShortString::from("text/plain"));
        let kept = dead_letter_properties(&headers, &original, b"hello");
        assert_eq!(ct(kept.clone()).as_deref(), Some("text/plain"));
        let table = kept.headers().clone().unwrap_or_default();
        assert!(table.inner().contains_key("x-warren-reason"));
        assert!(table.inner().contains_key("x-warren-replays"));
    }
}

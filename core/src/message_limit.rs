//! The largest message warren may publish: its setting, lowered to the
//! broker's own limit once the broker says what that is.
//!
//! RabbitMQ answers a publish over its `max_message_size` by closing the
//! channel with `PRECONDITION_FAILED - message size N is larger than
//! configured max size M`. A process that only knew its own setting
//! (`max_message_bytes`) would reconnect and publish the same message again,
//! for ever, stalling its namespace. So a refusal is read for `M`, the limit
//! is lowered to it for the rest of the process's life (and kept in Redis for
//! the next process, see `Store::broker_message_limit`), and the message that
//! caused it fails its task alone when it is built again: `PayloadTooLarge`,
//! naming the broker's limit.
//!
//! RabbitMQ does not tell a client its limit any other way, so warren learns
//! it from the first refusal, and its default (16 MiB) matches RabbitMQ 4's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A shared, lowerable message size limit (cheap to clone).
#[derive(Debug, Clone)]
pub struct MessageLimit {
    setting: usize,
    broker: Arc<AtomicUsize>,
}

impl MessageLimit {
    /// The limit of setting `max_message_bytes`, with no broker limit known.
    pub fn new(setting: usize) -> Self {
        Self {
            setting,
            broker: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }

    /// The largest message body to publish now.
    pub fn get(&self) -> usize {
        self.setting.min(self.broker.load(Ordering::Relaxed))
    }

    /// The setting `max_message_bytes`.
    pub fn setting(&self) -> usize {
        self.setting
    }

    /// The broker's limit, once known.
    pub fn broker(&self) -> Option<usize> {
        match self.broker.load(Ordering::Relaxed) {
            usize::MAX => None,
            n => Some(n),
        }
    }

    /// Records that the broker takes at most `max` bytes; true when that is
    /// news (lower than what was known).
    pub fn learn(&self, max: usize) -> bool {
        self.broker.fetch_min(max, Ordering::Relaxed) > max
    }

    /// What to say when the setting is above the broker's known limit.
    pub fn warning(&self) -> Option<String> {
        let broker = self.broker()?;
        (self.setting > broker).then(|| {
            format!(
                "setting max_message_bytes ({}) is above RabbitMQ's max_message_size ({broker} bytes, from a publish it refused): warren publishes at most {broker} bytes; set max_message_bytes to at most {broker}, or raise max_message_size in rabbitmq.conf",
                self.setting
            )
        })
    }
}

/// Runs one connected phase of a process (see [`crate::reconnect`]); when it
/// ends because the broker refused a publish for its size, `limit` learns the
/// broker's limit, so that the next phase fails that message's task alone
/// instead of publishing it again.
pub async fn learning<E: std::fmt::Display>(
    limit: &MessageLimit,
    phase: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), E> {
    let ended = phase.await;
    if let Err(e) = &ended
        && let Some(max) = refused_for_size(&format!("{e:#}"))
        && limit.learn(max)
    {
        tracing::warn!(
            broker_max_message_size = max,
            max_message_bytes = limit.setting(),
            "RabbitMQ refused a message for its size; from now on warren publishes at most {max} bytes, and a task whose message is bigger fails alone with PayloadTooLarge (raise max_message_size in rabbitmq.conf, or set max_message_bytes to at most {max})"
        );
    }
    ended
}

/// The broker's limit from the text of a refusal for size (the error of the
/// publish or confirm, or the channel's close reason), if that is what it is.
pub fn refused_for_size(error: &str) -> Option<usize> {
    const MARK: &str = "is larger than configured max size ";
    let at = error.find(MARK)? + MARK.len();
    let digits: String = error[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brokers_refusal_names_its_limit() {
        let text = "RabbitMQ: protocol error: AMQP soft error: PRECONDITION-FAILED: PRECONDITION_FAILED - message size 1600145 is larger than configured max size 1048576";
        assert_eq!(refused_for_size(text), Some(1_048_576));
        assert_eq!(refused_for_size("connection reset by peer"), None);
        assert_eq!(
            refused_for_size("is larger than configured max size x"),
            None
        );
        assert_eq!(
            refused_for_size("is larger than configured max size 99999999999999999999999"),
            None
        );
    }

    #[test]
    fn a_learned_limit_only_lowers_and_is_shared_by_clones() {
        let limit = MessageLimit::new(16 << 20);
        assert_eq!((limit.get(), limit.broker()), (16 << 20, None));
        assert!(limit.warning().is_none());
        let clone = limit.clone();
        assert!(clone.learn(1 << 20));
        assert!(!limit.learn(2 << 20), "a higher limit is no news");
        assert_eq!((limit.get(), limit.broker()), (1 << 20, Some(1 << 20)));
        let w = limit.warning().unwrap();
        assert!(
            w.contains("max_message_bytes (16777216)") && w.contains("1048576"),
            "{w}"
        );
        // A broker limit above the setting changes nothing and says nothing.
        let roomy = MessageLimit::new(1000);
        roomy.learn(5000);
        assert_eq!(roomy.get(), 1000);
        assert!(roomy.warning().is_none());
    }
}

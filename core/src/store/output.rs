//! Live task output: what a running task prints, published as it is
//! written, for clients that forward it (the Python client's
//! `forward_output`, dask's forwarded worker logs).
//!
//! Redis pub/sub, not a stored key: live output is a courtesy to whoever
//! watches now. What a task printed is kept with its result anyway
//! (`logs:<key>`, `future.logs()`), so a message lost to a failover or to
//! a client that subscribed late costs nothing durable. Channels are
//! `P output:<key>`; a client subscribes to the namespace's pattern and
//! picks the keys it cares about.

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, Result};
use crate::settings::redact_url;

/// One piece of a task's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// What was written.
    pub text: String,
}

impl Store {
    /// Publishes a piece of what task `key` prints now.
    pub async fn publish_output(&self, key: &str, chunk: &Chunk) -> Result<()> {
        let mut con = self.con();
        let body = serde_json::to_string(chunk)?;
        let _: i64 = redis::cmd("PUBLISH")
            .arg(self.keys.output(key))
            .arg(body)
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Every task's output from now on, as `(key, chunk)`, until the
    /// connection to the primary is lost (the caller subscribes again).
    /// A message that is no chunk is skipped.
    pub async fn output(
        &self,
    ) -> Result<impl futures::Stream<Item = (String, Chunk)> + Send + 'static> {
        let url = self.target.primary_url(&self.tls).await?;
        let refused = |cause| Error::RedisConnect {
            url: redact_url(&url),
            cause,
        };
        let client = self.tls.redis_client(&url).map_err(refused)?;
        let mut pubsub = client.get_async_pubsub().await.map_err(refused)?;
        let prefix = self.keys.output("");
        pubsub.psubscribe(format!("{prefix}*")).await?;
        Ok(pubsub.into_on_message().filter_map(move |msg| {
            let item = parse(&prefix, msg.get_channel_name(), msg.get_payload_bytes());
            async move { item }
        }))
    }
}

/// A published message as `(key, chunk)`: its channel past `prefix`, its
/// payload a [`Chunk`] (pure).
pub fn parse(prefix: &str, channel: &str, payload: &[u8]) -> Option<(String, Chunk)> {
    let key = channel.strip_prefix(prefix)?;
    crate::taskkey::validate_key(key).ok()?;
    let chunk = serde_json::from_slice(payload).ok()?;
    Some((key.to_string(), chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_a_key_and_a_chunk_or_nothing() {
        let p = "warren:output:";
        let (key, chunk) = parse(
            p,
            "warren:output:inc-1",
            br#"{"stream":"stdout","text":"hi\n"}"#,
        )
        .expect("a chunk");
        assert_eq!(key, "inc-1");
        assert_eq!(chunk.text, "hi\n");
        assert!(parse(p, "other:output:inc-1", br#"{"stream":"stdout","text":""}"#).is_none());
        assert!(parse(p, "warren:output:", br#"{"stream":"stdout","text":""}"#).is_none());
        assert!(parse(p, "warren:output:k", b"not json").is_none());
        assert!(
            parse(
                p,
                "warren:output:k",
                br#"{"stream":"x","text":"","more":1}"#
            )
            .is_none()
        );
    }
}

//! Redis Cluster: which node holds a namespace, and how to ask.
//!
//! On a Redis Cluster every key of a namespace carries the hash tag
//! `{<namespace>}` (see [`super::Keys::tagged`]), so the whole namespace
//! lives in one hash slot, on one primary and its replicas. A store therefore
//! does not need a cluster-aware connection that routes each command: it
//! connects straight to the primary of its slot, and runs every script, `WAIT`
//! and `SCAN` there, exactly as on a single Redis. That is what makes `WAIT`
//! mean "the replicas of the node that ran the script hold it" (a routing
//! client sends a keyless `WAIT` to any node), and `SCAN` cover the namespace
//! (it walks one node). When the slot's primary dies, the cluster promotes one
//! of its replicas; the store asks the cluster (`CLUSTER SLOTS`) which node
//! serves the slot now, as it asks sentinels on a replicated single primary.
//!
//! So a cluster spreads namespaces over its primaries, never the tasks of one
//! namespace: the throughput of one namespace is that of one Redis.

use redis::Value;

/// The scheme of a Redis Cluster URL:
/// `redis+cluster://[user:password@]host:port[,host:port...]`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// The number of hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The hash slot of a key whose hash tag is `tag` (Redis's CRC16-XMODEM of
/// the tag, modulo 16384): what `CLUSTER KEYSLOT {tag}:anything` answers.
pub fn slot_of(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// The primary (`host`, `port`) that a `CLUSTER SLOTS` reply names for
/// `slot`, if any range holds it.
///
/// Each entry is `[start, end, [host, port, id, ...], replicas...]`; the host
/// may be empty or `?` when the node does not know its own address, and then
/// `asked` (the node that answered) is meant, as Redis documents.
pub fn primary_in(reply: &Value, slot: u16, asked: &str) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(start), Some(end), Some(Value::Array(primary))) =
            (int(fields.first()), int(fields.get(1)), fields.get(2))
        else {
            continue;
        };
        if !(start..=end).contains(&i64::from(slot)) {
            continue;
        }
        let host = text(primary.first())?;
        let port = u16::try_from(int(primary.get(1))?).ok()?;
        let host = if host.is_empty() || host == "?" {
            asked.to_string()
        } else {
            host
        };
        return Some((host, port));
    }
    None
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Asks the cluster node at `node` (`redis://[auth@]host:port`) which primary
/// serves `slot`, answered within 2 s.
pub async fn ask(
    node: &str,
    slot: u16,
    tls: &crate::tls::Tls,
) -> redis::RedisResult<Option<(String, u16)>> {
    let client = tls.redis_client(node)?;
    let asked = match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
            host.clone()
        }
        _ => String::new(),
    };
    let answer = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Value>(&mut con)
            .await
    };
    let reply = super::primary::within_2s(answer).await?;
    Ok(primary_in(&reply, slot, &asked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_what_redis_answers() {
        // Redis documents `CLUSTER KEYSLOT foo` as 12182; 0x31C3 is
        // CRC16-XMODEM's check value. tests/redis_failover.rs checks a
        // namespace's keys are in `slot_of` it on a real cluster.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("123456789"), 0x31C3);
        assert_eq!(slot_of(""), 0);
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(start),
            Value::Int(end),
            Value::Array(vec![bulk(host), Value::Int(port), bulk("id1")]),
            Value::Array(vec![bulk("10.0.0.9"), Value::Int(7006), bulk("id2")]),
        ])
    }

    #[test]
    fn the_primary_of_the_range_holding_the_slot_is_named() {
        let reply = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7001),
            range(5461, 10922, "10.0.0.2", 7002),
            range(10923, 16383, "", 7003),
        ]);
        let at = |slot| primary_in(&reply, slot, "10.0.0.5");
        assert_eq!(at(0), Some(("10.0.0.1".into(), 7001)));
        assert_eq!(at(5461), Some(("10.0.0.2".into(), 7002)));
        // A node that does not know its address is the one that answered.
        assert_eq!(at(16383), Some(("10.0.0.5".into(), 7003)));
        let partial = Value::Array(vec![range(0, 100, "h", 1)]);
        assert_eq!(primary_in(&partial, 101, "x"), None);
        assert_eq!(primary_in(&Value::Nil, 1, "x"), None);
    }
}

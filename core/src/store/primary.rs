//! Where the Redis primary is: one fixed URL, or what Redis Sentinel says.
//!
//! With replicas, a primary's death is survived by promoting a replica; the
//! promotion is Sentinel's (or an operator's) job, and following it is
//! warren's. warren speaks Sentinel rather than Redis Cluster because
//! Sentinel is what a single-primary Redis with replicas runs on, and every
//! warren script works on one namespace's keys, which a Redis Cluster would
//! keep on one node anyway: a cluster would spread namespaces, not the work of
//! one. A `redis+sentinel://` URL names the sentinels and the primary's name:
//!
//! `redis+sentinel://[user:password@]host:port[,host:port...]/<primary name>[/<db>]`
//!
//! The password (if any) is the data nodes'; the sentinels are asked without.

use crate::error::{Error, Result};
use crate::settings::redact_url;

/// The scheme of a Sentinel URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// How a [`crate::store::Store`] finds its Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, always this URL.
    Direct(String),
    /// Ask the sentinels for the current primary of `name`.
    Sentinel {
        /// `redis://host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The primary's name in the sentinels' configuration.
        name: String,
        /// `user:password@` (or empty) for the data nodes.
        auth: String,
        /// The database number.
        db: u32,
    },
}

impl Target {
    /// Parses `redis_url`; a `redis+sentinel://` URL names sentinels.
    pub fn parse(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return Ok(Target::Direct(url.to_string()));
        };
        let bad = |why: &str| {
            Error::Settings(format!(
                "redis_url {}: {why} (expected {SENTINEL_SCHEME}[user:password@]host:port[,host:port...]/<primary name>[/<db>])",
                redact_url(url)
            ))
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no primary name"))?;
        let (auth, hosts) = match authority.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), authority),
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        if sentinels.is_empty() {
            return Err(bad("no sentinel address"));
        }
        let mut parts = path.split('/');
        let name = parts.next().unwrap_or("").to_string();
        if name.is_empty() {
            return Err(bad("no primary name"));
        }
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(d) => d
                .parse()
                .map_err(|_| bad("the database must be a number"))?,
            None => 0,
        };
        Ok(Target::Sentinel {
            sentinels,
            name,
            auth,
            db,
        })
    }

    /// Whether the primary can move (it is found through sentinels).
    pub fn follows(&self) -> bool {
        matches!(self, Target::Sentinel { .. })
    }

    /// The URL of the primary now: the fixed one, or the first sentinel's
    /// answer that names one.
    pub async fn primary_url(&self) -> Result<String> {
        let (sentinels, name, auth, db) = match self {
            Target::Direct(url) => return Ok(url.clone()),
            Target::Sentinel {
                sentinels,
                name,
                auth,
                db,
            } => (sentinels, name, auth, db),
        };
        let mut last = None;
        for sentinel in sentinels {
            match ask(sentinel, name).await {
                Ok(Some((host, port))) => return Ok(format!("redis://{auth}{host}:{port}/{db}")),
                Ok(None) => last = Some(format!("{sentinel} knows no primary named {name}")),
                Err(e) => last = Some(format!("{sentinel}: {e}")),
            }
        }
        Err(Error::Settings(format!(
            "no sentinel named the Redis primary {name:?}: {}",
            last.unwrap_or_default()
        )))
    }
}

/// `SENTINEL get-master-addr-by-name`, answered within 2 s.
async fn ask(sentinel: &str, name: &str) -> redis::RedisResult<Option<(String, u16)>> {
    let client = redis::Client::open(sentinel)?;
    let answer = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query_async::<Option<(String, u16)>>(&mut con)
            .await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), answer).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 2s",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_primary_and_the_database() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/").unwrap(),
            Target::Direct("redis://127.0.0.1:6379/".into())
        );
        assert_eq!(
            Target::parse("redis+sentinel://:pw@h1:7101,h2:7102/main/2").unwrap(),
            Target::Sentinel {
                sentinels: vec!["redis://h1:7101".into(), "redis://h2:7102".into()],
                name: "main".into(),
                auth: ":pw@".into(),
                db: 2,
            }
        );
        let t = Target::parse("redis+sentinel://h1:7101/main").unwrap();
        assert!(t.follows());
        assert!(matches!(t, Target::Sentinel { db: 0, .. }));
        for bad in [
            "redis+sentinel://h1:7101",
            "redis+sentinel://h1:7101/",
            "redis+sentinel:///main",
            "redis+sentinel://h1:7101/main/x",
        ] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected redis+sentinel://"), "{bad}: {e}");
        }
    }
}

//! Where the Redis primary is: one fixed URL, what Redis Sentinel says, or
//! which node of a Redis Cluster serves the namespace's slot.
//!
//! With replicas, a primary's death is survived by promoting a replica; the
//! promotion is Sentinel's, the cluster's (or an operator's) job, and
//! following it is warren's. Both are supported because both are what users
//! run: Sentinel for a single primary with replicas, Redis Cluster where
//! several primaries share many namespaces. Every warren script works on one
//! namespace's keys, which a cluster keeps in one slot (see [`super::cluster`]),
//! so in both cases a store talks to one primary at a time.
//!
//! `redis+sentinel://[user:password@]host:port[,host:port...]/<primary name>[/<db>]`
//! names the sentinels and the primary's name; the password (if any) is the
//! data nodes'. Sentinels that want one of their own (`requirepass` in
//! sentinel.conf) are asked with the setting `redis_sentinel_password`.
//!
//! `redis+cluster://[user:password@]host:port[,host:port...]` names some
//! nodes of a cluster (any of them can say where the slot is).
//!
//! `rediss+sentinel://` and `rediss+cluster://` are the same over TLS: to the
//! sentinels, the cluster's nodes and the primary alike (see [`crate::tls`]).

use super::cluster::{self, CLUSTER_SCHEME};
use crate::error::{Error, Result};
use crate::settings::redact_url;
use crate::tls::Tls;

/// The scheme of a Sentinel URL.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Whether `url` has a scheme warren's Redis URLs may have.
pub fn known_scheme(url: &str) -> bool {
    let (plain, _) = without_tls(url);
    plain.starts_with("redis://")
        || plain.starts_with(SENTINEL_SCHEME)
        || plain.starts_with(CLUSTER_SCHEME)
}

/// `url` with `rediss` read as `redis` (the same URL over TLS), and the
/// scheme of the servers it leads to: `rediss://` or `redis://`.
fn without_tls(url: &str) -> (std::borrow::Cow<'_, str>, &'static str) {
    match url.strip_prefix("rediss") {
        Some(rest) => (format!("redis{rest}").into(), "rediss://"),
        None => (url.into(), "redis://"),
    }
}

/// How a [`crate::store::Store`] finds its Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, always this URL.
    Direct(String),
    /// Ask the sentinels for the current primary of `name`.
    Sentinel {
        /// `redis://host:port` (or `rediss://`) of each sentinel.
        sentinels: Vec<String>,
        /// The primary's name in the sentinels' configuration.
        name: String,
        /// `user:password@` (or empty) for the data nodes.
        auth: String,
        /// The database number.
        db: u32,
        /// `redis://` or `rediss://` (TLS), for the sentinels and the primary.
        scheme: &'static str,
    },
    /// Ask the cluster's nodes which primary serves `slot`.
    Cluster {
        /// `redis://[auth@]host:port` of each node named in the URL.
        nodes: Vec<String>,
        /// `user:password@` (or empty) for every node.
        auth: String,
        /// The namespace's hash slot.
        slot: u16,
        /// `redis://` or `rediss://` (TLS), for every node.
        scheme: &'static str,
    },
}

/// `user:password@` and the `host:port` list of a URL's authority.
fn split_authority(authority: &str) -> (String, Vec<&str>) {
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), authority),
    };
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    (auth, hosts)
}

impl Target {
    /// Parses `redis_url` for `namespace`: a `redis+sentinel://` URL names
    /// sentinels, a `redis+cluster://` one nodes of a cluster.
    pub fn parse(url: &str, namespace: &str) -> Result<Self> {
        // `rediss+...` is `redis+...` with TLS to every node.
        let given = url;
        let (plain, scheme) = without_tls(url);
        let plain = plain.as_ref();
        if let Some(rest) = plain.strip_prefix(CLUSTER_SCHEME) {
            return Self::parse_cluster(given, rest, namespace, scheme);
        }
        let Some(rest) = plain.strip_prefix(SENTINEL_SCHEME) else {
            return Ok(Target::Direct(given.to_string()));
        };
        let bad = |why: &str| {
            Error::Settings(format!(
                "redis_url {}: {why} (expected {SENTINEL_SCHEME}[user:password@]host:port[,host:port...]/<primary name>[/<db>])",
                redact_url(url)
            ))
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no primary name"))?;
        let (auth, hosts) = split_authority(authority);
        let sentinels: Vec<String> = hosts.iter().map(|h| format!("{scheme}{h}")).collect();
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
            scheme,
        })
    }

    fn parse_cluster(url: &str, rest: &str, namespace: &str, scheme: &'static str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Settings(format!(
                "redis_url {}: {why} (expected {CLUSTER_SCHEME}[user:password@]host:port[,host:port...])",
                redact_url(url)
            ))
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() && path != "0" {
            return Err(bad("a Redis Cluster has only database 0"));
        }
        let (auth, hosts) = split_authority(authority);
        if hosts.is_empty() {
            return Err(bad("no node address"));
        }
        let nodes = hosts.iter().map(|h| format!("{scheme}{auth}{h}")).collect();
        Ok(Target::Cluster {
            nodes,
            auth,
            slot: cluster::slot_of(namespace),
            scheme,
        })
    }

    /// This target, asking its sentinels (if any) with `password` (empty:
    /// without one).
    pub fn with_sentinel_password(mut self, password: &str) -> Self {
        if let Target::Sentinel {
            sentinels, scheme, ..
        } = &mut self
            && !password.is_empty()
        {
            let auth = format!(":{}@", percent_encode(password));
            for s in sentinels.iter_mut() {
                if let Some(host) = s.strip_prefix(*scheme) {
                    *s = format!("{scheme}{auth}{host}");
                }
            }
        }
        self
    }

    /// Whether the primary can move (it is found through sentinels or the
    /// cluster).
    pub fn follows(&self) -> bool {
        !matches!(self, Target::Direct(_))
    }

    /// Whether keys must carry the namespace as a hash tag.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster { .. })
    }

    /// The URL of the primary now: the fixed one, or the first answer of a
    /// sentinel or cluster node that names one.
    pub async fn primary_url(&self, tls: &Tls) -> Result<String> {
        let (sentinels, name, auth, db, scheme) = match self {
            Target::Direct(url) => return Ok(url.clone()),
            Target::Cluster {
                nodes,
                auth,
                slot,
                scheme,
            } => {
                return cluster_primary(nodes, auth, *slot, scheme, tls).await;
            }
            Target::Sentinel {
                sentinels,
                name,
                auth,
                db,
                scheme,
            } => (sentinels, name, auth, db, scheme),
        };
        let mut last = None;
        let mut transient = true;
        for sentinel in sentinels {
            let shown = redact_url(sentinel);
            match ask(sentinel, name, tls).await {
                Ok(Some((host, port))) => return Ok(format!("{scheme}{auth}{host}:{port}/{db}")),
                Ok(None) => last = Some(format!("{shown} knows no primary named {name}")),
                Err(e) => {
                    transient &= unreachable(&e);
                    last = Some(format!("{shown}: {e}"));
                }
            }
        }
        Err(Error::NoPrimary {
            message: format!(
                "no sentinel named the Redis primary {name:?}: {}",
                last.unwrap_or_default()
            ),
            transient,
        })
    }
}

/// The URL of the primary that the first answering node of a cluster names
/// for `slot`.
async fn cluster_primary(
    nodes: &[String],
    auth: &str,
    slot: u16,
    scheme: &str,
    tls: &Tls,
) -> Result<String> {
    let mut last = None;
    let mut transient = true;
    for node in nodes {
        match cluster::ask(node, slot, tls).await {
            Ok(Some((host, port))) => return Ok(format!("{scheme}{auth}{host}:{port}/")),
            Ok(None) => last = Some(format!("{} serves no slot {slot}", redact_url(node))),
            Err(e) => {
                transient &= unreachable(&e);
                last = Some(format!("{}: {e}", redact_url(node)));
            }
        }
    }
    Err(Error::NoPrimary {
        message: format!(
            "no Redis Cluster node named the primary of slot {slot}: {}",
            last.unwrap_or_default()
        ),
        transient,
    })
}

/// Whether `e` says a server is away (refused, timed out, dropped), which
/// a failover or a restart mends, rather than that it refused us (a
/// password, a certificate), which waiting does not.
pub fn unreachable(e: &redis::RedisError) -> bool {
    e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped()
}

/// `s` with every byte outside RFC 3986's unreserved set percent-encoded,
/// for a password inside a URL (pure).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `SENTINEL get-master-addr-by-name`, answered within 2 s.
async fn ask(sentinel: &str, name: &str, tls: &Tls) -> redis::RedisResult<Option<(String, u16)>> {
    let client = tls.redis_client(sentinel)?;
    let answer = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query_async::<Option<(String, u16)>>(&mut con)
            .await
    };
    within_2s(answer).await
}

/// `answer`, or a timeout error if it takes over 2 s: a sentinel or cluster
/// node that does not answer must not hold up the search for the primary.
pub(super) async fn within_2s<T>(
    answer: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
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
            Target::parse("redis://127.0.0.1:6379/", "ns").unwrap(),
            Target::Direct("redis://127.0.0.1:6379/".into())
        );
        assert_eq!(
            Target::parse("redis+sentinel://:pw@h1:7101,h2:7102/main/2", "ns").unwrap(),
            Target::Sentinel {
                sentinels: vec!["redis://h1:7101".into(), "redis://h2:7102".into()],
                name: "main".into(),
                auth: ":pw@".into(),
                db: 2,
                scheme: "redis://",
            }
        );
        let t = Target::parse("redis+sentinel://h1:7101/main", "ns").unwrap();
        assert!(t.follows());
        assert!(matches!(t, Target::Sentinel { db: 0, .. }));
        for bad in [
            "redis+sentinel://h1:7101",
            "redis+sentinel://h1:7101/",
            "redis+sentinel:///main",
            "redis+sentinel://h1:7101/main/x",
        ] {
            let e = Target::parse(bad, "ns").unwrap_err().to_string();
            assert!(e.contains("expected redis+sentinel://"), "{bad}: {e}");
        }
    }

    #[test]
    fn sentinels_are_asked_with_their_own_password() {
        let t = Target::parse("rediss+sentinel://:data@h1:7101,h2:7102/main", "ns")
            .unwrap()
            .with_sentinel_password("p@ss:w/rd");
        let Target::Sentinel {
            sentinels, auth, ..
        } = &t
        else {
            panic!("{t:?}");
        };
        assert_eq!(
            sentinels,
            &[
                "rediss://:p%40ss%3Aw%2Frd@h1:7101",
                "rediss://:p%40ss%3Aw%2Frd@h2:7102"
            ]
        );
        // The data nodes keep the URL's own password.
        assert_eq!(auth, ":data@");
        let plain = Target::parse("redis+sentinel://h1:7101/main", "ns").unwrap();
        assert_eq!(plain.clone().with_sentinel_password(""), plain);
        let direct = Target::parse("redis://h/", "ns").unwrap();
        assert_eq!(direct.clone().with_sentinel_password("x"), direct);
    }

    #[test]
    fn a_rediss_url_reaches_every_node_over_tls() {
        assert_eq!(
            Target::parse("rediss+sentinel://h1:7101/main", "ns").unwrap(),
            Target::Sentinel {
                sentinels: vec!["rediss://h1:7101".into()],
                name: "main".into(),
                auth: String::new(),
                db: 0,
                scheme: "rediss://",
            }
        );
        let t = Target::parse("rediss+cluster://:pw@h1:7001", "foo").unwrap();
        assert!(
            matches!(&t, Target::Cluster { nodes, scheme: "rediss://", .. } if nodes[0] == "rediss://:pw@h1:7001")
        );
        let e = Target::parse("rediss+sentinel://h1:7101", "ns")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rediss+sentinel://h1:7101: no primary name"),
            "{e}"
        );
        for ok in [
            "redis://h/",
            "rediss://h/",
            "redis+sentinel://h/m",
            "rediss+sentinel://h/m",
            "redis+cluster://h",
            "rediss+cluster://h",
        ] {
            assert!(known_scheme(ok), "{ok}");
        }
        for bad in ["http://h/", "redis+x://h", "rediss+x://h", "valkey://h"] {
            assert!(!known_scheme(bad), "{bad}");
        }
    }

    #[test]
    fn a_cluster_url_names_nodes_and_the_namespace_picks_the_slot() {
        let t = Target::parse("redis+cluster://:pw@h1:7001, h2:7002/", "foo").unwrap();
        assert_eq!(
            t,
            Target::Cluster {
                nodes: vec!["redis://:pw@h1:7001".into(), "redis://:pw@h2:7002".into()],
                auth: ":pw@".into(),
                slot: 12182,
                scheme: "redis://",
            }
        );
        assert!(t.follows() && t.is_cluster());
        assert!(!Target::parse("redis://h/", "foo").unwrap().is_cluster());
        for bad in ["redis+cluster://", "redis+cluster://h1:7001/3"] {
            let e = Target::parse(bad, "ns").unwrap_err().to_string();
            assert!(e.contains("expected redis+cluster://"), "{bad}: {e}");
        }
    }
}

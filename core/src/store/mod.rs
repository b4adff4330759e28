//! The Redis store: where every future's state lives.
//!
//! State changes only through the Lua scripts in `src/lua/`, each applied
//! atomically by Redis and written so that applying it twice is harmless. That is
//! what makes two schedulers safe and lets this module retry a command whose
//! connection dropped. The key layout ([`Keys`]), with `P` = `<namespace>:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P t:<key>` | hash | the task: `s` state, `f` func, `q` queue, `a` args, `deps`, `n` outstanding deps, `v` value, `e` error, `due` not before (ms), `rp` retry policy |
//! | `P d:<key>` | set | keys of tasks waiting on `<key>` (its dependents) |
//! | `P w:<key>` | set | reply queues of clients watching `<key>` |
//! | `P outbox:<queue>` | sorted set | runnable keys not yet published to RabbitMQ, highest priority first, then FIFO |
//! | `P delayed` | sorted set | `scheduled` tasks (a delay, a due time, a retry's pause), scored by their due time (ms, Redis's clock) |
//! | `P seq` | integer | FIFO order within a priority |
//! | `P claimed:<list>` | list | outbox entries a scheduler is publishing ([`ClaimList`]): `<scheduler>#0` and `#1` for its dispatcher's two windows, `#e0` and `#e1` for what `complete.lua` claimed for its intake |
//! | `P claimants` | set | the claim lists in use, so reclaim and restart need no SCAN |
//! | `P layout` | integer | the layout's version (2); older namespaces are migrated once by a starting scheduler |
//! | `P index` | sorted set | every task record's key, scored by its expiry (ms; `inf` while pending), so restart costs the namespace's own futures |
//! | `P sched:<scheduler>` | string, TTL | a scheduler's heartbeat |
//! | `P epoch` | integer | bumped by every restart |
//! | `P queues` | set | work queue names in use |
//! | `P stats` | hash | tasks submitted, final transitions per state, retries ([`Stats`]) |
//! | `P recent_errors` | list | the last 50 errors that started in a task (for `warren top`) |
//! | `P blob:<hash>` | string, TTL | a value that is not JSON, or big with no `store_url`: see [`blobs`] |
//! | `P refs:<hash>` | set, TTL | who holds blob `<hash>`: `a:<key>` (a task's arguments), `v:<key>` (a future's value) |
//! | `P doomed` | sorted set | blobs their last holder let go of, scored by when (ms); deleted a grace later ([`Store::reap_blobs`]) |
//! | `P workers` | hash | each worker's last heartbeat |
//! | `P rate_limits`, `P concurrency_limits`, ... | | global rate limits and concurrency keys: see [`throttle`] |
//! | `P schedules`, `P schedule_next`, `P runs:<name>` | | periodic schedules: see [`schedules`] |
//!
//! The module is split by what a caller wants: [`tasks`] changes futures'
//! states (every call a script), [`admin`] reads and resets the namespace;
//! `keys`, `encode` and `reply` are the layout, the scripts' arguments and
//! their replies, pure and unit-tested without a server.
//!
//! Scripts build key names from the prefix instead of receiving them all as
//! `KEYS`. On a Redis Cluster (a `redis+cluster://` URL) the prefix is
//! `{<namespace>}:`, a hash tag, so every key of the namespace is in one slot
//! and a script may touch any of them; each script declares one key of that
//! slot (`P layout`), so a node that does not serve the slot answers `MOVED`
//! before running it. See [`cluster`] for why a store then talks to the
//! slot's primary directly.

pub mod admin;
pub mod blobs;
pub mod cache;
pub mod cluster;
pub mod coordination;
mod encode;
mod keys;
pub mod location;
pub mod objects;
pub mod output;
pub mod primary;
mod reply;
pub mod schedules;
pub mod stream;
pub mod tasks;
pub mod throttle;
pub mod upload;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value as RValue};
use tracing::{debug, info, warn};

pub use admin::{RecentError, Stats};
pub use keys::{CLAIM_SEPARATOR, ClaimList, ClaimSlot, Keys};
pub use tasks::{
    Applied, ClaimedTask, Forgotten, Notification, Start, Submitted, Transition, Watched,
};

use crate::error::{Error, Result};
use crate::outage::{Outage, Say};
use crate::settings::{Settings, redact_url};
use crate::tls::Tls;
use primary::Target;

const COMMON: &str = include_str!("../lua/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

/// The scripts, hashed once.
struct Scripts {
    submit: Script,
    complete: Script,
    claim: Script,
    reclaim: Script,
    watch: Script,
    cancel_all: Script,
    cancel: Script,
    forget: Script,
    start: Script,
    promote: Script,
    due_schedules: Script,
    tick: Script,
    reap: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            submit: script(include_str!("../lua/submit.lua")),
            complete: script(include_str!("../lua/complete.lua")),
            claim: script(include_str!("../lua/claim.lua")),
            reclaim: script(include_str!("../lua/reclaim.lua")),
            watch: script(include_str!("../lua/watch.lua")),
            cancel_all: script(include_str!("../lua/cancel_all.lua")),
            cancel: script(include_str!("../lua/cancel.lua")),
            forget: script(include_str!("../lua/forget.lua")),
            start: script(include_str!("../lua/start.lua")),
            promote: script(include_str!("../lua/promote.lua")),
            due_schedules: script(include_str!("../lua/due_schedules.lua")),
            tick: script(include_str!("../lua/tick.lua")),
            reap: script(include_str!("../lua/reap.lua")),
        }
    }
}

/// A handle on the namespace's state in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The connection to the primary; replaced when the primary moves.
    primary: Arc<std::sync::RwLock<Primary>>,
    /// How the primary is found (a fixed URL, sentinels, or a cluster).
    target: Arc<Target>,
    /// What `rediss://` connections trust and show (settings `tls_*`).
    tls: Arc<Tls>,
    /// Replicas that must hold a script's writes before it counts as done
    /// (setting `redis_min_replicas`).
    min_replicas: u32,
    /// Seconds a command may take (setting `redis_timeout_secs`).
    timeout_secs: u64,
    /// When the sentinels (or cluster) were last asked where the primary is.
    asked: Arc<Mutex<Option<Instant>>>,
    /// The Redis URL without its password, for log lines.
    url: String,
    /// Shared by every clone: an outage is said once per process.
    outage: Arc<Mutex<Outage>>,
    keys: Keys,
    /// Seconds a final record is kept (setting `result_ttl_secs`).
    ttl: u64,
    scripts: Arc<Scripts>,
    /// Where values over `inline_max` bytes go (setting `store_url`);
    /// `None` keeps them all in Redis.
    objects: Option<objects::Objects>,
    /// Setting `inline_max_bytes`.
    inline_max: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

/// The connection to the Redis primary and its URL.
struct Primary {
    con: ConnectionManager,
    url: String,
}

/// Connects to the primary the sentinels or cluster nodes of `target` name,
/// if it is not the one `primary` holds.
async fn follow(
    target: &Target,
    tls: &Tls,
    primary: &std::sync::RwLock<Primary>,
    timeout_secs: u64,
) {
    let Ok(now) = target.primary_url(tls).await else {
        return;
    };
    let current = primary
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .url
        .clone();
    if now == current {
        return;
    }
    if let Ok(con) = open(&now, timeout_secs, tls).await {
        info!(primary = %redact_url(&now), "following the Redis primary the sentinels or the cluster name");
        *primary.write().unwrap_or_else(|p| p.into_inner()) = Primary { con, url: now };
    }
}

/// How often a store asks the sentinels (or cluster) where the primary is,
/// when nothing failed.
const WATCH_PRIMARY_EVERY: Duration = Duration::from_secs(1);

/// How often the sentinels (or cluster) are asked at most while commands
/// fail.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// How long a script's writes may take to reach `redis_min_replicas`
/// replicas before the script counts as failed (and is retried).
const REPLICA_WAIT: Duration = Duration::from_secs(2);

/// Opens a managed connection to `url` and checks it with a PING, failing
/// within a bounded time and naming the URL.
async fn open(url: &str, timeout_secs: u64, tls: &Tls) -> Result<ConnectionManager> {
    let shown = redact_url(url);
    let refused = |cause| Error::RedisConnect {
        url: shown.clone(),
        cause,
    };
    let client = tls.redis_client(url).map_err(refused)?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(timeout_secs)))
        .set_number_of_retries(3);
    let con = tokio::time::timeout(
        Duration::from_secs(15),
        ConnectionManager::new_with_config(client, cfg),
    )
    .await
    .map_err(|_| {
        refused(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer within 15s",
        )))
    })?
    .map_err(refused)?;
    // A server that wants a password accepts the connection and refuses
    // every command (NOAUTH): find out now, naming the URL, rather than at
    // the first script (a worker would otherwise consume and run tasks
    // whose starts it cannot record).
    let mut probe = con.clone();
    redis::cmd("PING")
        .query_async::<()>(&mut probe)
        .await
        .map_err(refused)?;
    Ok(con)
}

/// The primary's URL and a connection to it.
///
/// A primary found through sentinels or a cluster may be mid-failover: for a
/// few seconds (the sentinels' down-after, the cluster's node timeout) they
/// still name the dead one, then the promoted replica. A process that starts
/// then, a CLI command above all, waits for the new primary within
/// `redis_timeout_secs`, saying so once, as running processes ride it out.
/// A fixed URL, or an error no wait can mend (a password, a certificate), fails at once.
async fn connect_primary(
    target: &Target,
    tls: &Tls,
    timeout_secs: u64,
) -> Result<(String, ConnectionManager)> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let mut waiting = false;
    loop {
        let attempt = async {
            let url = target.primary_url(tls).await?;
            let con = open(&url, timeout_secs, tls).await?;
            Ok::<_, Error>((url, con))
        }
        .await;
        match attempt {
            Ok(found) => {
                if waiting {
                    info!(primary = %redact_url(&found.0), "reached the Redis primary");
                }
                return Ok(found);
            }
            Err(e) if target.follows() && may_be_failing_over(&e) && Instant::now() < deadline => {
                if !waiting {
                    warn!(
                        error = %e,
                        "no Redis primary answers: waiting up to {timeout_secs}s (redis_timeout_secs) for the sentinels or the cluster to promote one; check that they run and agree"
                    );
                    waiting = true;
                }
                tokio::time::sleep(FOLLOW_EVERY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `e` is what a failover looks like from outside: no sentinel or
/// node names a primary, or the named one does not answer.
fn may_be_failing_over(e: &Error) -> bool {
    match e {
        Error::RedisConnect { cause, .. } => primary::unreachable(cause),
        Error::NoPrimary { transient, .. } => *transient,
        _ => false,
    }
}

/// How long a command whose connection dropped keeps being retried: long
/// enough to ride out a Redis restart, after which the caller's own
/// reconnection loop takes over.
const RETRY_WINDOW: Duration = Duration::from_secs(30);

impl Store {
    /// Connects to Redis (failing within a bounded time, naming the URL):
    /// the server of `redis_url`, the primary its sentinels name, or the
    /// primary of the namespace's slot on a cluster.
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let url = redact_url(&settings.redis_url);
        let target = Target::parse(&settings.redis_url, &settings.namespace)?
            .with_sentinel_password(&settings.redis_sentinel_password);
        let keys = if target.is_cluster() {
            Keys::tagged(&settings.namespace)
        } else {
            Keys::new(&settings.namespace)
        };
        let objects = objects::Objects::open(settings)?;
        let tls = Arc::new(Tls::load(settings)?);
        let (primary_url, con) =
            connect_primary(&target, &tls, settings.redis_timeout_secs).await?;
        let primary = Arc::new(std::sync::RwLock::new(Primary {
            con,
            url: primary_url,
        }));
        let target = Arc::new(target);
        if target.follows() {
            // Every command, not only the retried scripts, must reach the
            // new primary after a failover: look for one in the background
            // for as long as this store (or a clone) lives.
            let (target, weak) = (target.clone(), Arc::downgrade(&primary));
            let tls = tls.clone();
            let timeout = settings.redis_timeout_secs;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(WATCH_PRIMARY_EVERY).await;
                    let Some(primary) = weak.upgrade() else {
                        return;
                    };
                    follow(&target, &tls, &primary, timeout).await;
                }
            });
        }
        Ok(Self {
            primary,
            target,
            tls,
            min_replicas: settings.redis_min_replicas,
            timeout_secs: settings.redis_timeout_secs,
            asked: Arc::new(Mutex::new(None)),
            url,
            outage: Arc::new(Mutex::new(Outage::default())),
            keys,
            ttl: settings.result_ttl_secs,
            scripts: Arc::new(Scripts::new()),
            objects,
            inline_max: settings.inline_max_bytes,
        })
    }

    /// The connection to the current primary.
    fn con(&self) -> ConnectionManager {
        self.primary
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .con
            .clone()
    }

    /// Asks the sentinels or the cluster where the primary is (at most every
    /// 250 ms), and
    /// connects to it if it moved. A fixed `redis_url` never moves.
    async fn follow_primary(&self) {
        if !self.target.follows() {
            return;
        }
        {
            let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            if asked.is_some_and(|t| t.elapsed() < FOLLOW_EVERY) {
                return;
            }
            *asked = Some(Instant::now());
        }
        follow(&self.target, &self.tls, &self.primary, self.timeout_secs).await;
    }

    /// Waits until `min_replicas` replicas hold every write made so far on
    /// this connection (Redis `WAIT`), so that what a caller acks or answers
    /// next survives the primary's death.
    pub(crate) async fn await_replicas(
        &self,
        con: &mut ConnectionManager,
    ) -> redis::RedisResult<()> {
        if self.min_replicas == 0 {
            return Ok(());
        }
        let acked: u32 = redis::cmd("WAIT")
            .arg(self.min_replicas)
            .arg(REPLICA_WAIT.as_millis() as u64)
            .query_async(con)
            .await?;
        if acked < self.min_replicas {
            return Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{acked} of {} replicas (setting redis_min_replicas) acknowledged within {} ms",
                    self.min_replicas,
                    REPLICA_WAIT.as_millis()
                ),
            )));
        }
        Ok(())
    }

    /// The key prefix (`<namespace>:`).
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// The namespace's key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The raw connection (to the current primary), for tests and tools.
    pub fn connection(&self) -> ConnectionManager {
        self.con()
    }

    /// Runs a script, retrying while the connection is down (scripts are
    /// idempotent, so a retry of a script that did run changes nothing).
    async fn run(&self, script: &Script, args: encode::Args) -> Result<RValue> {
        let args = args.into_inner();
        let started = Instant::now();
        let mut backoff =
            crate::reconnect::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempt = 0u32;
        loop {
            let mut inv = script.prepare_invoke();
            inv.key(self.keys.anchor());
            for a in &args {
                inv.arg(a.as_slice());
            }
            let mut con = self.con();
            let done = match inv.invoke_async::<RValue>(&mut con).await {
                Ok(v) => self.await_replicas(&mut con).await.map(|()| v),
                Err(e) => Err(e),
            };
            match done {
                Ok(v) => {
                    self.say(|o, now| o.succeeded(now), None);
                    return Ok(v);
                }
                Err(e)
                    if (is_transient(&e) || primary_moved(&e))
                        && started.elapsed() < RETRY_WINDOW =>
                {
                    attempt += 1;
                    debug!(error = %e, attempt, "Redis command failed; retrying");
                    self.say(|o, now| o.failed(now), Some(&e));
                    self.follow_primary().await;
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Logs what the process-wide outage state says about this call: one
    /// line when Redis becomes unreachable, a reminder every 10 s, one when
    /// it answers again.
    fn say(
        &self,
        step: impl FnOnce(&mut Outage, Instant) -> Option<Say>,
        error: Option<&redis::RedisError>,
    ) {
        let said = step(
            &mut self.outage.lock().unwrap_or_else(|p| p.into_inner()),
            Instant::now(),
        );
        let url = &self.url;
        match said {
            Some(Say::Started) => warn!(
                %url,
                error = %error.map(ToString::to_string).unwrap_or_default(),
                "Redis is unreachable; retrying (reminders every 10 s)"
            ),
            Some(Say::Continuing(d)) => {
                warn!(%url, down_secs = d.as_secs(), "Redis still unreachable; retrying")
            }
            Some(Say::Ended(d)) => info!(
                %url,
                down_ms = d.as_millis() as u64,
                "Redis answers again"
            ),
            None => {}
        }
    }
}

/// Errors that say the node is no longer (or not yet) the namespace's
/// primary: a demoted primary refuses writes (`READONLY`), a cluster node
/// redirects (`MOVED`, `ASK`) or waits for a failover (`CLUSTERDOWN`,
/// `TRYAGAIN`, `MASTERDOWN`). The sentinels or the cluster know the new one.
fn primary_moved(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some("READONLY" | "MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN")
    )
}

/// Errors a retry can cure: the connection is down, or Redis is still loading
/// its data after a restart.
fn is_transient(e: &redis::RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.code() == Some("LOADING")
}

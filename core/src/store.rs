//! The Redis store: where every future's state lives.
//!
//! State changes only through the Lua scripts in `src/lua/`, each applied
//! atomically by Redis and written so that applying it twice is harmless. That is
//! what makes two schedulers safe and lets this module retry a command whose
//! connection dropped. The key layout, with `P` = `<namespace>:`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P t:<key>` | hash | the task: `s` state, `f` func, `q` queue, `a` args, `deps`, `n` outstanding deps, `v` value, `e` error |
//! | `P d:<key>` | set | keys of tasks waiting on `<key>` (its dependents) |
//! | `P w:<key>` | set | reply queues of clients watching `<key>` |
//! | `P outbox:<queue>` | sorted set | runnable keys not yet published to RabbitMQ, highest priority first, then FIFO |
//! | `P seq` | integer | FIFO order within a priority |
//! | `P claimed:<scheduler>#<n>` | list | outbox entries a scheduler is publishing: window `0` or `1` of its dispatcher, or `e0`/`e1` for what `complete.lua` claimed for its intake |
//! | `P claimants` | set | owners of `claimed:` lists, so reclaim and restart need no SCAN |
//! | `P layout` | integer | the layout's version (2); older namespaces are migrated once by a starting scheduler |
//! | `P index` | sorted set | every task record's key, scored by its expiry (ms; `inf` while pending), so restart costs the namespace's own futures |
//! | `P sched:<scheduler>` | string, TTL | a scheduler's heartbeat |
//! | `P epoch` | integer | bumped by every restart |
//! | `P queues` | set | work queue names in use |
//! | `P stats` | hash | tasks submitted, final transitions per state, retries |
//! | `P recent_errors` | list | the last 50 errors that started in a task (for `warren top`) |
//! | `P workers` | hash | each worker's last heartbeat |
//!
//! Scripts build key names from the prefix instead of receiving them as `KEYS`,
//! which is fine on one Redis (with replicas) but not on a Redis Cluster: that
//! would need the namespace as a hash tag and declared keys, and is not done.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script, Value as RValue};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::messages::{TaskFailure, TaskSpec, Terminal, WorkerInfo, now_ms};
use crate::outage::{Outage, Say};
use crate::settings::{Settings, redact_url};
use crate::status::State;

const COMMON: &str = include_str!("lua/common.lua");

/// The key layout's version, in `P layout`: 1 had neither `claimants` nor
/// `index`, 2 has both ([`Store::migrate_layout`]).
const LAYOUT: u64 = 2;

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
}

impl Scripts {
    fn new() -> Self {
        Self {
            submit: script(include_str!("lua/submit.lua")),
            complete: script(include_str!("lua/complete.lua")),
            claim: script(include_str!("lua/claim.lua")),
            reclaim: script(include_str!("lua/reclaim.lua")),
            watch: script(include_str!("lua/watch.lua")),
            cancel_all: script(include_str!("lua/cancel_all.lua")),
            cancel: script(include_str!("lua/cancel.lua")),
            forget: script(include_str!("lua/forget.lua")),
            start: script(include_str!("lua/start.lua")),
        }
    }
}

/// What a worker may do with a work message, from [`Store::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run it: this is start number `n` of its attempt (1 unless workers died
    /// running it before).
    Run(u32),
    /// Do not run it: cancelled, already final, forgotten, or retried since.
    Skip,
}

/// A terminal transition and the reply queues to tell about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The future's key.
    pub key: String,
    /// Its final state.
    pub terminal: Terminal,
    /// Reply queues of the clients watching it.
    pub watchers: Vec<String>,
}

/// What a state-changing script did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Tasks that became runnable (pushed to the outbox).
    pub queued: u64,
    /// Clients to notify.
    pub notifications: Vec<Notification>,
}

/// A report to apply with [`Store::complete`].
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The task ended.
    Terminal(Terminal),
    /// The task's function failed on `attempt`: retried if it has retries
    /// left, else final (with every attempt's error).
    Failed {
        /// The error.
        error: TaskFailure,
        /// Which attempt failed; a report of an older attempt is ignored.
        attempt: u32,
    },
    /// A worker has been running it for a while.
    Processing,
}

/// A runnable task claimed from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The future's key.
    pub key: String,
    /// Registered function name.
    pub func: String,
    /// Work queue name.
    pub queue: String,
    /// Arguments as JSON text, futures still as references.
    pub args: String,
    /// 0 for the first run, one more per retry.
    pub attempt: u32,
    /// Seconds the task may run, if limited.
    pub timeout_secs: Option<f64>,
    /// Its priority (higher first).
    pub priority: i64,
    /// Each dependency's key and value (JSON text), `None` if it has none any more.
    pub deps: Vec<(String, Option<String>)>,
}

/// What [`Store::forget`] did with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// Deleted.
    Forgotten,
    /// Not final: left alone.
    Pending,
    /// No such future.
    Unknown,
}

/// One future's state as [`Store::watch`] found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// No such future.
    Unknown,
    /// Not done; the watcher (if any) is registered.
    Pending(State),
    /// Done.
    Done(Terminal),
}

/// A handle on the namespace's state in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    con: ConnectionManager,
    /// The Redis URL without its password, for log lines.
    url: String,
    /// Shared by every clone: an outage is said once per process.
    outage: std::sync::Arc<std::sync::Mutex<Outage>>,
    prefix: String,
    ttl: u64,
    scripts: std::sync::Arc<Scripts>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How long a command whose connection dropped keeps being retried: long
/// enough to ride out a Redis restart, after which the caller's own
/// reconnection loop takes over.
const RETRY_WINDOW: Duration = Duration::from_secs(30);

impl Store {
    /// Connects to Redis (failing within a bounded time, naming the URL).
    pub async fn connect(settings: &Settings) -> Result<Self> {
        let url = redact_url(&settings.redis_url);
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(|cause| {
            Error::RedisConnect {
                url: url.clone(),
                cause,
            }
        })?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(settings.redis_timeout_secs)))
            .set_number_of_retries(3);
        let con = tokio::time::timeout(
            Duration::from_secs(15),
            ConnectionManager::new_with_config(client, cfg),
        )
        .await
        .map_err(|_| Error::RedisConnect {
            url: url.clone(),
            cause: redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within 15s",
            )),
        })?
        .map_err(|cause| Error::RedisConnect {
            url: url.clone(),
            cause,
        })?;
        // A server that wants a password accepts the connection and refuses
        // every command (NOAUTH): find out now, naming the URL, rather than
        // at the first script (a worker would otherwise consume and run
        // tasks whose starts it cannot record).
        let mut probe = con.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut probe)
            .await
            .map_err(|cause| Error::RedisConnect { url, cause })?;
        Ok(Self {
            con,
            url: redact_url(&settings.redis_url),
            outage: std::sync::Arc::new(std::sync::Mutex::new(Outage::default())),
            prefix: format!("{}:", settings.namespace),
            ttl: settings.result_ttl_secs,
            scripts: std::sync::Arc::new(Scripts::new()),
        })
    }

    /// The key prefix (`<namespace>:`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The raw connection, for tests and tools.
    pub fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Runs a script, retrying while the connection is down (scripts are
    /// idempotent, so a retry of a script that did run changes nothing).
    async fn run(&self, script: &Script, args: Vec<Vec<u8>>) -> Result<RValue> {
        let started = std::time::Instant::now();
        let mut backoff =
            crate::reconnect::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempt = 0u32;
        loop {
            let mut inv = script.prepare_invoke();
            for a in &args {
                inv.arg(a.as_slice());
            }
            let mut con = self.con.clone();
            match inv.invoke_async::<RValue>(&mut con).await {
                Ok(v) => {
                    self.say(|o, now| o.succeeded(now), None);
                    return Ok(v);
                }
                Err(e) if is_transient(&e) && started.elapsed() < RETRY_WINDOW => {
                    attempt += 1;
                    debug!(error = %e, attempt, "Redis command failed; retrying");
                    self.say(|o, now| o.failed(now), Some(&e));
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
        step: impl FnOnce(&mut Outage, std::time::Instant) -> Option<Say>,
        error: Option<&redis::RedisError>,
    ) {
        let said = step(
            &mut self.outage.lock().unwrap_or_else(|p| p.into_inner()),
            std::time::Instant::now(),
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

    /// Records submitted tasks; `reply_to` (if not empty) watches them all. A
    /// dependency Redis does not know fails its dependent with `UnknownFuture`.
    pub async fn submit(&self, reply_to: &str, tasks: &[TaskSpec]) -> Result<Applied> {
        Ok(self.submit_script(reply_to, tasks, false).await?.0)
    }

    /// Like [`Store::submit`], but a task with a dependency Redis does not
    /// know yet is left unrecorded and its key returned, to be submitted again
    /// once the dependency's own batch had time to arrive.
    pub async fn submit_deferring(
        &self,
        reply_to: &str,
        tasks: &[TaskSpec],
    ) -> Result<(Applied, Vec<String>)> {
        self.submit_script(reply_to, tasks, true).await
    }

    async fn submit_script(
        &self,
        reply_to: &str,
        tasks: &[TaskSpec],
        defer: bool,
    ) -> Result<(Applied, Vec<String>)> {
        let mut args = vec![
            self.prefix.clone().into_bytes(),
            reply_to.as_bytes().to_vec(),
            self.ttl.to_string().into_bytes(),
            tasks.len().to_string().into_bytes(),
            if defer { b"1".to_vec() } else { b"0".to_vec() },
        ];
        for t in tasks {
            args.push(t.key.clone().into_bytes());
            args.push(t.func.clone().into_bytes());
            args.push(t.queue.clone().into_bytes());
            args.push(t.retries.to_string().into_bytes());
            args.push(
                t.timeout_secs
                    .map(|s| s.to_string())
                    .unwrap_or_default()
                    .into_bytes(),
            );
            args.push(t.priority.to_string().into_bytes());
            args.push(serde_json::to_vec(&t.args)?);
            args.push(t.deps.len().to_string().into_bytes());
            args.extend(t.deps.iter().map(|d| d.clone().into_bytes()));
        }
        let mut r = Reply::new(self.run(&self.scripts.submit, args).await?)?;
        let queued = r.int()? as u64;
        let deferred = (0..r.int()?)
            .map(|_| r.string())
            .collect::<Result<Vec<_>>>()?;
        let applied = Applied {
            queued,
            notifications: parse_events(&mut r)?,
        };
        Ok((applied, deferred))
    }

    /// Applies worker reports, each at most once.
    pub async fn complete(&self, reports: &[(String, Transition)]) -> Result<Applied> {
        Ok(self.complete_eager(reports, "").await?.0)
    }

    /// Like [`Store::complete`], and when the reports make exactly one task
    /// runnable with nothing else waiting in its outbox (the next link of a
    /// chain), claims it for `owner` in the same step and returns it with the
    /// epoch, ready to publish and then [`Store::release`] as after
    /// [`Store::claim`]. `owner` '' claims nothing.
    pub async fn complete_eager(
        &self,
        reports: &[(String, Transition)],
        owner: &str,
    ) -> Result<(Applied, u64, Vec<ClaimedTask>)> {
        let mut args = vec![
            self.prefix.clone().into_bytes(),
            self.ttl.to_string().into_bytes(),
            owner.as_bytes().to_vec(),
            reports.len().to_string().into_bytes(),
        ];
        for (key, tr) in reports {
            args.push(key.clone().into_bytes());
            let mut attempt = 0;
            let (kind, payload) = match tr {
                Transition::Processing => ("processing", Vec::new()),
                Transition::Failed { error, attempt: a } => {
                    attempt = *a;
                    ("failed", serde_json::to_vec(error)?)
                }
                Transition::Terminal(Terminal::Finished { value }) => {
                    ("finished", serde_json::to_vec(value)?)
                }
                Transition::Terminal(Terminal::Error { error }) => {
                    ("error", serde_json::to_vec(error)?)
                }
                Transition::Terminal(Terminal::Cancelled) => ("cancelled", Vec::new()),
            };
            args.push(kind.as_bytes().to_vec());
            args.push(payload);
            args.push(attempt.to_string().into_bytes());
        }
        let mut r = Reply::new(self.run(&self.scripts.complete, args).await?)?;
        let queued = r.int()? as u64;
        let epoch = parse_epoch(&r.string()?)?;
        let eager = (0..r.int()?)
            .map(|_| parse_claimed(&mut r))
            .collect::<Result<Vec<_>>>()?;
        let applied = Applied {
            queued,
            notifications: parse_events(&mut r)?,
        };
        Ok((applied, epoch, eager))
    }

    /// Claims up to `max` runnable tasks of work queue `queue`, highest
    /// priority first, for scheduler `owner` (returning its unreleased claims
    /// first, whatever their queue), with the current epoch.
    pub async fn claim(
        &self,
        owner: &str,
        queue: &str,
        max: usize,
    ) -> Result<(u64, Vec<ClaimedTask>)> {
        let args = vec![
            self.prefix.clone().into_bytes(),
            owner.as_bytes().to_vec(),
            queue.as_bytes().to_vec(),
            max.to_string().into_bytes(),
        ];
        let reply = self.run(&self.scripts.claim, args).await?;
        let mut r = Reply::new(reply)?;
        let epoch = parse_epoch(&r.string()?)?;
        let mut tasks = Vec::new();
        while !r.done() {
            tasks.push(parse_claimed(&mut r)?);
        }
        Ok((epoch, tasks))
    }

    /// Forgets `owner`'s claims: their publishes are confirmed.
    pub async fn release(&self, owner: &str) -> Result<()> {
        let mut con = self.con.clone();
        let _: () = redis::pipe()
            .atomic()
            .del(format!("{}claimed:{owner}", self.prefix))
            .srem(format!("{}claimants", self.prefix), owner)
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Marks scheduler `owner` alive for `ttl`.
    pub async fn heartbeat(&self, owner: &str, ttl: Duration) -> Result<()> {
        let mut con = self.con.clone();
        let _: () = con
            .set_ex(
                format!("{}sched:{owner}", self.prefix),
                1,
                ttl.as_secs().max(1),
            )
            .await?;
        Ok(())
    }

    /// Returns claims of schedulers that stopped heartbeating to the outbox.
    ///
    /// It walks the set of claimants (a few per live scheduler), so it costs
    /// the same however many keys Redis holds.
    pub async fn reclaim_orphans(&self) -> Result<u64> {
        let mut con = self.con.clone();
        let owners: Vec<String> = con.smembers(format!("{}claimants", self.prefix)).await?;
        let mut total = 0;
        for owner in owners {
            let args = vec![self.prefix.clone().into_bytes(), owner.as_bytes().to_vec()];
            if let RValue::Int(n) = self.run(&self.scripts.reclaim, args).await? {
                total += n.max(0) as u64;
            }
        }
        Ok(total)
    }

    /// Runnable tasks of work queue `queue` not yet published.
    pub async fn outbox_len(&self, queue: &str) -> Result<u64> {
        let mut con = self.con.clone();
        Ok(con.zcard(format!("{}outbox:{queue}", self.prefix)).await?)
    }

    /// Registers `reply_to` (if not empty) as a watcher of each pending key and
    /// returns what each key is now.
    pub async fn watch(&self, reply_to: &str, keys: &[String]) -> Result<Vec<Watched>> {
        let mut args = vec![
            self.prefix.clone().into_bytes(),
            reply_to.as_bytes().to_vec(),
        ];
        args.extend(keys.iter().map(|k| k.clone().into_bytes()));
        let mut r = Reply::new(self.run(&self.scripts.watch, args).await?)?;
        let mut out = Vec::with_capacity(keys.len());
        while !r.done() {
            let _key = r.string()?;
            let state = r.string()?;
            let payload = r.string()?;
            out.push(match state.as_str() {
                "unknown" => Watched::Unknown,
                s => {
                    let st: State = s.parse().map_err(Error::Script)?;
                    if st.is_terminal() {
                        Watched::Done(terminal(st, &payload)?)
                    } else {
                        Watched::Pending(st)
                    }
                }
            });
        }
        Ok(out)
    }

    /// Cancels `keys` and their dependents; returns every key cancelled (for the
    /// workers) and the clients to notify.
    pub async fn cancel(&self, keys: &[String]) -> Result<(Vec<String>, Vec<Notification>)> {
        let mut args = vec![
            self.prefix.clone().into_bytes(),
            self.ttl.to_string().into_bytes(),
        ];
        args.extend(keys.iter().map(|k| k.clone().into_bytes()));
        let mut r = Reply::new(self.run(&self.scripts.cancel, args).await?)?;
        let n = r.int()?;
        let cancelled = (0..n).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
        Ok((cancelled, parse_events(&mut r)?))
    }

    /// Deletes final futures now; says per key what happened.
    pub async fn forget(&self, keys: &[String]) -> Result<Vec<Forgotten>> {
        let mut args = vec![self.prefix.clone().into_bytes()];
        args.extend(keys.iter().map(|k| k.clone().into_bytes()));
        let mut r = Reply::new(self.run(&self.scripts.forget, args).await?)?;
        let mut out = Vec::with_capacity(keys.len());
        while !r.done() {
            out.push(match r.string()?.as_str() {
                "forgotten" => Forgotten::Forgotten,
                "pending" => Forgotten::Pending,
                _ => Forgotten::Unknown,
            });
        }
        Ok(out)
    }

    /// Records a worker's heartbeat (for `warren workers`).
    pub async fn record_worker(&self, info: &WorkerInfo) -> Result<()> {
        let mut con = self.con.clone();
        let _: () = con
            .hset(
                format!("{}workers", self.prefix),
                &info.worker,
                serde_json::to_string(info)?,
            )
            .await?;
        Ok(())
    }

    /// Workers whose last heartbeat is at most `max_age` old; older ones are
    /// dropped from the registry.
    pub async fn workers(&self, max_age: Duration) -> Result<Vec<WorkerInfo>> {
        let mut con = self.con.clone();
        let key = format!("{}workers", self.prefix);
        let all: std::collections::HashMap<String, String> = con.hgetall(&key).await?;
        let now = now_ms();
        let mut live = Vec::new();
        for (id, json) in all {
            match serde_json::from_str::<WorkerInfo>(&json) {
                Ok(w) if now.saturating_sub(w.at_ms) <= max_age.as_millis() as u64 => live.push(w),
                _ => {
                    let _: () = con.hdel(&key, id).await?;
                }
            }
        }
        live.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(live)
    }

    /// The most recent errors (newest first): key, type and message each.
    pub async fn recent_errors(&self, n: usize) -> Result<Vec<serde_json::Value>> {
        let mut con = self.con.clone();
        let raw: Vec<String> = con
            .lrange(format!("{}recent_errors", self.prefix), 0, n as isize - 1)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Counters: tasks submitted, and final transitions per state.
    pub async fn stats(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut con = self.con.clone();
        Ok(con.hgetall(format!("{}stats", self.prefix)).await?)
    }

    /// Records that a worker starts `key`'s attempt `attempt`, unless the task
    /// must not run (see `lua/start.lua`: the one write a worker makes).
    pub async fn start(&self, key: &str, attempt: u32) -> Result<Start> {
        let args = vec![
            self.prefix.clone().into_bytes(),
            key.as_bytes().to_vec(),
            attempt.to_string().into_bytes(),
        ];
        match self.run(&self.scripts.start, args).await? {
            RValue::Int(n) if n > 0 => Ok(Start::Run(u32::try_from(n).unwrap_or(u32::MAX))),
            RValue::Int(_) => Ok(Start::Skip),
            other => Err(Error::Script(format!("start returned {other:?}"))),
        }
    }

    /// The state of each key (`None`: unknown), read-only.
    pub async fn states(&self, keys: &[String]) -> Result<Vec<Option<State>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.hget(format!("{}t:{k}", self.prefix), "s");
        }
        let mut con = self.con.clone();
        let raw: Vec<Option<String>> = pipe.query_async(&mut con).await?;
        raw.into_iter()
            .map(|s| {
                s.map(|s| s.parse::<State>().map_err(Error::Script))
                    .transpose()
            })
            .collect()
    }

    /// The work queues tasks have been submitted to.
    pub async fn work_queues(&self) -> Result<Vec<String>> {
        let mut con = self.con.clone();
        let mut qs: Vec<String> = con.smembers(format!("{}queues", self.prefix)).await?;
        if !qs.iter().any(|q| q == "default") {
            qs.push("default".into());
        }
        qs.sort();
        Ok(qs)
    }

    /// The current epoch.
    pub async fn epoch(&self) -> Result<u64> {
        let mut con = self.con.clone();
        let e: Option<u64> = con.get(format!("{}epoch", self.prefix)).await?;
        Ok(e.unwrap_or(0))
    }

    /// Restart: bumps the epoch, empties the outboxes and claims, and cancels
    /// every future. Returns the new epoch and the clients to notify.
    ///
    /// It reads the namespace's own index of records, the set of claimants
    /// and the set of work queues, so it costs in proportion to the
    /// namespace's futures, never to every key of the server. Afterwards the
    /// counters say what `status` says: every held future is cancelled.
    pub async fn restart(&self) -> Result<(u64, Vec<Notification>)> {
        let mut con = self.con.clone();
        let p = &self.prefix;
        let epoch: u64 = con.incr(format!("{p}epoch"), 1).await?;
        let mut doomed: Vec<String> = self
            .work_queues()
            .await?
            .iter()
            .map(|q| format!("{p}outbox:{q}"))
            .collect();
        let owners: Vec<String> = con.smembers(format!("{p}claimants")).await?;
        doomed.extend(owners.iter().map(|o| format!("{p}claimed:{o}")));
        doomed.push(format!("{p}claimants"));
        let _: () = con.del(doomed).await?;
        let index = format!("{p}index");
        let _: () = con.zrembyscore(&index, "-inf", now_ms()).await?;
        let mut notes = Vec::new();
        let mut start = 0isize;
        loop {
            let chunk: Vec<String> = con.zrange(&index, start, start + 499).await?;
            if chunk.is_empty() {
                break;
            }
            start += chunk.len() as isize;
            let mut args = vec![p.clone().into_bytes(), self.ttl.to_string().into_bytes()];
            args.extend(chunk.into_iter().map(String::into_bytes));
            notes.extend(
                parse_applied(self.run(&self.scripts.cancel_all, args).await?)?.notifications,
            );
        }
        let held: u64 = con.zcard(&index).await?;
        let _: () = redis::pipe()
            .atomic()
            .del(format!("{p}stats"))
            .hset_multiple(
                format!("{p}stats"),
                &[("submitted", held), ("cancelled", held)],
            )
            .query_async(&mut con)
            .await?;
        Ok((epoch, notes))
    }

    /// Brings a namespace written by a warren older than `claimants` and
    /// `index` up to date, once: registers its claim lists and indexes its
    /// records (scored by their TTL). The one SCAN left, run at a scheduler's
    /// start only until `P layout` says it was done. Returns the records
    /// indexed.
    pub async fn migrate_layout(&self) -> Result<u64> {
        let mut con = self.con.clone();
        let p = &self.prefix;
        let layout: Option<u64> = con.get(format!("{p}layout")).await?;
        if layout.unwrap_or(0) >= LAYOUT {
            return Ok(0);
        }
        for list in self.scan(&format!("{p}claimed:*")).await? {
            let owner = &list[p.len() + "claimed:".len()..];
            let _: () = con.sadd(format!("{p}claimants"), owner).await?;
        }
        let mut indexed = 0;
        let now = now_ms();
        for record in self.scan(&format!("{p}t:*")).await? {
            let key = &record[p.len() + "t:".len()..];
            let ttl_ms: i64 = redis::cmd("PTTL")
                .arg(&record)
                .query_async(&mut con)
                .await?;
            let score = if ttl_ms >= 0 {
                (now + ttl_ms as u64).to_string()
            } else {
                "inf".to_string()
            };
            // NX: an entry the new scripts wrote meanwhile stays as it is.
            let added: u64 = redis::cmd("ZADD")
                .arg(format!("{p}index"))
                .arg("NX")
                .arg(score)
                .arg(key)
                .query_async(&mut con)
                .await?;
            indexed += added;
        }
        let _: () = con.set(format!("{p}layout"), LAYOUT).await?;
        Ok(indexed)
    }

    /// Drops expired records from the namespace's index (Redis expires the
    /// records themselves). Costs the number of entries dropped.
    pub async fn trim_index(&self) -> Result<u64> {
        let mut con = self.con.clone();
        Ok(con
            .zrembyscore(format!("{}index", self.prefix), "-inf", now_ms())
            .await?)
    }

    /// Deletes every key of the namespace (tests and `warren` tooling).
    pub async fn wipe(&self) -> Result<()> {
        let keys = self.scan(&format!("{}*", self.prefix)).await?;
        let mut con = self.con.clone();
        for chunk in keys.chunks(500) {
            let _: () = con.del(chunk).await?;
        }
        Ok(())
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut con = self.con.clone();
        let mut out = Vec::new();
        let mut iter: redis::AsyncIter<String> = con
            .scan_options(
                redis::ScanOptions::default()
                    .with_pattern(pattern)
                    .with_count(1000),
            )
            .await?;
        while let Some(k) = futures::StreamExt::next(&mut iter).await {
            out.push(k?);
        }
        Ok(out)
    }
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

/// Builds the [`Terminal`] stored for `state` with `payload`.
fn terminal(state: State, payload: &str) -> Result<Terminal> {
    Ok(match state {
        State::Finished => Terminal::Finished {
            value: serde_json::from_str(payload)?,
        },
        State::Error => Terminal::Error {
            error: serde_json::from_str::<TaskFailure>(payload)?,
        },
        _ => Terminal::Cancelled,
    })
}

fn parse_applied(reply: RValue) -> Result<Applied> {
    let mut r = Reply::new(reply)?;
    let queued = r.int()? as u64;
    Ok(Applied {
        queued,
        notifications: parse_events(&mut r)?,
    })
}

/// The events that end a script reply.
fn parse_events(r: &mut Reply) -> Result<Vec<Notification>> {
    let mut notes = Vec::new();
    while !r.done() {
        notes.push(parse_event(r)?);
    }
    Ok(notes)
}

/// The namespace epoch as a script returns it.
fn parse_epoch(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| Error::Script(format!("epoch {text:?} is not a number")))
}

/// One claimed task of a script reply (`claim_record` in common.lua).
fn parse_claimed(r: &mut Reply) -> Result<ClaimedTask> {
    let key = r.string()?;
    let func = r.string()?;
    let queue = r.string()?;
    let args = r.string()?;
    let attempt = r.int()? as u32;
    let timeout_secs = r.string()?.parse::<f64>().ok();
    let priority = r.int()?;
    let n = r.int()?;
    let mut deps = Vec::new();
    for _ in 0..n {
        let dep = r.string()?;
        let has = r.int()? == 1;
        let value = r.string()?;
        deps.push((dep, has.then_some(value)));
    }
    Ok(ClaimedTask {
        key,
        func,
        queue,
        args,
        attempt,
        timeout_secs,
        priority,
        deps,
    })
}

/// One event of a script reply: key, state, payload, watchers.
fn parse_event(r: &mut Reply) -> Result<Notification> {
    let key = r.string()?;
    let state: State = r.string()?.parse().map_err(Error::Script)?;
    let payload = r.string()?;
    let n = r.int()?;
    let watchers = (0..n).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
    Ok(Notification {
        key,
        terminal: terminal(state, &payload)?,
        watchers,
    })
}

/// A cursor over a flat script reply.
struct Reply {
    items: std::vec::IntoIter<RValue>,
    left: usize,
}

impl Reply {
    fn new(v: RValue) -> Result<Self> {
        match v {
            RValue::Array(items) => Ok(Self {
                left: items.len(),
                items: items.into_iter(),
            }),
            other => Err(Error::Script(format!("expected an array, got {other:?}"))),
        }
    }
    fn done(&self) -> bool {
        self.left == 0
    }
    fn next(&mut self) -> Result<RValue> {
        self.left = self.left.saturating_sub(1);
        self.items
            .next()
            .ok_or_else(|| Error::Script("reply ended early".into()))
    }
    fn string(&mut self) -> Result<String> {
        match self.next()? {
            RValue::BulkString(b) => String::from_utf8(b).map_err(|e| Error::Script(e.to_string())),
            RValue::SimpleString(s) => Ok(s),
            RValue::Int(i) => Ok(i.to_string()),
            other => Err(Error::Script(format!("expected a string, got {other:?}"))),
        }
    }
    fn int(&mut self) -> Result<i64> {
        match self.next()? {
            RValue::Int(i) => Ok(i),
            RValue::BulkString(b) => String::from_utf8_lossy(&b)
                .parse()
                .map_err(|_| Error::Script("expected an integer".into())),
            other => Err(Error::Script(format!("expected an integer, got {other:?}"))),
        }
    }
}

/// These tests run the Lua scripts on the real Redis at 127.0.0.1:6379 (or
/// `WARREN_REDIS_URL`), each in a namespace of its own.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::future_ref;
    use serde_json::json;

    async fn store() -> Store {
        let settings = Settings {
            namespace: format!("test-store-{}", uuid::Uuid::new_v4().simple()),
            redis_url: std::env::var("WARREN_REDIS_URL")
                .unwrap_or_else(|_| Settings::default().redis_url),
            ..Settings::default()
        };
        Store::connect(&settings)
            .await
            .expect("these tests need Redis on 127.0.0.1:6379")
    }

    fn spec(key: &str, args: Vec<serde_json::Value>) -> TaskSpec {
        TaskSpec {
            key: key.into(),
            func: "f".into(),
            deps: crate::args::dependencies(&args),
            args,
            queue: "default".into(),
            retries: 0,
            timeout_secs: None,
            priority: 0,
        }
    }

    fn finished(v: serde_json::Value) -> Transition {
        Transition::Terminal(Terminal::Finished { value: v })
    }

    #[tokio::test]
    async fn a_dependent_is_queued_once_all_dependencies_finish_with_values_inlined() {
        let s = store().await;
        let applied = s
            .submit("", &[spec("a", vec![json!(1)]), spec("b", vec![json!(2)])])
            .await
            .unwrap();
        assert_eq!(applied.queued, 2);
        // c depends on a twice and on b once: two distinct dependencies.
        let applied = s
            .submit(
                "r1",
                &[spec(
                    "c",
                    vec![future_ref("a"), json!([future_ref("a"), future_ref("b")])],
                )],
            )
            .await
            .unwrap();
        assert_eq!(applied.queued, 0);
        assert_eq!(
            s.states(&["c".into()]).await.unwrap(),
            vec![Some(State::Waiting)]
        );

        let (_, claimed) = s.claim("me", "default", 10).await.unwrap();
        assert_eq!(
            claimed.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        s.release("me").await.unwrap();

        assert_eq!(
            s.complete(&[("a".into(), finished(json!(10)))])
                .await
                .unwrap()
                .queued,
            0
        );
        // A duplicate outcome changes nothing: c's count is not decremented twice.
        assert_eq!(
            s.complete(&[("a".into(), finished(json!(99)))])
                .await
                .unwrap()
                .queued,
            0
        );
        let applied = s
            .complete(&[("b".into(), finished(json!(20)))])
            .await
            .unwrap();
        assert_eq!(applied.queued, 1);

        let (_, claimed) = s.claim("me", "default", 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let c = &claimed[0];
        assert_eq!(c.key, "c");
        assert_eq!(
            c.deps,
            vec![
                ("a".to_string(), Some("10".to_string())),
                ("b".to_string(), Some("20".to_string()))
            ]
        );
        let applied = s
            .complete(&[("c".into(), finished(json!(30)))])
            .await
            .unwrap();
        assert_eq!(applied.notifications.len(), 1);
        assert_eq!(applied.notifications[0].watchers, vec!["r1".to_string()]);
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn errors_propagate_to_dependents_and_later_submissions() {
        let s = store().await;
        s.submit("", &[spec("a", vec![])]).await.unwrap();
        s.submit("w", &[spec("b", vec![future_ref("a")])])
            .await
            .unwrap();
        s.submit("w", &[spec("c", vec![future_ref("b")])])
            .await
            .unwrap();
        let err = TaskFailure::new("ZeroDivisionError", "division by zero", "tb");
        let applied = s
            .complete(&[(
                "a".into(),
                Transition::Terminal(Terminal::Error { error: err.clone() }),
            )])
            .await
            .unwrap();
        let keys: Vec<&str> = applied
            .notifications
            .iter()
            .map(|n| n.key.as_str())
            .collect();
        assert_eq!(keys, vec!["b", "c"]);
        assert!(
            applied
                .notifications
                .iter()
                .all(|n| n.terminal == Terminal::Error { error: err.clone() })
        );
        // Submitted after the failure: fails at once with the same error.
        let applied = s
            .submit("w", &[spec("d", vec![future_ref("c")])])
            .await
            .unwrap();
        assert_eq!(
            applied.notifications[0].terminal,
            Terminal::Error { error: err }
        );
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn resubmitting_a_key_deduplicates_and_unknown_dependencies_fail() {
        let s = store().await;
        assert_eq!(s.submit("", &[spec("a", vec![])]).await.unwrap().queued, 1);
        assert_eq!(s.submit("", &[spec("a", vec![])]).await.unwrap().queued, 0);
        let applied = s
            .submit("w", &[spec("b", vec![future_ref("ghost")])])
            .await
            .unwrap();
        match &applied.notifications[0].terminal {
            Terminal::Error { error } => {
                assert_eq!(error.kind, "UnknownFuture");
                assert!(error.message.contains("ghost"));
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert_eq!(
            s.watch("", &["nope".into()]).await.unwrap(),
            vec![Watched::Unknown]
        );
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn completing_the_last_dependency_of_a_lone_task_claims_it_eagerly() {
        let s = store().await;
        let done = |k: &str| {
            (
                k.to_string(),
                Transition::Terminal(Terminal::Finished { value: json!(1) }),
            )
        };
        s.submit("", &[spec("a", vec![]), spec("b", vec![future_ref("a")])])
            .await
            .unwrap();
        let (_, claimed) = s.claim("d", "default", 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        s.release("d").await.unwrap();
        let (applied, _, eager) = s.complete_eager(&[done("a")], "me#e").await.unwrap();
        assert_eq!(applied.queued, 1);
        assert_eq!(eager.len(), 1);
        assert_eq!(eager[0].key, "b");
        assert_eq!(eager[0].deps, vec![("a".into(), Some("1".into()))]);
        // Claimed, so the dispatcher does not publish it a second time.
        assert!(s.claim("d", "default", 10).await.unwrap().1.is_empty());
        s.release("d").await.unwrap();
        s.release("me#e").await.unwrap();

        // Two tasks made runnable at once go the usual way, through the outbox.
        s.submit(
            "",
            &[
                spec("c", vec![future_ref("b")]),
                spec("e", vec![future_ref("b")]),
            ],
        )
        .await
        .unwrap();
        let (applied, _, eager) = s.complete_eager(&[done("b")], "me#e").await.unwrap();
        assert_eq!(applied.queued, 2);
        assert!(eager.is_empty());
        assert_eq!(s.claim("d", "default", 10).await.unwrap().1.len(), 2);
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn a_dependency_still_in_flight_defers_its_dependent_instead_of_failing_it() {
        let s = store().await;
        let dependents = [
            spec("b", vec![future_ref("a")]),
            spec("c", vec![future_ref("b")]),
        ];
        let (applied, deferred) = s.submit_deferring("w", &dependents).await.unwrap();
        assert_eq!(deferred, vec!["b".to_string(), "c".to_string()]);
        assert!(applied.notifications.is_empty());
        assert_eq!(s.states(&["b".into()]).await.unwrap(), vec![None]);
        s.submit("", &[spec("a", vec![])]).await.unwrap();
        let (_, deferred) = s.submit_deferring("w", &dependents).await.unwrap();
        assert!(deferred.is_empty());
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_task_is_retried_and_its_final_error_keeps_every_attempt() {
        let s = store().await;
        let mut t = spec("flaky", vec![]);
        t.retries = 2;
        s.submit("w", &[t]).await.unwrap();
        let fail = |n: u32, attempt: u32| {
            (
                "flaky".to_string(),
                Transition::Failed {
                    error: TaskFailure::new("ValueError", format!("try {n}"), "tb/\"x\""),
                    attempt,
                },
            )
        };
        assert_eq!(s.claim("me", "default", 10).await.unwrap().1[0].attempt, 0);
        s.release("me").await.unwrap();
        assert_eq!(s.complete(&[fail(1, 0)]).await.unwrap().queued, 1);
        // The same failure redelivered does not use up another retry.
        assert_eq!(s.complete(&[fail(1, 0)]).await.unwrap().queued, 0);
        assert_eq!(s.claim("me", "default", 10).await.unwrap().1[0].attempt, 1);
        s.release("me").await.unwrap();
        assert_eq!(s.complete(&[fail(2, 1)]).await.unwrap().queued, 1);
        let applied = s.complete(&[fail(3, 2)]).await.unwrap();
        match &applied.notifications[0].terminal {
            Terminal::Error { error } => {
                assert_eq!(error.message, "try 3");
                let earlier: Vec<&str> =
                    error.previous.iter().map(|e| e.message.as_str()).collect();
                assert_eq!(earlier, vec!["try 1", "try 2"]);
                assert_eq!(error.previous[0].traceback, "tb/\"x\"");
            }
            other => panic!("expected the final error, got {other:?}"),
        }
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn cancel_reaches_dependents_and_forget_only_takes_final_futures() {
        let s = store().await;
        s.submit("w", &[spec("a", vec![]), spec("done", vec![])])
            .await
            .unwrap();
        s.submit("w", &[spec("b", vec![future_ref("a")])])
            .await
            .unwrap();
        s.submit("w", &[spec("c", vec![future_ref("b")])])
            .await
            .unwrap();
        s.complete(&[("done".into(), finished(json!(1)))])
            .await
            .unwrap();
        let (cancelled, notes) = s.cancel(&["a".into(), "done".into()]).await.unwrap();
        assert_eq!(cancelled, vec!["a", "b", "c"]);
        assert_eq!(notes.len(), 3);
        assert!(notes.iter().all(|n| n.terminal == Terminal::Cancelled));
        assert_eq!(
            s.states(&["done".into()]).await.unwrap(),
            vec![Some(State::Finished)]
        );
        // A cancelled task is not dispatched even though it was in the outbox.
        assert!(s.claim("me", "default", 10).await.unwrap().1.is_empty());

        s.submit("", &[spec("p", vec![])]).await.unwrap();
        let f = s
            .forget(&["done".into(), "p".into(), "nope".into()])
            .await
            .unwrap();
        assert_eq!(
            f,
            vec![Forgotten::Forgotten, Forgotten::Pending, Forgotten::Unknown]
        );
        assert_eq!(s.states(&["done".into()]).await.unwrap(), vec![None]);
        let stats = s.stats().await.unwrap();
        assert_eq!(stats.get("submitted"), Some(&5));
        assert_eq!(stats.get("cancelled"), Some(&3));
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn higher_priorities_are_claimed_first_then_fifo_per_queue() {
        let s = store().await;
        let with = |key: &str, priority: i64, queue: &str| TaskSpec {
            priority,
            queue: queue.into(),
            ..spec(key, vec![])
        };
        s.submit(
            "",
            &[
                with("low1", -5, "default"),
                with("mid1", 0, "default"),
                with("high", 7, "default"),
                with("mid2", 0, "default"),
                with("gpu", 9, "gpu"),
            ],
        )
        .await
        .unwrap();
        let (_, claimed) = s.claim("me", "default", 3).await.unwrap();
        let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, vec!["high", "mid1", "mid2"]);
        s.release("me").await.unwrap();
        assert_eq!(s.outbox_len("default").await.unwrap(), 1);
        assert_eq!(s.outbox_len("gpu").await.unwrap(), 1);
        // A dead scheduler's claim goes back with its priority.
        let (_, claimed) = s.claim("dead", "default", 1).await.unwrap();
        assert_eq!(claimed[0].key, "low1");
        s.submit("", &[with("later", -1, "default")]).await.unwrap();
        assert_eq!(s.reclaim_orphans().await.unwrap(), 1);
        let (_, claimed) = s.claim("me", "default", 5).await.unwrap();
        let keys: Vec<&str> = claimed.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, vec!["later", "low1"]);
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn claims_of_a_dead_scheduler_return_to_the_outbox() {
        let s = store().await;
        s.submit("", &[spec("a", vec![]), spec("b", vec![])])
            .await
            .unwrap();
        let (_, claimed) = s.claim("dead", "default", 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert_eq!(s.outbox_len("default").await.unwrap(), 0);
        // An unreleased claim is returned again to its owner...
        assert_eq!(s.claim("dead", "default", 10).await.unwrap().1.len(), 2);
        // ...and, with no heartbeat, taken back for the others.
        assert_eq!(s.reclaim_orphans().await.unwrap(), 2);
        let (_, claimed) = s.claim("alive", "default", 10).await.unwrap();
        assert_eq!(
            claimed.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        s.heartbeat("alive", Duration::from_secs(10)).await.unwrap();
        assert_eq!(s.reclaim_orphans().await.unwrap(), 0);
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn restart_cancels_everything_and_bumps_the_epoch() {
        let s = store().await;
        s.submit("w", &[spec("a", vec![]), spec("done", vec![])])
            .await
            .unwrap();
        s.complete(&[("done".into(), finished(json!(1)))])
            .await
            .unwrap();
        s.submit("w", &[spec("b", vec![future_ref("a")])])
            .await
            .unwrap();
        // Another namespace on the same Redis is not touched.
        let other = store().await;
        other.submit("w", &[spec("a", vec![])]).await.unwrap();
        // A claim in flight is dropped with the outbox.
        s.submit("w", &[spec("c", vec![])]).await.unwrap();
        let (_, claimed) = s.claim("me", "default", 10).await.unwrap();
        assert!(!claimed.is_empty());
        let (epoch, notes) = s.restart().await.unwrap();
        assert_eq!(epoch, 1);
        let mut keys: Vec<&str> = notes.iter().map(|n| n.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, vec!["a", "b", "c"]);
        // The counters agree with `status`: every held future is cancelled.
        let stats = s.stats().await.unwrap();
        assert_eq!(stats.get("submitted"), Some(&4), "{stats:?}");
        assert_eq!(stats.get("cancelled"), Some(&4), "{stats:?}");
        assert_eq!(stats.get("finished"), None, "{stats:?}");
        let mut con = s.connection();
        let claimants: Vec<String> = con
            .smembers(format!("{}claimants", s.prefix()))
            .await
            .unwrap();
        assert!(claimants.is_empty(), "{claimants:?}");
        assert_eq!(
            other.states(&["a".into()]).await.unwrap(),
            vec![Some(State::Queued)]
        );
        other.wipe().await.unwrap();
        let states = s
            .states(&["a".into(), "b".into(), "done".into()])
            .await
            .unwrap();
        assert!(states.iter().all(|st| *st == Some(State::Cancelled)));
        assert_eq!(s.outbox_len("default").await.unwrap(), 0);
        assert_eq!(s.epoch().await.unwrap(), 1);
        // Submitting a cancelled key again runs it again, as in dask.
        assert_eq!(
            s.submit("w", &[spec("done", vec![])]).await.unwrap().queued,
            1
        );
        assert_eq!(
            s.states(&["done".into()]).await.unwrap(),
            vec![Some(State::Queued)]
        );
        s.wipe().await.unwrap();
    }

    #[tokio::test]
    async fn an_older_namespace_is_migrated_once_to_claimants_and_index() {
        let s = store().await;
        let mut con = s.connection();
        let p = s.prefix().to_string();
        // What a warren without claimants and index left behind.
        let _: () = con
            .hset(format!("{p}t:old"), "s", "finished")
            .await
            .unwrap();
        let _: () = con.expire(format!("{p}t:old"), 3600).await.unwrap();
        let _: () = con
            .hset(format!("{p}t:running"), "s", "queued")
            .await
            .unwrap();
        let _: () = con
            .rpush(format!("{p}claimed:gone#0"), "running")
            .await
            .unwrap();
        assert_eq!(s.migrate_layout().await.unwrap(), 2);
        let claimants: Vec<String> = con.smembers(format!("{p}claimants")).await.unwrap();
        assert_eq!(claimants, vec!["gone#0".to_string()]);
        let finite: f64 = con.zscore(format!("{p}index"), "old").await.unwrap();
        assert!(finite.is_finite() && finite > now_ms() as f64, "{finite}");
        let pending: f64 = con.zscore(format!("{p}index"), "running").await.unwrap();
        assert!(pending.is_infinite());
        // The orphaned claim comes back through the claimants, with no SCAN.
        assert_eq!(s.reclaim_orphans().await.unwrap(), 1);
        // Done once: a second start does nothing.
        assert_eq!(s.migrate_layout().await.unwrap(), 0);
        s.wipe().await.unwrap();
    }
}

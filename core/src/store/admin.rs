//! Reading and resetting a namespace: counters, workers, recent errors, the
//! work queues in use, restart, the one-time layout migration, and wipe.
//!
//! Nothing here is on a task's path; every read costs what the namespace
//! holds (never a SCAN of the server, except `migrate_layout` once and `wipe`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::AsyncCommands;
use serde::Deserialize;

use super::{Notification, Store};
use crate::error::{Error, Result};
use crate::message_limit::MessageLimit;
use crate::messages::{WorkerInfo, now_ms};
use crate::status::State;

/// The key layout's version, in `P layout`: 1 had neither `claimants` nor
/// `index`, 2 has both ([`Store::migrate_layout`]).
const LAYOUT: u64 = 2;

/// Restart cancels the namespace's records this many per script.
const RESTART_CHUNK: isize = 500;

/// The namespace's counters (`P stats`): tasks submitted, final transitions
/// per state, retries. Each is counted exactly once by the scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(pub BTreeMap<String, u64>);

impl Stats {
    /// One counter, 0 if never counted.
    pub fn count(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Futures that reached a final state (finished, error or cancelled).
    pub fn ended(&self) -> u64 {
        self.count("finished") + self.count("error") + self.count("cancelled")
    }

    /// Futures submitted and not final yet.
    pub fn pending(&self) -> u64 {
        self.count("submitted").saturating_sub(self.ended())
    }
}

/// One of the namespace's recent errors (for `warren top`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecentError {
    /// The task's key.
    pub key: String,
    /// The error's type, e.g. `ZeroDivisionError`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Its message.
    #[serde(default)]
    pub message: String,
}

impl Store {
    /// Counters: tasks submitted, and final transitions per state.
    pub async fn stats(&self) -> Result<Stats> {
        let mut con = self.con();
        Ok(Stats(con.hgetall(self.keys.stats()).await?))
    }

    /// The most recent errors, newest first (entries that do not parse are skipped).
    pub async fn recent_errors(&self, n: usize) -> Result<Vec<RecentError>> {
        let mut con = self.con();
        let raw: Vec<String> = con
            .lrange(self.keys.recent_errors(), 0, n as isize - 1)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Keeps what a program task wrote (a JSON object of `stdout` and
    /// `stderr`) as long as results are kept.
    pub async fn put_logs(&self, key: &str, logs_json: &str) -> Result<()> {
        let mut con = self.con();
        let _: () = con.set_ex(self.keys.logs(key), logs_json, self.ttl).await?;
        Ok(())
    }

    /// Keeps `worker`'s outcome of run `id` (JSON) as long as results are.
    pub async fn put_run_outcome(&self, id: &str, worker: &str, outcome: &str) -> Result<()> {
        let mut con = self.con();
        let key = self.keys.run(id);
        let _: () = redis::pipe()
            .atomic()
            .hset(&key, worker, outcome)
            .expire(&key, i64::try_from(self.ttl).unwrap_or(i64::MAX))
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// The outcomes of run `id` so far, by worker.
    pub async fn run_outcomes(
        &self,
        id: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut con = self.con();
        Ok(con.hgetall(self.keys.run(id)).await?)
    }

    /// What a program task wrote, if it was one and its logs are still kept.
    pub async fn logs(&self, key: &str) -> Result<Option<String>> {
        let mut con = self.con();
        Ok(con.get(self.keys.logs(key)).await?)
    }

    /// Records a worker's heartbeat (for `warren workers`).
    pub async fn record_worker(&self, info: &WorkerInfo) -> Result<()> {
        let mut con = self.con();
        let _: () = con
            .hset(
                self.keys.workers(),
                &info.worker,
                serde_json::to_string(info)?,
            )
            .await?;
        Ok(())
    }

    /// Workers whose last heartbeat is at most `max_age` old; older ones are
    /// dropped from the registry.
    pub async fn workers(&self, max_age: Duration) -> Result<Vec<WorkerInfo>> {
        let mut con = self.con();
        let key = self.keys.workers();
        let all: HashMap<String, String> = con.hgetall(&key).await?;
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

    /// The state of each key (`None`: unknown), read-only.
    pub async fn states(&self, keys: &[String]) -> Result<Vec<Option<State>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.hget(self.keys.task(k), "s");
        }
        let mut con = self.con();
        let raw: Vec<Option<String>> = pipe.query_async(&mut con).await?;
        raw.into_iter()
            .map(|s| {
                s.map(|s| s.parse::<State>().map_err(Error::Script))
                    .transpose()
            })
            .collect()
    }

    /// The work queues tasks have been submitted to (always `default`).
    pub async fn work_queues(&self) -> Result<Vec<String>> {
        let mut con = self.con();
        let stored: Vec<String> = con.smembers(self.keys.queues()).await?;
        // A name RabbitMQ cannot take (stored by an older warren, or planted)
        // would stop every scheduler at its start: it is skipped, and named.
        let mut qs = Vec::with_capacity(stored.len());
        for q in stored {
            match crate::limits::work_queue(self.keys.namespace(), &q) {
                Ok(()) => qs.push(q),
                Err(why) => unusable_queue(&self.keys, &q, &why),
            }
        }
        if !qs.iter().any(|q| q == "default") {
            qs.push("default".into());
        }
        qs.sort();
        Ok(qs)
    }

    /// Shares what this process and the others know of the broker's message
    /// size limit: a limit kept in Redis lowers `limit`, a lower one learned
    /// here is kept (services say [`MessageLimit::warning`] after it).
    pub async fn sync_message_limit(&self, limit: &MessageLimit) -> Result<()> {
        let mut con = self.con();
        let stored: Option<String> = con.get(self.keys.broker_limit()).await?;
        // Anything but a positive number is ignored: Redis is not trusted
        // to hold what warren wrote.
        let stored = stored
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n > 0);
        if let Some(n) = stored {
            limit.learn(n);
        }
        if let Some(known) = limit.broker()
            && stored.is_none_or(|s| known < s)
        {
            let _: () = con.set(self.keys.broker_limit(), known).await?;
        }
        Ok(())
    }

    /// Runnable tasks of work queue `queue` not yet published.
    pub async fn outbox_len(&self, queue: &str) -> Result<u64> {
        let mut con = self.con();
        Ok(con.zcard(self.keys.outbox(queue)).await?)
    }

    /// How many tasks wait for their due time (`scheduled`), and when the
    /// first of them is due (Unix ms, Redis's clock).
    pub async fn delayed(&self) -> Result<(u64, Option<u64>)> {
        let mut con = self.con();
        let n: u64 = con.zcard(self.keys.delayed()).await?;
        let first: Vec<(String, f64)> = con.zrange_withscores(self.keys.delayed(), 0, 0).await?;
        Ok((n, first.first().map(|(_, due)| due.max(0.0) as u64)))
    }

    /// A task's due time (Unix ms) if it has one.
    pub async fn due(&self, key: &str) -> Result<Option<u64>> {
        let mut con = self.con();
        let due: Option<String> = con.hget(self.keys.task(key), "due").await?;
        Ok(due.and_then(|d| d.parse().ok()))
    }

    /// The current epoch.
    pub async fn epoch(&self) -> Result<u64> {
        let mut con = self.con();
        let e: Option<u64> = con.get(self.keys.epoch()).await?;
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
        let mut con = self.con();
        let k = &self.keys;
        let epoch: u64 = con.incr(k.epoch(), 1).await?;
        let mut doomed: Vec<String> = self
            .work_queues()
            .await?
            .iter()
            .map(|q| k.outbox(q))
            .collect();
        let lists: Vec<String> = con.smembers(k.claimants()).await?;
        doomed.extend(lists.iter().map(|l| k.claimed(l)));
        doomed.push(k.claimants());
        // Every delayed task is cancelled below: none is to be promoted.
        doomed.push(k.delayed());
        let _: () = con.del(doomed).await?;
        let _: () = con.zrembyscore(k.index(), "-inf", now_ms()).await?;
        let mut notes = Vec::new();
        let mut start = 0isize;
        loop {
            let chunk: Vec<String> = con
                .zrange(k.index(), start, start + RESTART_CHUNK - 1)
                .await?;
            if chunk.is_empty() {
                break;
            }
            start += chunk.len() as isize;
            notes.extend(self.cancel_all(&chunk).await?);
        }
        let held: u64 = con.zcard(k.index()).await?;
        let _: () = redis::pipe()
            .atomic()
            .del(k.stats())
            .hset_multiple(k.stats(), &[("submitted", held), ("cancelled", held)])
            .query_async(&mut con)
            .await?;
        Ok((epoch, notes))
    }

    /// Brings a namespace written by a warren older than `claimants` and
    /// `index` up to date, once: registers its claim lists and indexes its
    /// records (scored by their TTL). The one SCAN left, run at a scheduler's
    /// start only until `P layout` says it was done, and never for a new
    /// namespace. Returns the records indexed.
    pub async fn migrate_layout(&self) -> Result<u64> {
        let mut con = self.con();
        let k = &self.keys;
        let layout: Option<u64> = con.get(k.layout()).await?;
        if layout.unwrap_or(0) >= LAYOUT {
            return Ok(0);
        }
        // A namespace no warren ever recorded a task in has nothing to
        // migrate: every warren since the counters (older than layout 2)
        // writes `stats` with its first submit. Scanning would only read
        // every other key of the server, and a new namespace on a Redis
        // holding a million keys waited seconds before consuming anything.
        let used: bool = con.exists(k.stats()).await?;
        if !used {
            let _: () = con.set(k.layout(), LAYOUT).await?;
            return Ok(0);
        }
        for list in self.scan(&k.pattern("claimed:")).await? {
            if let Some(name) = k.strip("claimed:", &list) {
                let _: () = con.sadd(k.claimants(), name).await?;
            }
        }
        let mut indexed = 0;
        let now = now_ms();
        for record in self.scan(&k.pattern("t:")).await? {
            let Some(key) = k.strip("t:", &record) else {
                continue;
            };
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
                .arg(k.index())
                .arg("NX")
                .arg(score)
                .arg(key)
                .query_async(&mut con)
                .await?;
            indexed += added;
        }
        let _: () = con.set(k.layout(), LAYOUT).await?;
        Ok(indexed)
    }

    /// Drops expired records from the namespace's index (Redis expires the
    /// records themselves). Costs the number of entries dropped.
    pub async fn trim_index(&self) -> Result<u64> {
        let mut con = self.con();
        Ok(con.zrembyscore(self.keys.index(), "-inf", now_ms()).await?)
    }

    /// Deletes every key of the namespace (tests and `warren` tooling).
    pub async fn wipe(&self) -> Result<()> {
        let keys = self.scan(&self.keys.pattern("")).await?;
        let mut con = self.con();
        for chunk in keys.chunks(500) {
            let _: () = con.del(chunk).await?;
        }
        Ok(())
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut con = self.con();
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

/// Says once per process that work queue `queue` of `keys`' namespace
/// cannot be used (`why`), and how to remove it.
fn unusable_queue(keys: &super::keys::Keys, queue: &str, why: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    let id = format!("{}{queue}", keys.prefix());
    if said.contains(&id) {
        return;
    }
    said.push(id);
    tracing::error!(
        "skipping a work queue stored in Redis: {why}; nothing is dispatched to it. Remove it with: redis-cli SREM {} '{queue}'; DEL '{}'",
        keys.queues(),
        keys.outbox(queue),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_submitted_less_every_final_state_and_never_negative() {
        let stats = Stats(
            [
                ("submitted", 10),
                ("finished", 5),
                ("error", 2),
                ("cancelled", 1),
                ("retried", 4),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        assert_eq!(stats.ended(), 8);
        assert_eq!(stats.pending(), 2);
        assert_eq!(stats.count("nothing"), 0);
        let odd = Stats([("finished".to_string(), 3)].into_iter().collect());
        assert_eq!(odd.pending(), 0);
    }

    #[test]
    fn recent_errors_read_the_scripts_json() {
        let e: RecentError = serde_json::from_str(
            r#"{"key":"div-1","type":"ZeroDivisionError","message":"division by zero"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, "ZeroDivisionError");
        let bare: RecentError = serde_json::from_str(r#"{"key":"k"}"#).unwrap();
        assert_eq!(bare.message, "");
    }
}

//! A full Redis: 1,000,000 extra keys, half of them this namespace's
//! retained results (records and index entries, as finished tasks leave
//! them), half another namespace's records. Removed again by name.
//!
//! A Redis with append-only persistence (`broker-config/up.sh` turns it on)
//! rewrites its AOF each time the file doubles, and a rewrite walks the whole
//! dataset: after the fill, five rewrites in a row took up to 5 s of one of
//! this machine's two cores, and landed in the measured pass (p50 1.39×, p99
//! 1.92× the empty Redis's in that run). That is the cost of loading a
//! million keys, not of holding them, so [`settle`] lets Redis finish
//! rewriting before each pass, and the report says how long it took.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use redis::aio::ConnectionManager;
use warren_core::Settings;
use warren_core::store::Store;

/// Keys per pipeline.
const BATCH: usize = 10_000;

/// The extra keys of one run.
pub struct Filler {
    settings: Settings,
    other: String,
    made: std::sync::Mutex<usize>,
}

impl Filler {
    pub fn new(settings: &Settings) -> Self {
        Self {
            settings: settings.clone(),
            other: format!("filler-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            made: std::sync::Mutex::new(0),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        Ok(Store::connect(&self.settings).await?.connection())
    }

    /// Adds `n` keys.
    pub async fn fill(&self, n: usize) -> Result<()> {
        let mut con = self.connection().await?;
        let ns = &self.settings.namespace;
        let expiry = warren_core::messages::now_ms() + self.settings.result_ttl_secs * 1000;
        let half = n / 2;
        for start in (0..n).step_by(BATCH) {
            let mut pipe = redis::pipe();
            for i in start..(start + BATCH).min(n) {
                let (prefix, key) = if i < half {
                    (ns.as_str(), format!("fill-{i}"))
                } else {
                    (self.other.as_str(), format!("fill-{i}"))
                };
                pipe.hset_multiple(
                    format!("{prefix}:t:{key}"),
                    &[
                        ("s", "finished"),
                        ("f", "inc"),
                        ("q", "default"),
                        ("v", "1"),
                    ],
                )
                .ignore()
                .expire(
                    format!("{prefix}:t:{key}"),
                    self.settings.result_ttl_secs as i64,
                )
                .ignore()
                .zadd(format!("{prefix}:index"), &key, expiry)
                .ignore();
            }
            let _: () = pipe.query_async(&mut con).await?;
        }
        *self.made.lock().unwrap_or_else(|p| p.into_inner()) = n;
        Ok(())
    }

    /// Deletes what [`Filler::fill`] added.
    pub async fn remove(&self) -> Result<()> {
        let n = *self.made.lock().unwrap_or_else(|p| p.into_inner());
        let mut con = self.connection().await?;
        let ns = &self.settings.namespace;
        let half = n / 2;
        for start in (0..n).step_by(BATCH) {
            let mut pipe = redis::pipe();
            for i in start..(start + BATCH).min(n) {
                let prefix = if i < half {
                    ns.as_str()
                } else {
                    self.other.as_str()
                };
                pipe.del(format!("{prefix}:t:fill-{i}"))
                    .ignore()
                    .zrem(format!("{prefix}:index"), format!("fill-{i}"))
                    .ignore();
            }
            let _: () = pipe.query_async(&mut con).await?;
        }
        Ok(())
    }
}

/// How long [`settle`] waits for Redis to finish rewriting its AOF.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Brings Redis's AOF to rest before a measured pass: when append-only
/// persistence is on, rewrites it now (BGREWRITEAOF, so that the file's base
/// is the whole dataset and the pass's writes trigger no rewrite of it) and
/// waits until no rewrite runs or is scheduled. Returns the time it took,
/// `None` when the AOF is off.
pub async fn settle(settings: &Settings) -> Result<Option<Duration>> {
    let mut con = Store::connect(settings).await?.connection();
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut con)
        .await?;
    if field(&info, "aof_enabled") != Some("1") {
        return Ok(None);
    }
    let started = Instant::now();
    if !rewriting(&info) {
        // "Background append only file rewriting started", or scheduled
        // behind an RDB save: either way the wait below covers it. Redis may
        // also have started a rewrite of its own since the INFO above (its
        // automatic one, when the file has grown): that is refused as
        // "already in progress", and the wait covers it too.
        let asked: redis::RedisResult<redis::Value> =
            redis::cmd("BGREWRITEAOF").query_async(&mut con).await;
        if let Err(e) = asked
            && !already_rewriting(&e.to_string())
        {
            return Err(e).context("BGREWRITEAOF");
        }
    }
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut con)
            .await?;
        if !rewriting(&info) {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > SETTLE_LIMIT {
            bail!(
                "Redis was still rewriting its AOF after {}s (INFO persistence: aof_rewrite_in_progress, aof_rewrite_scheduled)",
                SETTLE_LIMIT.as_secs()
            );
        }
    }
}

/// Whether INFO persistence says an AOF rewrite runs or waits to run.
fn rewriting(info: &str) -> bool {
    field(info, "aof_rewrite_in_progress") == Some("1")
        || field(info, "aof_rewrite_scheduled") == Some("1")
}

/// Whether BGREWRITEAOF was refused only because a rewrite already runs.
fn already_rewriting(error: &str) -> bool {
    error.contains("already in progress")
}

/// The value of `name` in an INFO reply (`name:value` lines).
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (k, v) = line.trim_end().split_once(':')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:1\r\n";

    #[test]
    fn info_fields_are_read_by_exact_name() {
        assert_eq!(field(INFO, "aof_enabled"), Some("1"));
        assert_eq!(field(INFO, "aof_rewrite_in_progress"), Some("0"));
        assert_eq!(field(INFO, "aof_rewrite"), None);
    }

    #[test]
    fn a_scheduled_or_running_rewrite_is_not_at_rest() {
        assert!(rewriting(INFO));
        assert!(rewriting(
            "aof_rewrite_in_progress:1\r\naof_rewrite_scheduled:0\r\n"
        ));
        assert!(!rewriting(
            "aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\n"
        ));
        assert!(!rewriting(""));
    }

    #[test]
    fn a_rewrite_redis_started_itself_is_waited_for_not_an_error() {
        assert!(already_rewriting(
            "ERR Background append only file rewriting already in progress"
        ));
        assert!(!already_rewriting("MISCONF Errors writing to the AOF file"));
    }
}

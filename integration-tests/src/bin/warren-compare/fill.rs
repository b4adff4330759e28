//! A full Redis: 1,000,000 extra keys, half of them this namespace's
//! retained results (records and index entries, as finished tasks leave
//! them), half another namespace's records. Removed again by name.

use anyhow::Result;
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

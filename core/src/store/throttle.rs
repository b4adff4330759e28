//! Global rate limits and concurrency limits (`warren limits`), kept in Redis.
//!
//! Why Redis, and at dispatch: every scheduler claims from the same outboxes,
//! so a limit checked where a task leaves its outbox (`gate` in
//! `lua/common.lua`, run inside `claim.lua` and the eager claim) holds across
//! all schedulers and workers at once, with no coordinator; and a task held
//! back waits in Redis, never in a worker's prefetch (Celery's `rate_limit`
//! is per worker, and its held tasks sit in worker memory). This module only
//! reads and writes the two settings hashes; the scripts apply them.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P rate_limits` | hash | `func:<name>` or `queue:<name>` → `<count>/<period ms>` |
//! | `P rate:<target>` | string, TTL | the next free slot's time (ms; GCRA's theoretical arrival time) |
//! | `P concurrency_limits` | hash | a concurrency key, or a `prefix*` pattern → the most running at once |
//! | `P running:<key>` | integer | tasks of a concurrency key holding a slot |
//! | `P ckwait:<key>` | list | tasks of a concurrency key waiting for a slot, in arrival order |

use redis::AsyncCommands;

use super::Store;
use crate::error::{Error, Result};
use crate::timing::Rate;

/// What a rate limit applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateTarget {
    /// Every task of a function.
    Func(String),
    /// Every task of a work queue.
    Queue(String),
}

impl RateTarget {
    /// The field in `P rate_limits` (`func:<name>`, `queue:<name>`).
    pub fn field(&self) -> String {
        match self {
            RateTarget::Func(f) => format!("func:{f}"),
            RateTarget::Queue(q) => format!("queue:{q}"),
        }
    }

    fn from_field(field: &str) -> Option<RateTarget> {
        match field.split_once(':')? {
            ("func", f) => Some(RateTarget::Func(f.to_string())),
            ("queue", q) => Some(RateTarget::Queue(q.to_string())),
            _ => None,
        }
    }

    fn check(&self) -> Result<()> {
        let (what, name) = match self {
            RateTarget::Func(f) => ("function name", f),
            RateTarget::Queue(q) => ("queue name", q),
        };
        crate::taskkey::validate_key(name).map_err(|e| Error::Invalid(format!("{what}: {e}")))
    }
}

impl std::fmt::Display for RateTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateTarget::Func(name) => write!(f, "function {name}"),
            RateTarget::Queue(name) => write!(f, "queue {name}"),
        }
    }
}

/// The namespace's limits, as `warren limits list` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Rate limits, by target.
    pub rates: Vec<(RateTarget, Rate)>,
    /// Concurrency limits: key or `prefix*` pattern, the most running, and
    /// how many of the exact key's tasks hold a slot now.
    pub concurrency: Vec<(String, u32, u64)>,
}

/// Checks a concurrency key or pattern: a task key's rules, with one `*`
/// allowed only at its end.
fn check_pattern(pattern: &str) -> Result<()> {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if body.contains('*') {
        return Err(Error::Invalid(format!(
            "concurrency key pattern {pattern:?}: a '*' may only end it (tenant-*)"
        )));
    }
    if body.is_empty() {
        return Ok(());
    }
    crate::taskkey::validate_key(body).map_err(|e| Error::Invalid(format!("concurrency key: {e}")))
}

impl Store {
    /// Sets (or replaces) the rate limit of `target`.
    pub async fn set_rate_limit(&self, target: &RateTarget, rate: Rate) -> Result<()> {
        target.check()?;
        let mut con = self.con();
        let _: () = con
            .hset(self.keys.rate_limits(), target.field(), rate.stored())
            .await?;
        Ok(())
    }

    /// Sets (or replaces) the concurrency limit of a key or `prefix*` pattern.
    pub async fn set_concurrency_limit(&self, pattern: &str, max: u32) -> Result<()> {
        check_pattern(pattern)?;
        if max == 0 {
            return Err(Error::Invalid(
                "--max-running must be at least 1 (remove the limit instead)".into(),
            ));
        }
        let mut con = self.con();
        let _: () = con
            .hset(self.keys.concurrency_limits(), pattern, max)
            .await?;
        Ok(())
    }

    /// Removes a rate limit; whether there was one.
    pub async fn remove_rate_limit(&self, target: &RateTarget) -> Result<bool> {
        let mut con = self.con();
        let n: u64 = con.hdel(self.keys.rate_limits(), target.field()).await?;
        Ok(n > 0)
    }

    /// Removes a concurrency limit; whether there was one. Tasks already
    /// waiting for a slot get one as running tasks of the key end.
    pub async fn remove_concurrency_limit(&self, pattern: &str) -> Result<bool> {
        let mut con = self.con();
        let n: u64 = con.hdel(self.keys.concurrency_limits(), pattern).await?;
        Ok(n > 0)
    }

    /// Every limit of the namespace.
    pub async fn limits(&self) -> Result<Limits> {
        let mut con = self.con();
        let rates: Vec<(String, String)> = con.hgetall(self.keys.rate_limits()).await?;
        let conc: Vec<(String, String)> = con.hgetall(self.keys.concurrency_limits()).await?;
        let mut out = Limits::default();
        for (field, stored) in rates {
            if let (Some(t), Some(r)) = (RateTarget::from_field(&field), Rate::from_stored(&stored))
            {
                out.rates.push((t, r));
            }
        }
        for (pattern, max) in conc {
            let running: Option<u64> = if pattern.ends_with('*') {
                None
            } else {
                con.get(self.keys.running(&pattern)).await?
            };
            out.concurrency
                .push((pattern, max.parse().unwrap_or(0), running.unwrap_or(0)));
        }
        out.rates.sort_by_key(|(t, _)| t.field());
        out.concurrency.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_allow_one_trailing_star_only() {
        check_pattern("tenant-42").unwrap();
        check_pattern("tenant-*").unwrap();
        check_pattern("*").unwrap();
        assert!(check_pattern("ten*ant").is_err());
        assert!(check_pattern("a b").is_err());
    }

    #[test]
    fn rate_targets_round_trip_through_their_field() {
        for t in [
            RateTarget::Func("fetch".into()),
            RateTarget::Queue("gpu".into()),
        ] {
            assert_eq!(RateTarget::from_field(&t.field()), Some(t));
        }
        assert_eq!(RateTarget::from_field("other:x"), None);
    }
}

//! Coordination state: the Python client's `Variable`, `Queue`, `Event`,
//! `Lock` and `Semaphore`, one Redis key each (`P coord:<kind>:<name>`).
//!
//! Why Redis: it already holds every future of the namespace, durably (AOF,
//! replicas, `redis_min_replicas`), and every client and task can reach it;
//! a scheduler holds none of this state, so none is lost when one dies.
//! Values are stored as the client encodes them (JSON, with references to
//! futures and to blobs of values that are not JSON), so this module never
//! reads them. Every call here is one command or one script, and none
//! blocks the shared connection: waiting is the caller's polling (a `BLPOP`
//! would stall every other command multiplexed on the connection).
//!
//! A lock and a semaphore are leases: a holder renews its lease while it
//! holds it, so a holder that dies (SIGKILL, a lost machine) frees its place
//! within one lease.

use redis::{AsyncCommands, Script};

use super::Store;
use crate::error::{Error, Result};

/// The longest name of a primitive (the rest of its key is the namespace's).
pub const MAX_NAME: usize = 200;

/// The kinds of primitive, as their keys name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value, set and read.
    Variable,
    /// A FIFO list of values.
    Queue,
    /// A flag, set or clear.
    Event,
    /// A lease held by one token.
    Lock,
    /// Leases held by up to `max` tokens.
    Semaphore,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Variable => "var",
            Kind::Queue => "queue",
            Kind::Event => "event",
            Kind::Lock => "lock",
            Kind::Semaphore => "sem",
        }
    }
}

/// Checks a primitive's name (a user's input): not empty, not too long, no
/// control characters.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "a primitive's name must be 1 to {MAX_NAME} bytes without control characters, not {:?}",
            crate::taskkey::shown(name)
        )));
    }
    Ok(())
}

/// Appends a value unless the queue holds `maxsize` (> 0) already: the
/// check and the append in one step, so no two clients overfill it.
const PUT: &str = r"
local max = tonumber(ARGV[2])
if max > 0 and redis.call('LLEN', KEYS[1]) >= max then
  return -1
end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
";

/// Sets `key` to `token` with a lease of `lease_ms` if it is free or
/// already `token`'s (so a holder's renewal is an acquire too).
const LOCK: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Deletes `key` if `token` holds it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A sorted set of tokens scored by lease end (Redis's clock): expired
/// leases go first; then `token` renews its lease, or takes one if fewer
/// than `max` are held.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
";

impl Store {
    fn coord_key(&self, kind: Kind, name: &str) -> Result<String> {
        check_name(name)?;
        Ok(self.keys.coordination(kind.as_str(), name))
    }

    /// Sets variable `name` to `value` (kept as long as results are).
    pub async fn variable_set(&self, name: &str, value: &str) -> Result<()> {
        let key = self.coord_key(Kind::Variable, name)?;
        let mut con = self.con();
        let _: () = con.set_ex(key, value, self.ttl).await?;
        self.await_replicas(&mut con).await?;
        Ok(())
    }

    /// Variable `name`'s value, if it is set.
    pub async fn variable_get(&self, name: &str) -> Result<Option<String>> {
        let key = self.coord_key(Kind::Variable, name)?;
        Ok(self.con().get(key).await?)
    }

    /// Deletes variable `name`.
    pub async fn variable_delete(&self, name: &str) -> Result<()> {
        let key = self.coord_key(Kind::Variable, name)?;
        let _: () = self.con().del(key).await?;
        Ok(())
    }

    /// Appends `value` to queue `name`; its length after, or `None` if it
    /// already holds `maxsize` items (0: no bound).
    pub async fn queue_put(
        &self,
        name: &str,
        value: &str,
        maxsize: usize,
    ) -> Result<Option<usize>> {
        let key = self.coord_key(Kind::Queue, name)?;
        let mut con = self.con();
        let len: i64 = Script::new(PUT)
            .key(key)
            .arg(value)
            .arg(maxsize)
            .arg(self.ttl)
            .invoke_async(&mut con)
            .await?;
        if len < 0 {
            return Ok(None);
        }
        self.await_replicas(&mut con).await?;
        Ok(usize::try_from(len).ok())
    }

    /// Takes the first value of queue `name`, if any.
    pub async fn queue_get(&self, name: &str) -> Result<Option<String>> {
        let key = self.coord_key(Kind::Queue, name)?;
        let mut con = self.con();
        let got: Option<String> = con.lpop(&key, None).await?;
        if got.is_some() {
            self.await_replicas(&mut con).await?;
        }
        Ok(got)
    }

    /// How many values queue `name` holds.
    pub async fn queue_len(&self, name: &str) -> Result<usize> {
        let key = self.coord_key(Kind::Queue, name)?;
        Ok(self.con().llen(key).await?)
    }

    /// Sets (`true`) or clears event `name`.
    pub async fn event_set(&self, name: &str, set: bool) -> Result<()> {
        let key = self.coord_key(Kind::Event, name)?;
        let mut con = self.con();
        if set {
            let _: () = con.set_ex(key, 1, self.ttl).await?;
        } else {
            let _: () = con.del(key).await?;
        }
        self.await_replicas(&mut con).await?;
        Ok(())
    }

    /// Whether event `name` is set.
    pub async fn event_is_set(&self, name: &str) -> Result<bool> {
        let key = self.coord_key(Kind::Event, name)?;
        Ok(self.con().exists(key).await?)
    }

    /// Takes (or renews) lock `name` for `token`, for `lease_ms`; whether
    /// `token` holds it now.
    pub async fn lock_acquire(&self, name: &str, token: &str, lease_ms: u64) -> Result<bool> {
        let key = self.coord_key(Kind::Lock, name)?;
        let mut con = self.con();
        let got: i64 = Script::new(LOCK)
            .key(key)
            .arg(token)
            .arg(lease_ms.max(1))
            .invoke_async(&mut con)
            .await?;
        self.await_replicas(&mut con).await?;
        Ok(got == 1)
    }

    /// Frees lock `name` if `token` holds it; whether it did.
    pub async fn lock_release(&self, name: &str, token: &str) -> Result<bool> {
        let key = self.coord_key(Kind::Lock, name)?;
        let mut con = self.con();
        let gone: i64 = Script::new(UNLOCK)
            .key(key)
            .arg(token)
            .invoke_async(&mut con)
            .await?;
        Ok(gone == 1)
    }

    /// Whether anyone holds lock `name`.
    pub async fn lock_held(&self, name: &str) -> Result<bool> {
        let key = self.coord_key(Kind::Lock, name)?;
        Ok(self.con().exists(key).await?)
    }

    /// Takes (or renews) one of semaphore `name`'s `max` leases for
    /// `token`, for `lease_ms`; whether `token` holds one now.
    pub async fn semaphore_acquire(
        &self,
        name: &str,
        token: &str,
        max: u32,
        lease_ms: u64,
    ) -> Result<bool> {
        let key = self.coord_key(Kind::Semaphore, name)?;
        let mut con = self.con();
        let got: i64 = Script::new(LEASE)
            .key(key)
            .arg(token)
            .arg(max.max(1))
            .arg(lease_ms.max(1))
            .invoke_async(&mut con)
            .await?;
        self.await_replicas(&mut con).await?;
        Ok(got == 1)
    }

    /// Gives back `token`'s lease of semaphore `name`; whether it held one.
    pub async fn semaphore_release(&self, name: &str, token: &str) -> Result<bool> {
        let key = self.coord_key(Kind::Semaphore, name)?;
        let gone: i64 = self.con().zrem(key, token).await?;
        Ok(gone == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_key_is_made() {
        assert!(check_name("results").is_ok());
        assert!(check_name("a:b/c d").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
        assert!(check_name("a\nb").is_err());
    }
}

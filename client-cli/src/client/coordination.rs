//! Coordination primitives through the client: one Redis command or script
//! per step (`warren_core::store::coordination`), and the waiting around
//! them. A wait polls, backing off from 2 ms to 100 ms, so that no command
//! blocks the connection the client shares with everything else; a holder
//! of a lease renews it by acquiring again.

use std::future::Future;
use std::time::{Duration, Instant};

use super::Client;
use crate::error::Error;

/// The longest pause between two polls of a wait.
const POLL_AT_MOST: Duration = Duration::from_millis(100);

/// Calls `attempt` until it gives `Some`, or `timeout` (none: for ever)
/// has passed: then `None`.
async fn poll<T, F, Fut>(timeout: Option<Duration>, mut attempt: F) -> Result<Option<T>, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = attempt().await? {
            return Ok(Some(v));
        }
        let left = match timeout {
            Some(t) => match t.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(None),
            },
            None => POLL_AT_MOST,
        };
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(POLL_AT_MOST);
    }
}

/// Calls `attempt` until it says `true`, or `timeout` has passed: whether
/// it said so.
async fn poll_true<F, Fut>(timeout: Option<Duration>, mut attempt: F) -> Result<bool, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let got = poll(timeout, || {
        let done = attempt();
        async move { Ok(done.await?.then_some(())) }
    })
    .await?;
    Ok(got.is_some())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Client {
    /// Sets variable `name` to `value` (the client's encoding of a value).
    pub async fn variable_set(&self, name: &str, value: &str) -> Result<(), Error> {
        Ok(self.inner.store.variable_set(name, value).await?)
    }

    /// Variable `name`'s value once it is set; `None` if `timeout` passes
    /// first.
    pub async fn variable_get(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        poll(timeout, || async {
            Ok(self.inner.store.variable_get(name).await?)
        })
        .await
    }

    /// Deletes variable `name`.
    pub async fn variable_delete(&self, name: &str) -> Result<(), Error> {
        Ok(self.inner.store.variable_delete(name).await?)
    }

    /// Appends `value` to queue `name`, waiting for room if it holds
    /// `maxsize` items (0: no bound); `false` if `timeout` passes first.
    pub async fn queue_put(
        &self,
        name: &str,
        value: &str,
        maxsize: usize,
        timeout: Option<Duration>,
    ) -> Result<bool, Error> {
        let put = poll(timeout, || async {
            Ok(self.inner.store.queue_put(name, value, maxsize).await?)
        })
        .await?;
        Ok(put.is_some())
    }

    /// Takes the first value of queue `name`, waiting for one; `None` if
    /// `timeout` passes first.
    pub async fn queue_get(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<String>, Error> {
        poll(timeout, || async {
            Ok(self.inner.store.queue_get(name).await?)
        })
        .await
    }

    /// How many values queue `name` holds.
    pub async fn queue_len(&self, name: &str) -> Result<usize, Error> {
        Ok(self.inner.store.queue_len(name).await?)
    }

    /// Sets (`true`) or clears event `name`.
    pub async fn event_set(&self, name: &str, set: bool) -> Result<(), Error> {
        Ok(self.inner.store.event_set(name, set).await?)
    }

    /// Whether event `name` is set, once it is or `timeout` passed.
    pub async fn event_wait(&self, name: &str, timeout: Option<Duration>) -> Result<bool, Error> {
        poll_true(timeout, || async {
            Ok(self.inner.store.event_is_set(name).await?)
        })
        .await
    }

    /// Takes lock `name` for `token` with a lease of `lease`, waiting up to
    /// `timeout` (`Some(ZERO)`: not at all); whether it was taken. Taking a
    /// lock `token` holds renews its lease.
    pub async fn lock_acquire(
        &self,
        name: &str,
        token: &str,
        lease: Duration,
        timeout: Option<Duration>,
    ) -> Result<bool, Error> {
        let ms = millis(lease);
        poll_true(timeout, || async {
            Ok(self.inner.store.lock_acquire(name, token, ms).await?)
        })
        .await
    }

    /// Frees lock `name` if `token` holds it; whether it did.
    pub async fn lock_release(&self, name: &str, token: &str) -> Result<bool, Error> {
        Ok(self.inner.store.lock_release(name, token).await?)
    }

    /// Whether anyone holds lock `name`.
    pub async fn lock_held(&self, name: &str) -> Result<bool, Error> {
        Ok(self.inner.store.lock_held(name).await?)
    }

    /// Takes one of semaphore `name`'s `max` leases for `token`, waiting up
    /// to `timeout`; whether it was taken (or renewed).
    pub async fn semaphore_acquire(
        &self,
        name: &str,
        token: &str,
        max: u32,
        lease: Duration,
        timeout: Option<Duration>,
    ) -> Result<bool, Error> {
        let ms = millis(lease);
        poll_true(timeout, || async {
            Ok(self
                .inner
                .store
                .semaphore_acquire(name, token, max, ms)
                .await?)
        })
        .await
    }

    /// Gives back `token`'s lease of semaphore `name`; whether it held one.
    pub async fn semaphore_release(&self, name: &str, token: &str) -> Result<bool, Error> {
        Ok(self.inner.store.semaphore_release(name, token).await?)
    }
}

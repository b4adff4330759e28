//! Waiting for results: `gather`, `outcomes`, `as_completed` and `wait`.
//!
//! Final states arrive as events on the client's reply queue ([`crate::events`]);
//! a waiter that hears nothing for [`POLL_EVERY`] asks Redis, which also
//! registers it as a watcher, so a lost event costs seconds, never a hang.

use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use serde_json::Value;
use warren_core::messages::Terminal;
use warren_core::status::State;
use warren_core::store::Watched;

use super::Client;
use crate::error::Error;
use crate::future::{Future, into_value};

/// Keys per Redis `watch` call.
const WATCH_CHUNK: usize = 1000;
/// How long a waiter trusts events alone before asking Redis again.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long a key Redis does not know is asked about again before it is an
/// unknown future, whatever the submit queue holds: a scheduler records a
/// batch within milliseconds of taking it.
const UNKNOWN_GRACE: Duration = Duration::from_secs(1);
/// How often an unknown key is asked about again.
const UNKNOWN_RETRY: Duration = Duration::from_millis(100);
/// How long after submissions were last seen in flight an unknown key is
/// still waited for. A scheduler takes a request off the submit queue (it
/// leaves the queue's count) before its script records it (the `submitted`
/// counter grows): between the two nothing shows it, and a scheduler that
/// has just started, on a loaded machine, can spend more than a poll there.
const RECORDING_GRACE: Duration = Duration::from_secs(5);

/// Whether a key Redis does not know is worth waiting for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It may still be on its way to a scheduler.
    Wait,
    /// It is not a future of this namespace.
    Unknown,
}

/// A key unknown for `elapsed` is waited for during [`UNKNOWN_GRACE`], and
/// beyond it only while submissions are being recorded, up to `limit`
/// (`request_timeout_secs`). `since_busy` is how long ago submissions were
/// last seen in flight (the submit queue held requests, or the namespace's
/// submitted counter grew); `None` if never. Within [`RECORDING_GRACE`] of
/// that they may still be in a scheduler's hands, seen by neither.
fn unknown_verdict(elapsed: Duration, since_busy: Option<Duration>, limit: Duration) -> Verdict {
    let recording = since_busy.is_some_and(|quiet| quiet < RECORDING_GRACE);
    if elapsed < UNKNOWN_GRACE || (recording && elapsed < limit) {
        Verdict::Wait
    } else {
        Verdict::Unknown
    }
}

/// When [`Client::wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// As soon as one future is final.
    FirstCompleted,
    /// When all are final.
    AllCompleted,
}

impl Client {
    /// Waits for every future; values in the order given. The first failed
    /// future (in that order) is the error, as in dask.
    pub async fn gather(&self, futures: &[Future]) -> Result<Vec<Value>, Error> {
        let keys: Vec<String> = futures.iter().map(|f| f.key().to_string()).collect();
        self.gather_keys(&keys).await
    }

    /// [`Client::gather`] by key.
    pub async fn gather_keys(&self, keys: &[String]) -> Result<Vec<Value>, Error> {
        let outcomes = self.outcomes(keys).await?;
        keys.iter()
            .zip(outcomes)
            .map(|(k, t)| into_value(k, t))
            .collect()
    }

    /// The fine-grained state of each key; an unknown key is an error.
    pub async fn states(&self, keys: &[String]) -> Result<Vec<State>, Error> {
        keys.iter()
            .zip(self.lookup(keys).await?)
            .map(|(k, s)| s.ok_or_else(|| self.unknown(k)))
            .collect()
    }

    /// When `key`'s task is due, if it was given a delay, a due time or a
    /// retry's pause (Unix ms, Redis's clock).
    pub async fn due(&self, key: &str) -> Result<Option<u64>, Error> {
        Ok(self.inner.store.due(key).await?)
    }

    /// The fine-grained state of each key, `None` for a key this namespace
    /// does not hold (never submitted, expired or forgotten).
    pub async fn lookup(&self, keys: &[String]) -> Result<Vec<Option<State>>, Error> {
        self.flush().await?;
        Ok(self.inner.store.states(keys).await?)
    }

    /// Whether each key names a future in this namespace.
    pub async fn exists(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        Ok(self
            .lookup(keys)
            .await?
            .iter()
            .map(Option::is_some)
            .collect())
    }

    /// Waits for the final state of every key, in order.
    pub async fn outcomes(&self, keys: &[String]) -> Result<Vec<Terminal>, Error> {
        self.flush().await?;
        let events = &self.inner.events;
        let mut receivers: Vec<_> = keys.iter().map(|k| events.subscribe(k)).collect();
        self.refresh(keys, 0, &receivers).await?;
        let mut out = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            loop {
                if let Some(t) = receivers[i].borrow_and_update().clone() {
                    out.push(t);
                    break;
                }
                match tokio::time::timeout(POLL_EVERY, receivers[i].changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(Error::Disconnected),
                    // Quiet for a while: ask Redis about everything still awaited.
                    Err(_) => self.refresh(keys, i, &receivers).await?,
                }
            }
        }
        drop(receivers);
        events.release(keys);
        Ok(out)
    }

    /// Registers as watcher of the unresolved keys from `from` on, resolving
    /// those Redis already knows the end of. A key Redis does not know yet
    /// may still be on its way (another process's `map --detach`, read by a
    /// `gather` that outran the scheduler): it is asked about again while
    /// [`unknown_verdict`] says to wait, then it is an unknown future.
    pub(super) async fn refresh(
        &self,
        keys: &[String],
        from: usize,
        receivers: &[tokio::sync::watch::Receiver<Option<Terminal>>],
    ) -> Result<(), Error> {
        let mut pending: Vec<String> = keys[from..]
            .iter()
            .zip(&receivers[from..])
            .filter(|(_, r)| r.borrow().is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let started = tokio::time::Instant::now();
        let limit = Duration::from_secs(self.inner.settings.request_timeout_secs);
        let mut recorded: Option<u64> = None;
        let mut last_busy: Option<tokio::time::Instant> = None;
        loop {
            let mut unknown = Vec::new();
            for chunk in pending.chunks(WATCH_CHUNK) {
                let seen = self
                    .inner
                    .store
                    .watch(Some(&self.link().reply_queue), chunk)
                    .await?;
                for (k, w) in chunk.iter().zip(seen) {
                    match w {
                        Watched::Unknown => unknown.push(k.clone()),
                        Watched::Done(t) => self.inner.events.resolve(k, t),
                        Watched::Pending(_) => {}
                    }
                }
            }
            let Some(first) = unknown.first() else {
                return Ok(());
            };
            let queued = self
                .queue_stats(&self.inner.topology.submit_queue())
                .await
                .map_or(0, |(ready, _)| ready);
            // Requests a scheduler holds unacknowledged are not in `queued`;
            // a growing `submitted` counter says it is still recording them.
            let submitted = self.inner.store.stats().await?.count("submitted");
            let recording = recorded.is_some_and(|before| submitted != before);
            recorded = Some(submitted);
            if queued > 0 || recording {
                last_busy = Some(tokio::time::Instant::now());
            }
            let since_busy = last_busy.map(|at| at.elapsed());
            if unknown_verdict(started.elapsed(), since_busy, limit) == Verdict::Unknown {
                return Err(self.unknown(first));
            }
            tokio::time::sleep(UNKNOWN_RETRY).await;
            pending = unknown;
        }
    }

    /// Final states in the order they happen (dask's `as_completed`).
    pub fn as_completed(
        &self,
        keys: &[String],
    ) -> impl Stream<Item = Result<(String, Terminal), Error>> + '_ {
        let keys = keys.to_vec();
        futures::stream::once(async move {
            self.flush().await?;
            let receivers: Vec<_> = keys
                .iter()
                .map(|k| self.inner.events.subscribe(k))
                .collect();
            self.refresh(&keys, 0, &receivers).await?;
            let waits: FuturesUnordered<_> = keys
                .into_iter()
                .zip(receivers)
                .map(|(k, rx)| self.wait_one(k, rx))
                .collect();
            Ok::<_, Error>(waits)
        })
        .map(|r| match r {
            Ok(waits) => waits.left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        })
        .flatten()
    }

    /// Waits for one key's final state; asks Redis if events stay silent.
    pub(super) async fn wait_one(
        &self,
        key: String,
        mut rx: tokio::sync::watch::Receiver<Option<Terminal>>,
    ) -> Result<(String, Terminal), Error> {
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(t) = current {
                drop(rx);
                self.inner.events.release(std::slice::from_ref(&key));
                return Ok((key, t));
            }
            if tokio::time::timeout(POLL_EVERY, rx.changed())
                .await
                .is_err()
            {
                let seen = self
                    .inner
                    .store
                    .watch(Some(&self.link().reply_queue), std::slice::from_ref(&key))
                    .await?;
                match seen.into_iter().next() {
                    Some(Watched::Done(t)) => self.inner.events.resolve(&key, t),
                    Some(Watched::Unknown) => return Err(self.unknown(&key)),
                    _ => {}
                }
            }
        }
    }

    /// Waits until the first or all of `keys` are final, or `timeout` passes
    /// (dask's `wait`). Returns the keys done and the keys not done.
    pub async fn wait(
        &self,
        keys: &[String],
        mode: WaitMode,
        timeout: Option<Duration>,
    ) -> Result<(Vec<String>, Vec<String>), Error> {
        let mut done = Vec::new();
        let stream = self.as_completed(keys);
        futures::pin_mut!(stream);
        let collect = async {
            while let Some(item) = stream.next().await {
                done.push(item?.0);
                if mode == WaitMode::FirstCompleted {
                    break;
                }
            }
            Ok::<_, Error>(())
        };
        match timeout {
            Some(t) => {
                if let Ok(r) = tokio::time::timeout(t, collect).await {
                    r?;
                }
            }
            None => collect.await?,
        }
        let not_done = keys.iter().filter(|k| !done.contains(k)).cloned().collect();
        Ok((done, not_done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn an_unknown_key_is_waited_for_briefly_then_while_submits_are_queued() {
        let limit = Duration::from_secs(30);
        let ms = Duration::from_millis;
        assert_eq!(unknown_verdict(ms(0), None, limit), Verdict::Wait);
        assert_eq!(unknown_verdict(ms(900), None, limit), Verdict::Wait);
        assert_eq!(unknown_verdict(ms(1000), None, limit), Verdict::Unknown);
        assert_eq!(unknown_verdict(ms(5000), Some(ms(0)), limit), Verdict::Wait);
        assert_eq!(
            unknown_verdict(ms(30_000), Some(ms(0)), limit),
            Verdict::Unknown
        );
    }

    #[test]
    fn a_request_a_scheduler_took_but_has_not_recorded_is_still_waited_for() {
        // The queue emptied 0.3 s ago and the counter has not moved yet: the
        // scheduler is between taking the batch and running its script.
        let limit = Duration::from_secs(30);
        let ms = Duration::from_millis;
        assert_eq!(
            unknown_verdict(ms(3300), Some(ms(300)), limit),
            Verdict::Wait
        );
        assert_eq!(
            unknown_verdict(ms(7000), Some(ms(4900)), limit),
            Verdict::Wait
        );
        // Quiet for the whole grace: nothing is on its way any more.
        assert_eq!(
            unknown_verdict(ms(8000), Some(ms(5000)), limit),
            Verdict::Unknown
        );
    }
}

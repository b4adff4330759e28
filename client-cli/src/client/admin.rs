//! Acting on the namespace: cancel, forget, restart, and what `warren info`,
//! `warren workers`, `warren top` and `warren dead` show.

use std::time::Duration;

use warren_core::amqp;
use warren_core::messages::{ClientEvent, ClientRequest, PROTOCOL_VERSION, WorkerInfo};
use warren_core::store::{Forgotten, RecentError, Stats};

use super::Client;
use crate::error::Error;

/// What a restart did.
#[derive(Debug, Clone)]
pub struct RestartReport {
    /// The namespace's new epoch.
    pub epoch: u64,
    /// Live workers (any queue) when the restart began.
    pub workers_expected: u32,
    /// Workers that confirmed they dropped their old work.
    pub workers_ready: Vec<String>,
}

impl Client {
    /// Cancels futures and everything depending on them (dask's `cancel`):
    /// pending ones become `cancelled`, queued ones never start, running ones
    /// are asked to stop. Final futures are left as they are.
    pub async fn cancel(&self, keys: &[String]) -> Result<(), Error> {
        self.flush().await?;
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let body = serde_json::to_vec(&ClientRequest::Cancel {
            v: PROTOCOL_VERSION,
            batch: batch.clone(),
            keys: keys.to_vec(),
        })?;
        let ack = self
            .inner
            .events
            .expect_batch(&batch, self.link().generation);
        self.publish_request(&body, true).await?;
        self.await_acks(vec![ack], keys.len(), self.request_deadline())
            .await
    }

    /// Deletes final futures now instead of at the end of their TTL (dask's
    /// release). Pending futures are left alone: cancel them first.
    pub async fn forget(&self, keys: &[String]) -> Result<Vec<Forgotten>, Error> {
        self.flush().await?;
        Ok(self.inner.store.forget(keys).await?)
    }

    /// Cancels every future, empties the queues and waits for the workers to
    /// drop their old work (dask's `restart`).
    pub async fn restart(&self) -> Result<RestartReport, Error> {
        self.flush().await?;
        let workers_expected = self.restartable_workers().await.unwrap_or(0);
        let mut rx = self.inner.events.expect_restart();
        let body = serde_json::to_vec(&ClientRequest::Restart {
            v: PROTOCOL_VERSION,
        })?;
        self.publish_request(&body, true).await?;
        let wait = Duration::from_secs(60);
        // Workers may answer the scheduler's broadcast before the scheduler's
        // own reply reaches us: keep their answers.
        let mut workers_ready = Vec::new();
        let epoch = loop {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(ClientEvent::Restarted { epoch })) => break epoch,
                Ok(Some(ClientEvent::WorkerReady { worker })) => workers_ready.push(worker),
                Ok(Some(_)) => {}
                Ok(None) => return Err(Error::Disconnected),
                Err(_) => {
                    return Err(Error::Timeout {
                        secs: wait.as_secs_f64(),
                        what: "the scheduler to restart (is warren-scheduler running?)".into(),
                    });
                }
            }
        };
        self.inner.events.cancel_all();
        while (workers_ready.len() as u32) < workers_expected {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(ClientEvent::WorkerReady { worker })) => workers_ready.push(worker),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        Ok(RestartReport {
            epoch,
            workers_expected,
            workers_ready,
        })
    }

    /// Workers that will answer a restart: live ones (a heartbeat within two
    /// periods and a margin), on any queue, Rust or Python, not draining.
    async fn restartable_workers(&self) -> Result<u32, Error> {
        let now = warren_core::messages::now_ms();
        let fresh = Duration::from_secs(12).as_millis() as u64;
        Ok(self
            .workers()
            .await?
            .iter()
            .filter(|w| !w.draining && now.saturating_sub(w.at_ms) <= fresh)
            .count() as u32)
    }

    /// Workers consuming the default work queue (one consumer each).
    pub async fn worker_count(&self) -> Result<u32, Error> {
        Ok(self
            .queue_stats(&self.inner.topology.work_queue("default"))
            .await
            .map_or(0, |(_, consumers)| consumers))
    }

    /// Fails with [`Error::UnservedFunction`] unless a live worker consuming
    /// `queue` runs `func` (workers announce their functions in heartbeats):
    /// what `warren submit` checks before sending, so a typo fails at once.
    ///
    /// A worker that just started consumes its queue a moment before its
    /// first heartbeat reaches Redis: while the queue has more consumers than
    /// announced workers, the check looks again for up to 3 s.
    pub async fn check_served(&self, func: &str, queue: &str) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let workers = self.workers().await?;
            let Err(why) = crate::served::check(func, queue, &workers) else {
                return Ok(());
            };
            let announced = workers
                .iter()
                .filter(|w| w.queues.iter().any(|q| q == queue))
                .count();
            let consumers = self
                .queue_stats(&self.inner.topology.work_queue(queue))
                .await
                .map_or(0, |(_, c)| c as usize);
            if consumers <= announced || tokio::time::Instant::now() >= deadline {
                return Err(Error::UnservedFunction(why));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Live workers (heartbeat within the last 30 s), as they describe themselves.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        Ok(self.inner.store.workers(Duration::from_secs(30)).await?)
    }

    /// The most recent task errors, newest first (`{key, type, message}`).
    pub async fn recent_errors(&self, n: usize) -> Result<Vec<RecentError>, Error> {
        Ok(self.inner.store.recent_errors(n).await?)
    }

    /// What the client can see of the stack serving the namespace, for
    /// saying why a wait does not move ([`crate::stall::diagnose`]).
    pub async fn health(&self) -> Result<crate::stall::Health, Error> {
        let reports_waiting = self
            .queue_stats(&self.inner.topology.results_queue())
            .await
            .map_or(0, |(ready, _)| ready);
        Ok(crate::stall::Health {
            schedulers: self.scheduler_count().await,
            reports_waiting,
            workers: self.workers().await?.len(),
        })
    }

    /// Acts on the namespace's dead letters (`<ns>.dead`): lists them, or
    /// replays or purges the selected ones; returns every one seen and the
    /// ids acted on (see [`crate::dead`]).
    pub async fn dead_letters(
        &self,
        selection: &crate::dead::Selection,
        action: &crate::dead::Action,
    ) -> Result<(Vec<crate::dead::DeadLetter>, Vec<String>), Error> {
        let ch = amqp::confirm_channel(&self.link().conn).await?;
        let queue = self.inner.topology.dead_queue();
        let done = crate::dead::act(&ch, &queue, selection, action).await;
        let _ = ch.close(200, "done".into()).await;
        done
    }

    /// Counters and queue depths of the namespace, with each work queue's
    /// outbox: the runnable tasks a scheduler holds back in Redis until the
    /// queue has room (the backlog that RabbitMQ's own counts cannot show).
    pub async fn info(&self) -> Result<Info, Error> {
        let stats = self.inner.store.stats().await?;
        let topo = &self.inner.topology;
        let mut rows: Vec<(String, Option<String>)> =
            vec![(topo.submit_queue(), None), (topo.results_queue(), None)];
        for q in self.inner.store.work_queues().await? {
            rows.push((topo.work_queue(&q), Some(q)));
        }
        rows.push((topo.killed_queue(), None));
        rows.push((topo.dead_queue(), None));
        let mut queues = Vec::with_capacity(rows.len());
        for (name, work_queue) in rows {
            // A work queue nobody declared yet simply has nothing in it.
            let (ready, consumers) = self.queue_stats(&name).await.unwrap_or((0, 0));
            let outbox = match work_queue {
                Some(q) => Some(self.inner.store.outbox_len(&q).await?),
                None => None,
            };
            queues.push(QueueInfo {
                name,
                ready,
                consumers,
                outbox,
            });
        }
        let (scheduled, next_due_ms) = self.inner.store.delayed().await?;
        let schedules = self.inner.store.list_schedules().await?;
        let limits = self.inner.store.limits().await?;
        Ok(Info {
            stats,
            queues,
            scheduled,
            next_due_ms,
            schedules: schedules.len(),
            paused: schedules.iter().filter(|s| s.next_ms.is_none()).count(),
            limits,
        })
    }
}

/// What [`Client::info`] reports.
#[derive(Debug, Clone)]
pub struct Info {
    /// `submitted`, and final transitions per state (`finished`, `error`,
    /// `cancelled`), `retried`; [`Stats::pending`] is what is still to do.
    pub stats: Stats,
    /// Every queue of the namespace.
    pub queues: Vec<QueueInfo>,
    /// Tasks waiting in Redis for their due time (a delay, a due time, a
    /// retry's pause).
    pub scheduled: u64,
    /// When the first of them is due (Unix ms).
    pub next_due_ms: Option<u64>,
    /// Periodic schedules, and how many of them are paused.
    pub schedules: usize,
    /// Paused schedules.
    pub paused: usize,
    /// Global rate limits and concurrency limits.
    pub limits: warren_core::store::throttle::Limits,
}

/// One queue in [`Info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The RabbitMQ queue's name.
    pub name: String,
    /// Messages ready in RabbitMQ (not those delivered and unacknowledged).
    pub ready: u32,
    /// Consumers: schedulers on the submit and results queues, workers on
    /// a work queue.
    pub consumers: u32,
    /// For a work queue, the runnable tasks waiting in its outbox in Redis.
    pub outbox: Option<u64>,
}

/// Global rate limits and concurrency limits (`warren limits`).
impl Client {
    /// Sets (or replaces) the rate limit of a function or a work queue.
    pub async fn set_rate_limit(
        &self,
        target: &warren_core::store::throttle::RateTarget,
        rate: warren_core::timing::Rate,
    ) -> Result<(), Error> {
        Ok(self.inner.store.set_rate_limit(target, rate).await?)
    }

    /// Sets (or replaces) the most running tasks of a concurrency key or a
    /// `prefix*` pattern.
    pub async fn set_concurrency_limit(&self, pattern: &str, max: u32) -> Result<(), Error> {
        Ok(self.inner.store.set_concurrency_limit(pattern, max).await?)
    }

    /// Removes a rate limit; whether there was one.
    pub async fn remove_rate_limit(
        &self,
        target: &warren_core::store::throttle::RateTarget,
    ) -> Result<bool, Error> {
        Ok(self.inner.store.remove_rate_limit(target).await?)
    }

    /// Removes a concurrency limit; whether there was one.
    pub async fn remove_concurrency_limit(&self, pattern: &str) -> Result<bool, Error> {
        Ok(self.inner.store.remove_concurrency_limit(pattern).await?)
    }

    /// Every limit of the namespace.
    pub async fn limits(&self) -> Result<warren_core::store::throttle::Limits, Error> {
        Ok(self.inner.store.limits().await?)
    }
}

//! Submitting: `submit` and `map` return at once; their specs join an
//! in-order outgoing list that a background task publishes in batches
//! ([`super::batching`]), and [`Client::flush`] waits until every batch is
//! confirmed by RabbitMQ and recorded by a scheduler.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tracing::warn;
use warren_core::message_limit::refused_for_size;
use warren_core::messages::{ClientRequest, PROTOCOL_VERSION, Refusal, TaskSpec};
use warren_core::{amqp, args, taskkey};

use super::Client;
use super::batching::{self, Batch};
use crate::error::Error;
use crate::future::Future;

/// Tasks per submit message at most.
const SUBMIT_CHUNK: usize = 1000;
/// How often to say that a submission is still not acknowledged.
const ACK_NAG_EVERY: Duration = Duration::from_secs(5);
/// Submit messages in flight (unconfirmed or unrecorded) before a submit
/// waits for them: bounds what an error can leave unreported.
const MAX_IN_FLIGHT: usize = 256;

/// A submit message in flight, kept to be published again on a new link
/// (see [`super::link`]).
pub(super) struct Sent {
    body: Vec<u8>,
    /// The batch id whose acknowledgement is awaited (`None`: detached).
    batch: Option<String>,
}

/// The submit message of as many of `rest`'s first tasks as fit `limit`
/// (at most a chunk), as batch `batch`; `deps_in_flight(n)` says whether the
/// first `n` depend on a future still in flight. A first task too big alone
/// is `PayloadTooLarge`, naming `setting`.
fn next_submit(
    rest: &[TaskSpec],
    batch: &str,
    (limit, setting): (usize, &'static str),
    deps_in_flight: impl Fn(usize) -> bool,
) -> Result<(usize, Vec<u8>), Error> {
    let encode = |n: usize| {
        serde_json::to_vec(&ClientRequest::Submit {
            v: PROTOCOL_VERSION,
            batch: batch.to_string(),
            tasks: rest[..n].to_vec(),
            deps_in_flight: deps_in_flight(n),
        })
    };
    match batching::next_batch(rest.len(), SUBMIT_CHUNK, limit, encode)? {
        Batch::Fits { n, body } => Ok((n, body)),
        Batch::TooLarge { size } => Err(Error::PayloadTooLarge {
            setting,
            size,
            limit,
            key: rest[0].key.clone(),
        }),
    }
}

impl Error {
    /// Whether publishing the same messages again may succeed: the
    /// connection went (lapin fails a closed channel's pending confirms with
    /// an AMQP error), or the broker refused them (a nack: what a quorum
    /// queue whose leader just died answers until it has a new one).
    fn is_worth_republishing(&self) -> bool {
        self.is_nack()
            || matches!(
                self,
                Error::Disconnected | Error::Core(warren_core::Error::Amqp(_))
            )
    }

    /// Whether RabbitMQ refused a publish (a negative confirm).
    pub(super) fn is_nack(&self) -> bool {
        matches!(self, Error::Core(warren_core::Error::Nacked(_)))
    }
}

/// Options of [`Client::submit_with`] and [`Client::map_with`].
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// An explicit key (submit only).
    pub key: Option<String>,
    /// Same function and arguments give the same key, and resubmitting returns
    /// the existing future (dask's `pure=True`, the default).
    pub pure: bool,
    /// The work queue; `None` picks the function's own
    /// ([`warren_core::routing::default_queue_for`]: `python` for a Python
    /// `module:function`, `default` otherwise).
    pub queue: Option<String>,
    /// Times to run a task again after it fails (dask's `retries=`); the final
    /// error lists every attempt's error in `previous`.
    pub retries: u32,
    /// Seconds a task may run before it fails with `TimeoutError`.
    pub timeout_secs: Option<f64>,
    /// Higher runs first among the ready tasks of its queue (dask's
    /// `priority=`); from -1,000,000 to 1,000,000, default 0.
    pub priority: i64,
    /// Run no sooner than this long after a scheduler records the task
    /// (Celery's `countdown`); it waits in Redis, `scheduled`, until then.
    pub delay: Option<std::time::Duration>,
    /// Run no sooner than this time (Unix ms; Celery's `eta`).
    pub at_ms: Option<u64>,
    /// How a failure waits before the next of its `retries` (backoff,
    /// jitter, which error types); `None`: at once, for any error.
    pub retry: Option<warren_core::timing::RetryPolicy>,
    /// The task's concurrency key: at most the limit `warren limits set
    /// --key` gives it of the tasks sharing it run at once, cluster-wide.
    pub concurrency_key: Option<String>,
    /// Fire and forget: no scheduler acknowledgement is asked for and the
    /// futures are not watched; [`Client::flush`] then waits only for RabbitMQ's
    /// confirm. The tasks run all the same.
    pub detach: bool,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            key: None,
            pure: true,
            queue: None,
            retries: 0,
            timeout_secs: None,
            priority: 0,
            delay: None,
            at_ms: None,
            retry: None,
            concurrency_key: None,
            detach: false,
        }
    }
}

impl SubmitOptions {
    /// The work queue of `func`'s tasks under these options.
    pub fn queue_for(&self, func: &str) -> String {
        self.queue
            .clone()
            .unwrap_or_else(|| warren_core::routing::default_queue_for(func))
    }
}

impl Client {
    /// Waits until every submission made so far is confirmed by RabbitMQ and
    /// recorded by a scheduler, and returns the first error among them.
    ///
    /// `submit` and `map` return at once (their requests are published in the
    /// background, back-to-back ones together), so a dependent chain of
    /// submits costs no round trip each (as in dask, where `submit` returns at
    /// once). This publishes what is still waiting first. Everything that reads
    /// state (`result`, `gather`, `wait`, `status`, `cancel`, ...) flushes
    /// first; call this before exiting a program that only submits.
    pub async fn flush(&self) -> Result<(), Error> {
        self.publish_outgoing().await?;
        let failed = self
            .inner
            .publish_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(e) = failed {
            return Err(e);
        }
        let _one_at_a_time = self.inner.flushing.lock().await;
        let mut pending = std::mem::take(
            &mut *self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if pending.confirms.is_empty() {
            return Ok(());
        }
        let deadline = self.request_deadline();
        let mut relinks = 0;
        loop {
            // Confirms first: only a confirmed request is safe in RabbitMQ,
            // so the wait for a scheduler must not start (or speak) before it.
            let confirms = std::mem::take(&mut pending.confirms);
            let done = match self.await_confirms(confirms, pending.tasks, deadline).await {
                Ok(()) => {
                    let acks = std::mem::take(&mut pending.acks);
                    self.await_acks(acks, pending.tasks, deadline).await
                }
                Err(e) => Err(e),
            };
            // RabbitMQ closed the channel over a message bigger than its
            // max_message_size: learn the limit, and publish the same
            // tasks again in messages that fit it.
            let too_big = match &done {
                Err(e) => refused_for_size(&e.to_string()),
                Ok(()) => None,
            };
            if let Some(max) = too_big {
                self.inner.topology.message_limit().learn(max);
                if let Err(e) = self
                    .inner
                    .store
                    .sync_message_limit(self.inner.topology.message_limit())
                    .await
                {
                    warn!(error = %e, "could not keep RabbitMQ's message limit in Redis");
                }
                pending.sent = self.rebatched(std::mem::take(&mut pending.sent))?;
            }
            match done {
                Err(e) if e.is_worth_republishing() && relinks < super::link::RELINKS => {
                    relinks += 1;
                    warn!(
                        namespace = %self.inner.settings.namespace,
                        error = %e,
                        attempt = relinks,
                        "submissions not confirmed; publishing them again on a new connection"
                    );
                    // Which confirm failed is not known, so blame the oldest
                    // link these went out on: if it was replaced already,
                    // this replaces nothing and the next try (all on the
                    // current link) blames the current one.
                    let failed = pending.oldest_generation.take();
                    if let Some(failed) = failed {
                        self.recover(failed, relinks).await?;
                    }
                    // All of this flush again, in order: what a scheduler
                    // recorded already it records as a no-op.
                    let sent = std::mem::take(&mut pending.sent);
                    for m in &sent {
                        let generation = self.link().generation;
                        let ack = m
                            .batch
                            .as_ref()
                            .map(|b| self.inner.events.expect_batch(b, generation));
                        let (confirm, sent_on) = self.publish(&m.body, m.batch.is_some()).await?;
                        pending.confirms.push(confirm);
                        pending.published_on(sent_on);
                        pending.acks.extend(ack);
                    }
                    pending.sent = sent;
                }
                done => return done,
            }
        }
    }

    /// Submits `func(args...)`; `args` serializes to a JSON array (a tuple such
    /// as `(5,)` or `(&f1, &f2)`, or a `Vec`). Futures inside make a DAG.
    pub async fn submit<A: Serialize>(&self, func: &str, args: A) -> Result<Future, Error> {
        self.submit_with(func, args, &SubmitOptions::default())
            .await
    }

    /// [`Client::submit`] with options.
    pub async fn submit_with<A: Serialize>(
        &self,
        func: &str,
        args: A,
        opts: &SubmitOptions,
    ) -> Result<Future, Error> {
        let args = match serde_json::to_value(args)? {
            Value::Array(a) => a,
            // `()`: no arguments.
            Value::Null => Vec::new(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "arguments must be a tuple or list of positional arguments, got {other}; write (x,) for one argument"
                )));
            }
        };
        let spec = self.spec(func, args, opts, opts.key.clone())?;
        let key = spec.key.clone();
        self.submit_specs(vec![spec], opts.detach).await?;
        Ok(self.future(&key))
    }

    /// One task per item, each item the single argument (dask's `map`).
    pub async fn map<I, T>(&self, func: &str, items: I) -> Result<Vec<Future>, Error>
    where
        I: IntoIterator<Item = T>,
        T: Serialize,
    {
        let arg_lists = items
            .into_iter()
            .map(|i| Ok(vec![serde_json::to_value(i)?]))
            .collect::<Result<Vec<_>, Error>>()?;
        self.map_with(func, arg_lists, &SubmitOptions::default())
            .await
    }

    /// One task per argument list, with options (`key` is ignored).
    pub async fn map_with(
        &self,
        func: &str,
        arg_lists: Vec<Vec<Value>>,
        opts: &SubmitOptions,
    ) -> Result<Vec<Future>, Error> {
        let specs = arg_lists
            .into_iter()
            .map(|a| self.spec(func, a, opts, None))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = specs.iter().map(|s| s.key.clone()).collect();
        self.submit_specs(specs, opts.detach).await?;
        Ok(keys.iter().map(|k| self.future(k)).collect())
    }

    /// [`Client::map_with`] with a key per task where one is given (a
    /// client that computes its own keys, as the Python client does).
    pub async fn map_with_keys(
        &self,
        func: &str,
        calls: Vec<(Vec<Value>, Option<String>)>,
        opts: &SubmitOptions,
    ) -> Result<Vec<Future>, Error> {
        let specs = calls
            .into_iter()
            .map(|(a, key)| self.spec(func, a, opts, key))
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = specs.iter().map(|s| s.key.clone()).collect();
        self.submit_specs(specs, opts.detach).await?;
        Ok(keys.iter().map(|k| self.future(k)).collect())
    }

    pub(super) fn spec(
        &self,
        func: &str,
        args: Vec<Value>,
        opts: &SubmitOptions,
        key: Option<String>,
    ) -> Result<TaskSpec, Error> {
        // The function name first: a bad one would make a bad pure key too.
        taskkey::validate_key(func)
            .map_err(|e| Error::InvalidArgument(format!("function name: {e}")))?;
        let key = match key {
            Some(k) => k,
            None if opts.pure => taskkey::pure_key(func, &args),
            None => taskkey::random_key(func),
        };
        let spec = TaskSpec {
            deps: args::dependencies(&args),
            key,
            func: func.to_string(),
            args,
            queue: opts.queue_for(func),
            retries: opts.retries,
            timeout_secs: opts.timeout_secs,
            priority: opts.priority,
            delay_ms: opts
                .delay
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            at_ms: opts.at_ms,
            retry: opts.retry.clone(),
            concurrency_key: opts.concurrency_key.clone(),
        };
        // The scheduler's own rules: what passes here is never refused there.
        spec.validate(&self.inner.settings.namespace)
            .map_err(Error::InvalidArgument)?;
        Ok(spec)
    }

    /// Publishes specs in batches; [`Client::flush`] (called by everything
    /// that reads state) waits until they are recorded. A scheduler records a
    /// client's batches in the order they were published, and one that meets
    /// a dependency still in flight waits for it, so a task may depend on a
    /// future submitted just before.
    pub(super) async fn submit_specs(
        &self,
        specs: Vec<TaskSpec>,
        detach: bool,
    ) -> Result<(), Error> {
        let waiting = {
            let mut outgoing = self
                .inner
                .outgoing
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            outgoing.extend(specs.into_iter().map(|s| (s, detach)));
            outgoing.len()
        };
        if waiting >= SUBMIT_CHUNK {
            // A big map: publish now, so memory and the broker keep pace.
            self.publish_outgoing().await?;
        } else if !self.inner.publish_scheduled.swap(true, Ordering::AcqRel) {
            // Like dask's batched sends: submits made back to back (a loop
            // building a chain) leave together as one message, published as
            // soon as the caller lets the runtime run anything else.
            let client = self.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                client.publish_outgoing_in_background().await;
            });
        }
        let backlog = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .confirms
            .len();
        if backlog >= MAX_IN_FLIGHT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Publishes every submission not yet published, in order, in batches of
    /// at most [`SUBMIT_CHUNK`] tasks and `max_payload_bytes`.
    pub(super) async fn publish_outgoing(&self) -> Result<(), Error> {
        let _in_order = self.inner.publishing.lock().await;
        self.publish_outgoing_locked().await
    }

    /// [`Self::publish_outgoing`] for the task `submit` spawns: its failure
    /// is kept for the next `flush`, and kept *before* the publishing lock
    /// is released. A flush waiting on that lock finds nothing left to
    /// publish, so it must find the error instead: recorded after the
    /// release, a CI run saw the flush win the race, and `warren submit`
    /// printed the key of a task it never sent (exit 0 on a payload over
    /// `max_payload_bytes`).
    async fn publish_outgoing_in_background(&self) {
        let _in_order = self.inner.publishing.lock().await;
        if let Err(e) = self.publish_outgoing_locked().await {
            let mut failed = self
                .inner
                .publish_error
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert(e);
        }
    }

    /// The body of [`Self::publish_outgoing`]; the caller holds the
    /// publishing lock.
    async fn publish_outgoing_locked(&self) -> Result<(), Error> {
        self.inner.publish_scheduled.store(false, Ordering::Release);
        let specs = std::mem::take(
            &mut *self
                .inner
                .outgoing
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        // Consecutive submissions of the same kind share a batch.
        for run in batching::runs(&specs, |(_, detach)| *detach) {
            let tasks: Vec<TaskSpec> = run.iter().map(|(t, _)| t.clone()).collect();
            self.publish_batches(&tasks, run[0].1).await?;
        }
        Ok(())
    }

    /// The largest submit message, and which limit it is: the setting
    /// `max_payload_bytes`, or RabbitMQ's `max_message_size` once a refused
    /// publish (here or in any process of the namespace) told it and it is
    /// lower.
    fn submit_limit(&self) -> (usize, &'static str) {
        let payload = self.inner.settings.max_payload_bytes;
        match self.inner.topology.message_limit().broker() {
            Some(broker) if broker < payload => (broker, "RabbitMQ's max_message_size"),
            _ => (payload, "setting max_payload_bytes"),
        }
    }

    /// After RabbitMQ refused a submit for its size (and the client learned
    /// its limit): the messages of `sent` again, those over the limit split
    /// into smaller ones, each with its own batch. A single task too big
    /// alone is its error, naming the broker's limit.
    fn rebatched(&self, sent: Vec<Sent>) -> Result<Vec<Sent>, Error> {
        let (limit, setting) = self.submit_limit();
        let mut out = Vec::with_capacity(sent.len());
        for m in sent {
            if m.body.len() <= limit {
                out.push(m);
                continue;
            }
            let Ok(ClientRequest::Submit {
                tasks,
                deps_in_flight,
                ..
            }) = serde_json::from_slice::<ClientRequest>(&m.body)
            else {
                out.push(m);
                continue;
            };
            let mut rest = &tasks[..];
            while !rest.is_empty() {
                let batch = uuid::Uuid::new_v4().simple().to_string();
                let (n, body) = next_submit(rest, &batch, (limit, setting), |_| deps_in_flight)?;
                out.push(Sent {
                    body,
                    batch: m.batch.is_some().then_some(batch),
                });
                rest = &rest[n..];
            }
        }
        Ok(out)
    }

    /// Publishes `specs` as submit batches and records them as in flight.
    pub(super) async fn publish_batches(
        &self,
        specs: &[TaskSpec],
        detach: bool,
    ) -> Result<(), Error> {
        let (limit, setting) = self.submit_limit();
        let mut rest = specs;
        while !rest.is_empty() {
            let batch = uuid::Uuid::new_v4().simple().to_string();
            let (n, body) = next_submit(rest, &batch, (limit, setting), |n| {
                let in_flight = self
                    .inner
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                rest[..n]
                    .iter()
                    .any(|t| t.deps.iter().any(|d| in_flight.keys.contains(d)))
            })?;
            let generation = self.link().generation;
            let ack = (!detach).then(|| self.inner.events.expect_batch(&batch, generation));
            let (confirm, sent_on) = self.publish(&body, !detach).await?;
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            in_flight.sent.push(Sent {
                body,
                batch: (!detach).then_some(batch),
            });
            in_flight.confirms.push(confirm);
            in_flight.published_on(sent_on);
            in_flight.acks.extend(ack);
            in_flight.tasks += n;
            in_flight
                .keys
                .extend(rest[..n].iter().map(|t| t.key.clone()));
            drop(in_flight);
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Waits for RabbitMQ's confirms of published requests, up to `deadline`.
    pub(super) async fn await_confirms(
        &self,
        confirms: Vec<amqp::PublisherConfirm>,
        items: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), Error> {
        if confirms.is_empty() {
            return Ok(());
        }
        let submit_queue = self.inner.topology.submit_queue();
        let all = amqp::confirmed(confirms, &submit_queue);
        tokio::pin!(all);
        loop {
            let nag = (tokio::time::Instant::now() + ACK_NAG_EVERY).min(deadline);
            match tokio::time::timeout_at(nag, &mut all).await {
                Ok(r) => return Ok(r?),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::NotConfirmed {
                        items,
                        queue: submit_queue.clone(),
                        secs: self.inner.settings.request_timeout_secs,
                        alarm: self.link().blocked.reason(),
                    });
                }
                Err(_) => match self.link().blocked.reason() {
                    Some(reason) => warn!(
                        items,
                        queue = %submit_queue,
                        %reason,
                        "RabbitMQ has blocked publishing (a resource alarm): the request is NOT safe until it is confirmed"
                    ),
                    None => warn!(
                        items,
                        queue = %submit_queue,
                        "RabbitMQ has not confirmed the request yet: it is NOT safe until it does (is the broker blocked by a memory or disk alarm?)"
                    ),
                },
            }
        }
    }

    /// Waits for the scheduler's acknowledgements of confirmed requests, up
    /// to `deadline`, saying every few seconds why it is still waiting.
    pub(super) async fn await_acks(
        &self,
        acks: Vec<tokio::sync::oneshot::Receiver<Vec<Refusal>>>,
        items: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), Error> {
        for mut ack in acks {
            loop {
                let nag = (tokio::time::Instant::now() + ACK_NAG_EVERY).min(deadline);
                match tokio::time::timeout_at(nag, &mut ack).await {
                    Ok(Ok(refused)) if refused.is_empty() => break,
                    Ok(Ok(refused)) => {
                        let first = &refused[0];
                        return Err(Error::Refused {
                            count: refused.len(),
                            key: first.key.clone(),
                            reason: first.reason.clone(),
                        });
                    }
                    Ok(Err(_)) => return Err(Error::Disconnected),
                    Err(_) => {
                        let consumers = self.submit_consumers().await;
                        if tokio::time::Instant::now() >= deadline {
                            return Err(Error::NoScheduler {
                                items,
                                namespace: self.inner.settings.namespace.clone(),
                                queue: self.inner.topology.submit_queue(),
                                consumers,
                                secs: self.inner.settings.request_timeout_secs,
                            });
                        }
                        warn!(
                            items,
                            namespace = %self.inner.settings.namespace,
                            "{}",
                            crate::error::scheduler_hint(&self.inner.topology.submit_queue(), consumers)
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

//! The client: submit work, wait for it, restart.
//!
//! Submissions go to the scheduler through the durable `<ns>.submit` queue, in
//! batches (a `map` of 10,000 tasks is ten messages). `submit` and `map` return
//! at once: their specs join an in-order outgoing list, published by a
//! background task as soon as the caller lets the runtime run anything else,
//! so submits made back to back leave as one message (like dask's
//! `BatchedSend`). Nothing waits for the broker's confirm or the scheduler's
//! ack, so a chain of dependent submits pays no round trip per link. [`Client::flush`] waits until every
//! submission so far is confirmed by RabbitMQ and recorded by a scheduler, and
//! returns the first error. Everything that reads state flushes first
//! (`outcomes`, `gather`, `result`, `as_completed`, `wait`, `states`, `status`,
//! `exists`, `cancel`, `forget`, `restart`), so a future the caller reads
//! always exists. With 256 submit messages in flight, a submit flushes too. A
//! program that only submits must call `flush` before it exits. With `detach`
//! nothing waits for the scheduler; `flush` still waits for the broker's
//! confirm.
//!
//! Results arrive as events on the client's reply queue; status reads go
//! straight to Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde::Serialize;
use serde_json::Value;
use tracing::warn;
use warren_core::messages::{
    ClientEvent, ClientRequest, PROTOCOL_VERSION, TaskSpec, Terminal, WorkerInfo,
};
use warren_core::status::State;
use warren_core::store::{Forgotten, Store, Watched};
use warren_core::topology::Topology;
use warren_core::{Settings, amqp, args, taskkey};

use crate::error::Error;
use crate::events::Events;
use crate::future::{Future, into_value};

/// Tasks per submit message at most.
const SUBMIT_CHUNK: usize = 1000;
/// Keys per Redis `watch` call.
const WATCH_CHUNK: usize = 1000;
/// How long a waiter trusts events alone before asking Redis again.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How often to say that a submission is still not acknowledged.
const ACK_NAG_EVERY: Duration = Duration::from_secs(5);
/// Submit messages in flight (unconfirmed or unrecorded) before a submit
/// waits for them: bounds what an error can leave unreported.
const MAX_IN_FLIGHT: usize = 256;

/// How long a key Redis does not know is asked about again before it is an
/// unknown future, whatever the submit queue holds: a scheduler records a
/// batch within milliseconds of taking it.
const UNKNOWN_GRACE: Duration = Duration::from_secs(1);
/// How often an unknown key is asked about again.
const UNKNOWN_RETRY: Duration = Duration::from_millis(100);

/// Whether a key Redis does not know is worth waiting for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It may still be on its way to a scheduler.
    Wait,
    /// It is not a future of this namespace.
    Unknown,
}

/// A key unknown for `elapsed` is waited for during [`UNKNOWN_GRACE`], and
/// beyond it only while submissions are still being recorded (`busy`: the
/// submit queue holds requests, or the namespace's submitted counter grows),
/// up to `limit` (`request_timeout_secs`).
fn unknown_verdict(elapsed: Duration, busy: bool, limit: Duration) -> Verdict {
    if elapsed < UNKNOWN_GRACE || (busy && elapsed < limit) {
        Verdict::Wait
    } else {
        Verdict::Unknown
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
    /// The work queue.
    pub queue: String,
    /// Times to run a task again after it fails (dask's `retries=`); the final
    /// error lists every attempt's error in `previous`.
    pub retries: u32,
    /// Seconds a task may run before it fails with `TimeoutError`.
    pub timeout_secs: Option<f64>,
    /// Higher runs first among the ready tasks of its queue (dask's
    /// `priority=`); from -1,000,000 to 1,000,000, default 0.
    pub priority: i64,
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
            queue: warren_core::messages::default_queue(),
            retries: 0,
            timeout_secs: None,
            priority: 0,
            detach: false,
        }
    }
}

/// What a restart did.
#[derive(Debug, Clone)]
pub struct RestartReport {
    /// The namespace's new epoch.
    pub epoch: u64,
    /// Workers consuming the default queue when the restart began.
    pub workers_expected: u32,
    /// Workers that confirmed they dropped their old work.
    pub workers_ready: Vec<String>,
}

/// A connection to a warren namespace. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    topology: Topology,
    _conn: Connection,
    /// Whether RabbitMQ blocks this connection's publishes (an alarm).
    blocked: amqp::Blocked,
    publish: Channel,
    store: Store,
    reply_queue: String,
    events: Arc<Events>,
    in_flight: std::sync::Mutex<InFlight>,
    /// Held while a flush awaits: a second flush waits for the first, so a
    /// flush that returns covers every submission made before it was called.
    flushing: tokio::sync::Mutex<()>,
    /// Submissions not yet published, in order, each with its `detach`.
    outgoing: std::sync::Mutex<Vec<(TaskSpec, bool)>>,
    /// Held while `outgoing` is published, so batches leave in order.
    publishing: tokio::sync::Mutex<()>,
    /// A background publish of `outgoing` is on its way.
    publish_scheduled: std::sync::atomic::AtomicBool,
    /// The first error of a background publish, for the next flush.
    publish_error: std::sync::Mutex<Option<Error>>,
}

/// Submissions published but not yet known to be recorded by a scheduler.
#[derive(Default)]
struct InFlight {
    confirms: Vec<amqp::PublisherConfirm>,
    acks: Vec<tokio::sync::oneshot::Receiver<Vec<warren_core::messages::Refusal>>>,
    tasks: usize,
    /// Keys of the tasks in those submissions.
    keys: std::collections::HashSet<String>,
}

impl Client {
    /// Connects to RabbitMQ and Redis and opens this client's reply queue.
    pub async fn connect(settings: Settings) -> Result<Self, Error> {
        settings.validate()?;
        let topology = Topology::from_settings(&settings);
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("warren-client {host}:{}", std::process::id());
        let (conn, blocked) = amqp::connect_watched(&settings, &name).await?;
        let store = Store::connect(&settings).await?;
        let setup = conn.create_channel().await?;
        topology.declare(&setup, &[]).await?;
        let publish = amqp::confirm_channel(&conn).await?;
        let consume = conn.create_channel().await?;
        let tag = format!("warren-client@{host}:{}", std::process::id());
        let (reply_queue, consumer) = amqp::private_queue(&consume, None, &tag).await?;
        let events = Arc::new(Events::default());
        let ev = events.clone();
        tokio::spawn(async move { ev.consume(consumer).await });
        Ok(Self {
            inner: Arc::new(Inner {
                reply_queue,
                settings,
                topology,
                _conn: conn,
                blocked,
                publish,
                store,
                events,
                in_flight: std::sync::Mutex::new(InFlight::default()),
                flushing: tokio::sync::Mutex::new(()),
                outgoing: std::sync::Mutex::new(Vec::new()),
                publishing: tokio::sync::Mutex::new(()),
                publish_scheduled: std::sync::atomic::AtomicBool::new(false),
                publish_error: std::sync::Mutex::new(None),
            }),
        })
    }

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
        let pending = std::mem::take(
            &mut *self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if pending.confirms.is_empty() {
            return Ok(());
        }
        // Confirms first: only a confirmed request is safe in RabbitMQ, so
        // the wait for a scheduler must not start (or speak) before it.
        let deadline = self.request_deadline();
        self.await_confirms(pending.confirms, pending.tasks, deadline)
            .await?;
        self.await_acks(pending.acks, pending.tasks, deadline).await
    }

    /// When a request made now must have been confirmed and answered.
    fn request_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
            + Duration::from_secs(self.inner.settings.request_timeout_secs.max(1))
    }

    /// How many futures this client keeps an entry for (final futures are
    /// released once they have been awaited).
    pub fn tracked(&self) -> usize {
        self.inner.events.len()
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// A handle on an existing future (e.g. a key printed by `warren submit`).
    pub fn future(&self, key: &str) -> Future {
        Future::new(key.to_string(), self.clone())
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
    async fn refresh(
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
        loop {
            let mut unknown = Vec::new();
            for chunk in pending.chunks(WATCH_CHUNK) {
                let seen = self
                    .inner
                    .store
                    .watch(&self.inner.reply_queue, chunk)
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
            let submitted = self.inner.store.stats().await?.get("submitted").copied();
            let recording = recorded.is_some_and(|before| submitted != Some(before));
            recorded = submitted;
            let busy = queued > 0 || recording;
            if unknown_verdict(started.elapsed(), busy, limit) == Verdict::Unknown {
                return Err(self.unknown(first));
            }
            tokio::time::sleep(UNKNOWN_RETRY).await;
            pending = unknown;
        }
    }

    /// Cancels every future, empties the queues and waits for the workers to
    /// drop their old work (dask's `restart`).
    pub async fn restart(&self) -> Result<RestartReport, Error> {
        self.flush().await?;
        let workers_expected = self.worker_count().await.unwrap_or(0);
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

    /// Workers consuming the default work queue (one consumer each).
    pub async fn worker_count(&self) -> Result<u32, Error> {
        Ok(self
            .queue_stats(&self.inner.topology.work_queue("default"))
            .await
            .map_or(0, |(_, consumers)| consumers))
    }

    fn unknown(&self, key: &str) -> Error {
        Error::UnknownFuture {
            key: key.to_string(),
            namespace: self.inner.settings.namespace.clone(),
        }
    }

    fn spec(
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
            queue: opts.queue.clone(),
            retries: opts.retries,
            timeout_secs: opts.timeout_secs,
            priority: opts.priority,
        };
        // The scheduler's own rules: what passes here is never refused there.
        spec.validate().map_err(Error::InvalidArgument)?;
        Ok(spec)
    }

    /// Publishes specs in batches; [`Client::flush`] (called by everything
    /// that reads state) waits until they are recorded. A scheduler records a
    /// client's batches in the order they were published, and one that meets
    /// a dependency still in flight waits for it, so a task may depend on a
    /// future submitted just before.
    async fn submit_specs(&self, specs: Vec<TaskSpec>, detach: bool) -> Result<(), Error> {
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
                if let Err(e) = client.publish_outgoing().await {
                    let mut failed = client
                        .inner
                        .publish_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    failed.get_or_insert(e);
                }
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
    async fn publish_outgoing(&self) -> Result<(), Error> {
        let _in_order = self.inner.publishing.lock().await;
        self.inner.publish_scheduled.store(false, Ordering::Release);
        let specs = std::mem::take(
            &mut *self
                .inner
                .outgoing
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut rest = specs.as_slice();
        while let Some((_, detach)) = rest.first() {
            // Consecutive submissions of the same kind share a batch.
            let run = rest.iter().take_while(|(_, d)| d == detach).count();
            let tasks: Vec<TaskSpec> = rest[..run].iter().map(|(t, _)| t.clone()).collect();
            self.publish_batches(&tasks, *detach).await?;
            rest = &rest[run..];
        }
        Ok(())
    }

    /// Publishes `specs` as submit batches and records them as in flight.
    async fn publish_batches(&self, specs: &[TaskSpec], detach: bool) -> Result<(), Error> {
        let limit = self.inner.settings.max_payload_bytes;
        let mut rest = specs;
        while !rest.is_empty() {
            let mut n = rest.len().min(SUBMIT_CHUNK);
            let (batch, body) = loop {
                let batch = uuid::Uuid::new_v4().simple().to_string();
                let deps_in_flight = {
                    let in_flight = self
                        .inner
                        .in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    rest[..n]
                        .iter()
                        .any(|t| t.deps.iter().any(|d| in_flight.keys.contains(d)))
                };
                let body = serde_json::to_vec(&ClientRequest::Submit {
                    v: PROTOCOL_VERSION,
                    batch: batch.clone(),
                    tasks: rest[..n].to_vec(),
                    deps_in_flight,
                })?;
                if body.len() <= limit {
                    break (batch, body);
                }
                if n == 1 {
                    return Err(Error::PayloadTooLarge {
                        size: body.len(),
                        limit,
                        key: rest[0].key.clone(),
                    });
                }
                n /= 2;
            };
            let ack = (!detach).then(|| self.inner.events.expect_batch(&batch));
            let confirm = self.publish(&body, !detach).await?;
            let mut in_flight = self
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            in_flight.confirms.push(confirm);
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
    async fn await_confirms(
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
                        alarm: self.inner.blocked.reason(),
                    });
                }
                Err(_) => match self.inner.blocked.reason() {
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
    async fn await_acks(
        &self,
        acks: Vec<tokio::sync::oneshot::Receiver<Vec<warren_core::messages::Refusal>>>,
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
        let ch = amqp::confirm_channel(&self.inner._conn).await?;
        let queue = self.inner.topology.dead_queue();
        let done = crate::dead::act(&ch, &queue, selection, action).await;
        let _ = ch.close(200, "done".into()).await;
        done
    }

    /// Schedulers serving this namespace (consumers of its submit queue).
    pub async fn scheduler_count(&self) -> u32 {
        self.submit_consumers().await.unwrap_or(0)
    }

    /// Schedulers consuming the submit queue, if RabbitMQ says.
    async fn submit_consumers(&self) -> Option<u32> {
        self.queue_stats(&self.inner.topology.submit_queue())
            .await
            .map(|(_, consumers)| consumers)
    }

    /// Ready messages and consumers of a queue; `None` if it does not exist
    /// (or RabbitMQ cannot say).
    async fn queue_stats(&self, name: &str) -> Option<(u32, u32)> {
        let ch = self.inner._conn.create_channel().await.ok()?;
        let opts = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare(name.into(), opts, FieldTable::default())
            .await
            .ok()?;
        let _ = ch.close(200, "done".into()).await;
        Some((q.message_count(), q.consumer_count()))
    }

    /// Publishes a request to the scheduler, with our reply queue if `reply`,
    /// and waits for the broker's confirm.
    async fn publish_request(&self, body: &[u8], reply: bool) -> Result<(), Error> {
        let confirm = self.publish(body, reply).await?;
        self.await_confirms(vec![confirm], 1, self.request_deadline())
            .await
    }

    /// Publishes a request to the scheduler; the caller awaits the confirm.
    async fn publish(&self, body: &[u8], reply: bool) -> Result<amqp::PublisherConfirm, Error> {
        let mut props = amqp::json_properties(&[]);
        if reply {
            props = props.with_reply_to(self.inner.reply_queue.as_str().into());
        }
        Ok(amqp::publish(
            &self.inner.publish,
            "",
            &self.inner.topology.submit_queue(),
            body,
            props,
        )
        .await?)
    }

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
        let ack = self.inner.events.expect_batch(&batch);
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
    async fn wait_one(
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
                    .watch(&self.inner.reply_queue, std::slice::from_ref(&key))
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
    pub async fn recent_errors(&self, n: usize) -> Result<Vec<Value>, Error> {
        Ok(self.inner.store.recent_errors(n).await?)
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
        Ok(Info { stats, queues })
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

/// What [`Client::info`] reports.
#[derive(Debug, Clone)]
pub struct Info {
    /// `submitted`, and final transitions per state (`finished`, `error`, `cancelled`), `retried`.
    pub stats: std::collections::BTreeMap<String, u64>,
    /// Every queue of the namespace.
    pub queues: Vec<QueueInfo>,
}

impl Info {
    /// One counter of [`Info::stats`], 0 if never counted.
    pub fn count(&self, name: &str) -> u64 {
        self.stats.get(name).copied().unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_waited_for_briefly_then_while_submits_are_queued() {
        let limit = Duration::from_secs(30);
        let ms = Duration::from_millis;
        assert_eq!(unknown_verdict(ms(0), false, limit), Verdict::Wait);
        assert_eq!(unknown_verdict(ms(900), false, limit), Verdict::Wait);
        assert_eq!(unknown_verdict(ms(1000), false, limit), Verdict::Unknown);
        assert_eq!(unknown_verdict(ms(5000), true, limit), Verdict::Wait);
        assert_eq!(unknown_verdict(ms(30_000), true, limit), Verdict::Unknown);
    }
}

//! Changing futures' states: every method here is one idempotent script (or
//! one atomic command), so a retry after a dropped connection is harmless.
//! A grep for where a state changes lands in these methods and their scripts.

use std::time::Duration;

use redis::{AsyncCommands, Value as RValue};

use super::encode::{self, Args};
use super::reply::{self, Reply};
use super::{ClaimList, Store};
use crate::error::{Error, Result};
use crate::messages::{TaskFailure, TaskSpec, Terminal};
use crate::status::State;

/// What a worker may do with a work message, from [`Store::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run it: this is start number `n` of its attempt (1 unless workers died
    /// running it before).
    Run(u32),
    /// Do not run it: cancelled, already final, forgotten, or retried since.
    Skip,
}

/// A terminal transition and the reply queues to tell about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The future's key.
    pub key: String,
    /// Its final state.
    pub terminal: Terminal,
    /// Reply queues of the clients watching it.
    pub watchers: Vec<String>,
}

/// What a state-changing script did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Tasks that became runnable (pushed to the outbox).
    pub queued: u64,
    /// Clients to notify.
    pub notifications: Vec<Notification>,
}

/// What [`Store::submit_eager`] did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Tasks that became runnable, and clients to notify.
    pub applied: Applied,
    /// Keys left unrecorded: a dependency is not known yet (with `defer`).
    pub deferred: Vec<String>,
    /// The current epoch (for the work message of a claimed task).
    pub epoch: u64,
    /// The task claimed onto the list, if any: publish it, then release.
    pub claimed: Vec<ClaimedTask>,
}

/// A report to apply with [`Store::complete`].
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The task ended.
    Terminal(Terminal),
    /// The task's function failed on `attempt`: retried if it has retries
    /// left, else final (with every attempt's error).
    Failed {
        /// The error.
        error: TaskFailure,
        /// Which attempt failed; a report of an older attempt is ignored.
        attempt: u32,
    },
    /// A worker has been running it for a while.
    Processing,
}

/// A runnable task claimed from the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The future's key.
    pub key: String,
    /// Registered function name.
    pub func: String,
    /// Work queue name.
    pub queue: String,
    /// Arguments as JSON text, futures still as references.
    pub args: String,
    /// 0 for the first run, one more per retry.
    pub attempt: u32,
    /// Seconds the task may run, if limited.
    pub timeout_secs: Option<f64>,
    /// Its priority (higher first).
    pub priority: i64,
    /// Each dependency's key and value (JSON text), `None` if it has none any more.
    pub deps: Vec<(String, Option<String>)>,
}

/// What [`Store::forget`] did with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// Deleted.
    Forgotten,
    /// Not final: left alone.
    Pending,
    /// No such future.
    Unknown,
}

/// One future's state as [`Store::watch`] found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// No such future.
    Unknown,
    /// Not done; the watcher (if any) is registered.
    Pending(State),
    /// Done.
    Done(Terminal),
}

impl Store {
    /// Records submitted tasks; `reply_to` (if any) watches them all. A
    /// dependency Redis does not know fails its dependent with `UnknownFuture`.
    pub async fn submit(&self, reply_to: Option<&str>, tasks: &[TaskSpec]) -> Result<Applied> {
        Ok(self
            .submit_eager(reply_to, tasks, false, None)
            .await?
            .applied)
    }

    /// Like [`Store::submit`], but a task with a dependency Redis does not
    /// know yet is left unrecorded and its key returned, to be submitted again
    /// once the dependency's own batch had time to arrive.
    pub async fn submit_deferring(
        &self,
        reply_to: Option<&str>,
        tasks: &[TaskSpec],
    ) -> Result<(Applied, Vec<String>)> {
        let s = self.submit_eager(reply_to, tasks, true, None).await?;
        Ok((s.applied, s.deferred))
    }

    /// [`Store::submit`] (or, with `defer`, [`Store::submit_deferring`]) that
    /// also claims onto `list` a task it makes runnable alone while nothing
    /// else waits in its outbox (a lone submit), as [`Store::complete_eager`]
    /// does for the next link of a chain.
    pub async fn submit_eager(
        &self,
        reply_to: Option<&str>,
        tasks: &[TaskSpec],
        defer: bool,
        list: Option<&ClaimList>,
    ) -> Result<Submitted> {
        let owner = list.map(ClaimList::as_str);
        let args = encode::submit(self.prefix(), reply_to, self.ttl, tasks, defer, owner)?;
        let mut r = Reply::new(self.run(&self.scripts.submit, args).await?)?;
        let (queued, epoch, claimed) = reply::eager_head(&mut r)?;
        let deferred = r.strings()?;
        Ok(Submitted {
            applied: Applied {
                queued,
                notifications: reply::events(&mut r)?,
            },
            deferred,
            epoch,
            claimed,
        })
    }

    /// Applies worker reports, each at most once.
    pub async fn complete(&self, reports: &[(String, Transition)]) -> Result<Applied> {
        Ok(self.complete_eager(reports, None).await?.0)
    }

    /// Like [`Store::complete`], and when the reports make exactly one task
    /// runnable with nothing else waiting in its outbox (the next link of a
    /// chain), claims it onto `list` in the same step and returns it with the
    /// epoch, ready to publish and then [`Store::release`] as after
    /// [`Store::claim`]. Without a list it claims nothing.
    pub async fn complete_eager(
        &self,
        reports: &[(String, Transition)],
        list: Option<&ClaimList>,
    ) -> Result<(Applied, u64, Vec<ClaimedTask>)> {
        let owner = list.map(ClaimList::as_str);
        let args = encode::complete(self.prefix(), self.ttl, owner, reports, jitter_draw)?;
        let mut r = Reply::new(self.run(&self.scripts.complete, args).await?)?;
        let (queued, epoch, eager) = reply::eager_head(&mut r)?;
        let applied = Applied {
            queued,
            notifications: reply::events(&mut r)?,
        };
        Ok((applied, epoch, eager))
    }

    /// Claims up to `max` runnable tasks of work queue `queue` onto `list`,
    /// highest priority first (returning the list's unreleased claims first,
    /// whatever their queue), with the current epoch.
    pub async fn claim(
        &self,
        list: &ClaimList,
        queue: &str,
        max: usize,
    ) -> Result<(u64, Vec<ClaimedTask>)> {
        let args = Args::new(self.prefix())
            .text(list.as_str())
            .text(queue)
            .num(max);
        let mut r = Reply::new(self.run(&self.scripts.claim, args).await?)?;
        let epoch = r.epoch()?;
        let mut tasks = Vec::new();
        while !r.done() {
            tasks.push(reply::claimed(&mut r)?);
        }
        Ok((epoch, tasks))
    }

    /// Moves up to `max` delayed tasks whose due time has come to their
    /// outboxes (`lua/promote.lua`). Returns how many it queued and how long
    /// until the next one is due (`None`: nothing is delayed).
    pub async fn promote(&self, max: usize) -> Result<(u64, Option<Duration>)> {
        let args = Args::new(self.prefix()).num(max);
        let mut r = Reply::new(self.run(&self.scripts.promote, args).await?)?;
        let queued = u64::try_from(r.int()?).unwrap_or(0);
        let wait = r.int()?;
        Ok((queued, u64::try_from(wait).ok().map(Duration::from_millis)))
    }

    /// Forgets `list`'s claims: their publishes are confirmed.
    pub async fn release(&self, list: &ClaimList) -> Result<()> {
        let mut con = self.con();
        let _: () = redis::pipe()
            .atomic()
            .del(self.keys.claimed(list.as_str()))
            .srem(self.keys.claimants(), list.as_str())
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Marks scheduler `id` alive for `ttl` (its claim lists stay its own).
    pub async fn heartbeat(&self, id: &str, ttl: Duration) -> Result<()> {
        let mut con = self.con();
        let _: () = con
            .set_ex(self.keys.scheduler(id), 1, ttl.as_secs().max(1))
            .await?;
        Ok(())
    }

    /// Ends scheduler `id`'s heartbeat (a drained scheduler): any claim it
    /// still held is taken back by the others at once.
    pub async fn retire(&self, id: &str) -> Result<()> {
        let mut con = self.con();
        let _: () = con.del(self.keys.scheduler(id)).await?;
        Ok(())
    }

    /// Returns claims of schedulers that stopped heartbeating to the outbox.
    ///
    /// It walks the set of claimants (a few per live scheduler), so it costs
    /// the same however many keys Redis holds.
    pub async fn reclaim_orphans(&self) -> Result<u64> {
        let mut con = self.con();
        let lists: Vec<String> = con.smembers(self.keys.claimants()).await?;
        let mut total = 0;
        for list in lists {
            let args = Args::new(self.prefix()).text(&list);
            if let RValue::Int(n) = self.run(&self.scripts.reclaim, args).await? {
                total += n.max(0) as u64;
            }
        }
        Ok(total)
    }

    /// Registers `reply_to` (if any) as a watcher of each pending key and
    /// returns what each key is now.
    pub async fn watch(&self, reply_to: Option<&str>, keys: &[String]) -> Result<Vec<Watched>> {
        let args = Args::new(self.prefix())
            .text(reply_to.unwrap_or(""))
            .all(keys);
        let mut r = Reply::new(self.run(&self.scripts.watch, args).await?)?;
        let mut out = Vec::with_capacity(keys.len());
        while !r.done() {
            let _key = r.string()?;
            let state = r.string()?;
            let payload = r.string()?;
            out.push(match state.as_str() {
                "unknown" => Watched::Unknown,
                s => {
                    let st: State = s.parse().map_err(Error::Script)?;
                    if st.is_terminal() {
                        Watched::Done(reply::terminal(st, &payload)?)
                    } else {
                        Watched::Pending(st)
                    }
                }
            });
        }
        Ok(out)
    }

    /// Cancels `keys` and their dependents; returns every key cancelled (for the
    /// workers) and the clients to notify.
    pub async fn cancel(&self, keys: &[String]) -> Result<(Vec<String>, Vec<Notification>)> {
        let args = Args::new(self.prefix()).num(self.ttl).all(keys);
        let mut r = Reply::new(self.run(&self.scripts.cancel, args).await?)?;
        let cancelled = r.strings()?;
        Ok((cancelled, reply::events(&mut r)?))
    }

    /// Cancels a chunk of the namespace's records (a restart).
    pub(crate) async fn cancel_all(&self, keys: &[String]) -> Result<Vec<Notification>> {
        let args = Args::new(self.prefix()).num(self.ttl).all(keys);
        let mut r = Reply::new(self.run(&self.scripts.cancel_all, args).await?)?;
        let _queued = r.int()?;
        reply::events(&mut r)
    }

    /// Deletes final futures now; says per key what happened.
    pub async fn forget(&self, keys: &[String]) -> Result<Vec<Forgotten>> {
        let args = Args::new(self.prefix()).all(keys);
        let mut r = Reply::new(self.run(&self.scripts.forget, args).await?)?;
        let mut out = Vec::with_capacity(keys.len());
        while !r.done() {
            out.push(match r.string()?.as_str() {
                "forgotten" => Forgotten::Forgotten,
                "pending" => Forgotten::Pending,
                _ => Forgotten::Unknown,
            });
        }
        Ok(out)
    }

    /// Records that a worker starts `key`'s attempt `attempt`, unless the task
    /// must not run (see `lua/start.lua`: the one write a worker makes).
    pub async fn start(&self, key: &str, attempt: u32) -> Result<Start> {
        let args = Args::new(self.prefix()).text(key).num(attempt);
        match self.run(&self.scripts.start, args).await? {
            RValue::Int(n) if n > 0 => Ok(Start::Run(u32::try_from(n).unwrap_or(u32::MAX))),
            RValue::Int(_) => Ok(Start::Skip),
            other => Err(Error::Script(format!("start returned {other:?}"))),
        }
    }
}

/// A uniform draw in `[0, 1)` for a retry's jitter: from the OS, since a
/// script's own `math.random` repeats in every run. Jitter needs no more
/// than spread, so a failing source falls back to the clock's nanoseconds.
fn jitter_draw() -> f64 {
    let mut b = [0u8; 4];
    let bits = match getrandom::fill(&mut b) {
        Ok(()) => u32::from_le_bytes(b),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    };
    f64::from(bits) / 4_294_967_296.0
}

//! Periodic schedules in Redis (`warren every`, `warren cron`, `warren
//! schedules`): the specs, their next ticks, and the tick every scheduler
//! runs. See [`crate::periodic`] for why each tick runs exactly once.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P schedules` | hash | name → the schedule ([`Schedule`] as JSON) |
//! | `P schedule_next` | sorted set | name → its next tick (ms); a paused schedule is absent |
//! | `P runs:<name>` | list | the keys of its latest 100 runs, newest first |

use redis::AsyncCommands;
use tracing::warn;

use super::Store;
use super::encode::Args;
use super::reply::Reply;
use crate::error::{Error, Result};
use crate::periodic::{Schedule, run_key};

/// A schedule as `warren schedules list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// What and when.
    pub schedule: Schedule,
    /// Its next tick (Unix ms); `None` while paused.
    pub next_ms: Option<u64>,
}

fn check_name(name: &str) -> Result<()> {
    crate::taskkey::validate_key(name)
        .map_err(|e| Error::Invalid(format!("schedule name: {e}")))?;
    if name.len() > 200 {
        return Err(Error::Invalid(format!(
            "schedule name {:?} is longer than 200 bytes",
            crate::taskkey::shown(name)
        )));
    }
    Ok(())
}

impl Store {
    /// Adds (or replaces) schedule `name`; its first tick is the next one
    /// after now. Returns that tick (Unix ms).
    pub async fn add_schedule(&self, name: &str, schedule: &Schedule) -> Result<u64> {
        check_name(name)?;
        schedule.validate().map_err(Error::Invalid)?;
        let next = schedule
            .next_tick(crate::messages::now_ms())
            .map_err(Error::Invalid)?;
        let mut con = self.con();
        let _: () = redis::pipe()
            .atomic()
            .hset(
                self.keys.schedules(),
                name,
                serde_json::to_string(schedule)?,
            )
            .zadd(self.keys.schedule_next(), name, next)
            .query_async(&mut con)
            .await?;
        Ok(next)
    }

    /// Every schedule, by name.
    pub async fn list_schedules(&self) -> Result<Vec<Listed>> {
        let mut con = self.con();
        let specs: Vec<(String, String)> = con.hgetall(self.keys.schedules()).await?;
        let mut out = Vec::new();
        for (name, spec) in specs {
            let Ok(schedule) = serde_json::from_str::<Schedule>(&spec) else {
                warn!(%name, "skipping a schedule Redis holds that this warren cannot read");
                continue;
            };
            let next: Option<f64> = con.zscore(self.keys.schedule_next(), &name).await?;
            out.push(Listed {
                name,
                schedule,
                next_ms: next.map(|n| n.max(0.0) as u64),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn schedule(&self, name: &str) -> Result<Schedule> {
        let mut con = self.con();
        let spec: Option<String> = con.hget(self.keys.schedules(), name).await?;
        let spec = spec.ok_or_else(|| {
            Error::Invalid(format!(
                "no schedule named {:?} (see `warren schedules list`)",
                crate::taskkey::shown(name)
            ))
        })?;
        Ok(serde_json::from_str(&spec)?)
    }

    /// Pauses (`paused`) or resumes schedule `name`. A resumed schedule
    /// goes on from its next tick after now; no tick of the pause runs.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<()> {
        let mut schedule = self.schedule(name).await?;
        schedule.paused = paused;
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.atomic().hset(
            self.keys.schedules(),
            name,
            serde_json::to_string(&schedule)?,
        );
        if paused {
            pipe.zrem(self.keys.schedule_next(), name);
        } else {
            let next = schedule
                .next_tick(crate::messages::now_ms())
                .map_err(Error::Invalid)?;
            pipe.zadd(self.keys.schedule_next(), name, next);
        }
        let _: () = pipe.query_async(&mut con).await?;
        Ok(())
    }

    /// Removes schedule `name`; whether it existed. Its runs stay, as
    /// futures, and so does the list of them, for as long as results are
    /// kept (`result_ttl_secs`).
    pub async fn remove_schedule(&self, name: &str) -> Result<bool> {
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.keys.schedules(), name)
            .zrem(self.keys.schedule_next(), name)
            .ignore();
        if self.ttl > 0 {
            pipe.expire(self.keys.runs(name), self.ttl as i64).ignore();
        }
        let (n,): (u64,) = pipe.query_async(&mut con).await?;
        Ok(n > 0)
    }

    /// The keys of schedule `name`'s latest runs, newest first.
    pub async fn schedule_runs(&self, name: &str) -> Result<Vec<String>> {
        let mut con = self.con();
        Ok(con.lrange(self.keys.runs(name), 0, -1).await?)
    }

    /// Runs the ticks that are due (up to `max`): each exactly once across
    /// every scheduler (`tick.lua`). Returns how many tasks it queued.
    pub async fn tick_schedules(&self, max: usize) -> Result<u64> {
        let args = Args::new(self.prefix()).num(max);
        let mut r = Reply::new(self.run(&self.scripts.due_schedules, args).await?)?;
        let now = u64::try_from(r.int()?).unwrap_or(0);
        let mut queued = 0;
        while !r.done() {
            let (name, tick, spec) = (r.string()?, r.string()?, r.string()?);
            let (Ok(schedule), Ok(tick_ms)) =
                (serde_json::from_str::<Schedule>(&spec), tick.parse::<f64>())
            else {
                warn!(%name, "skipping a due schedule this warren cannot read");
                continue;
            };
            let tick_ms = tick_ms.max(0.0) as u64;
            // What Redis holds is checked as a user's input is: a forged
            // spec pauses its schedule instead of computing with it.
            let decided = schedule
                .validate()
                .and_then(|()| schedule.decide(tick_ms, now));
            let (run, next) = match decided {
                Ok(d) => d,
                Err(e) => {
                    warn!(%name, error = %e, "a schedule is invalid or has no next tick; pausing it");
                    self.pause_schedule(&name, true).await?;
                    continue;
                }
            };
            let key = run_key(&name, tick_ms);
            let args = Args::new(self.prefix())
                .text(&name)
                .text(&tick)
                .num(next)
                .text(if run { "1" } else { "0" })
                .text(&key)
                .text(&schedule.func)
                .text(&schedule.queue)
                .text(&serde_json::to_string(&schedule.args)?)
                .num(self.ttl);
            let mut t = Reply::new(self.run(&self.scripts.tick, args).await?)?;
            queued += u64::try_from(t.int()?).unwrap_or(0);
        }
        Ok(queued)
    }
}

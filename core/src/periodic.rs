//! Periodic schedules (`warren every`, `warren cron`): what a schedule is, and
//! when its next tick falls. Pure, so the rules are tested with no server.
//!
//! Why this shape: a schedule's next tick lives in Redis (`P schedule_next`,
//! a sorted set scored by the tick's time), and a scheduler runs a tick with
//! `tick.lua`, which moves the score from that tick to the next one and
//! records the run in the same atomic step, only if the score still names
//! that tick. So however many schedulers are alive, and whichever dies
//! between reading a due tick and running it, each tick runs once (Celery's
//! beat must run exactly once or it duplicates every tick). Computing the
//! next tick (a cron expression, above all) is done here, in Rust, and handed
//! to the script.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tick missed while no scheduler was alive (more than [`MISSED_AFTER_MS`]
/// late): run once on recovery, or skip to the next tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Run once for all the ticks missed, then go on from now.
    RunOnce,
    /// Run nothing for them; go on from now.
    Skip,
}

/// How late a tick may be and still count as on time.
pub const MISSED_AFTER_MS: u64 = 5_000;

/// The shortest period: one second.
pub const MIN_EVERY_MS: u64 = 1_000;

/// A periodic schedule, as stored in `P schedules` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The function each run calls.
    pub func: String,
    /// Its arguments.
    pub args: Vec<Value>,
    /// The work queue of each run.
    pub queue: String,
    /// Run every this many ms, on a grid starting at `start_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// Or at the times of this cron expression (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Where the `every` grid starts (Unix ms).
    pub start_ms: u64,
    /// What a missed tick does.
    pub missed: Missed,
    /// Paused: no ticks run until it is resumed.
    #[serde(default)]
    pub paused: bool,
}

impl Schedule {
    /// Checks the schedule (a user's input, or Redis's).
    pub fn validate(&self) -> Result<(), String> {
        match (self.every_ms, &self.cron) {
            (Some(ms), None) if ms >= MIN_EVERY_MS => {
                crate::timing::delay("a period", ms)?;
            }
            (Some(ms), None) => {
                return Err(format!(
                    "a period of {ms} ms is shorter than the {MIN_EVERY_MS} ms allowed"
                ));
            }
            (None, Some(expr)) => {
                Cron::parse(expr)?;
            }
            _ => return Err("a schedule has either a period or a cron expression".into()),
        }
        crate::timing::at(self.start_ms)?;
        crate::taskkey::validate_key(&self.func).map_err(|e| format!("function name: {e}"))
    }

    /// The first tick strictly after `after_ms` (Unix ms).
    pub fn next_tick(&self, after_ms: u64) -> Result<u64, String> {
        match (self.every_ms, &self.cron) {
            (Some(every), _) if every > 0 => {
                if after_ms < self.start_ms {
                    return Ok(self.start_ms);
                }
                // Checked: a schedule read back from Redis may be forged.
                let k = (after_ms - self.start_ms) / every + 1;
                k.checked_mul(every)
                    .and_then(|d| d.checked_add(self.start_ms))
                    .ok_or_else(|| format!("the tick after {after_ms} is past the end of time"))
            }
            (_, Some(expr)) => Cron::parse(expr)?.next_after(after_ms),
            _ => Err("a schedule has either a period or a cron expression".into()),
        }
    }

    /// What to do with due tick `tick` at `now` (both Unix ms): whether to
    /// run it, and the tick after it.
    pub fn decide(&self, tick: u64, now: u64) -> Result<(bool, u64), String> {
        let late = now.saturating_sub(tick) > MISSED_AFTER_MS;
        let run = !late || self.missed == Missed::RunOnce;
        Ok((run, self.next_tick(tick.max(now))?))
    }
}

/// The key of a schedule's run for tick `tick`: one future per tick, so a
/// tick run twice would be the same future (and `submit` deduplicates it).
pub fn run_key(name: &str, tick: u64) -> String {
    format!("{name}-{tick}")
}

/// A five-field cron expression (minute hour day-of-month month
/// day-of-week), in UTC: `*`, `*/n`, `a`, `a-b`, `a-b/n` and lists of them;
/// day of week 0 or 7 is Sunday. As in cron, when both days are restricted
/// a time matches either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
}

fn field(text: &str, min: u32, max: u32, what: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("{what}: bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a, what)?, num(b, what)?)
        } else {
            let v = num(range, what)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{what}: {part:?} is outside {min}-{max}"));
        }
        // `hi` is at most 59 and `step` any u32: stepping is checked, so a
        // step like 4294967295 ends the field instead of overflowing.
        let mut v = Some(lo);
        while let Some(at) = v.filter(|&at| at <= hi) {
            bits |= 1 << at;
            v = at.checked_add(step);
        }
    }
    Ok((bits, text == "*"))
}

fn num(text: &str, what: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{what}: {text:?} is not a number"))
}

impl Cron {
    /// Parses `"0 * * * *"` and the like.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let f: Vec<&str> = expr.split_whitespace().collect();
        let [mi, h, d, mo, w] = f[..] else {
            return Err(format!(
                "cron expression {expr:?} has {} fields, not 5 (minute hour day month weekday, e.g. \"0 * * * *\")",
                f.len()
            ));
        };
        let (minutes, _) = field(mi, 0, 59, "minute")?;
        let (hours, _) = field(h, 0, 23, "hour")?;
        let (days, any_day) = field(d, 1, 31, "day of month")?;
        let (months, _) = field(mo, 1, 12, "month")?;
        let (mut weekdays, any_weekday) = field(w, 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            any_day,
            any_weekday,
        })
    }

    fn day_matches(&self, date: time::Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().number_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `after_ms` (Unix ms, UTC),
    /// looked for up to five years ahead (29 February included).
    pub fn next_after(&self, after_ms: u64) -> Result<u64, String> {
        let start_min = after_ms / 60_000 + 1;
        let start = time::OffsetDateTime::from_unix_timestamp((start_min * 60) as i64)
            .map_err(|e| e.to_string())?;
        let mut date = start.date();
        for _ in 0..(5 * 366) {
            if self.months & (1 << u8::from(date.month())) != 0 && self.day_matches(date) {
                let midnight = date.midnight().assume_utc().unix_timestamp() as u64 / 60;
                for h in 0..24u64 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60u64 {
                        let at = midnight + h * 60 + m;
                        if self.minutes & (1 << m) != 0 && at >= start_min {
                            return Ok(at * 60_000);
                        }
                    }
                }
            }
            date = date
                .next_day()
                .ok_or_else(|| "no cron time before the end of the calendar".to_string())?;
        }
        Err("the cron expression matches no time in the next five years".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> u64 {
        crate::timing::parse_at(text).unwrap()
    }

    fn every(ms: u64, start: u64, missed: Missed) -> Schedule {
        Schedule {
            func: "inc".into(),
            args: vec![],
            queue: "default".into(),
            every_ms: Some(ms),
            cron: None,
            start_ms: start,
            missed,
            paused: false,
        }
    }

    #[test]
    fn huge_numbers_from_a_forged_schedule_are_errors_not_overflows() {
        let forged = every(u64::MAX / 2, 3, Missed::Skip);
        assert!(forged.validate().is_err());
        assert!(forged.next_tick(u64::MAX / 2 + 10).is_err());
        assert!(every(1000, u64::MAX, Missed::Skip).validate().is_err());
        let cron = Cron::parse("5/4294967295 * * * *").unwrap();
        assert_eq!(cron.minutes, 1 << 5);
        assert!(Cron::parse("*/4294967295 */4294967295 * * *").is_ok());
    }

    #[test]
    fn every_ticks_on_a_grid_from_its_start() {
        let s = every(1000, 10_000, Missed::Skip);
        assert_eq!(s.next_tick(0), Ok(10_000));
        assert_eq!(s.next_tick(10_000), Ok(11_000));
        assert_eq!(s.next_tick(10_999), Ok(11_000));
        assert_eq!(s.next_tick(12_500), Ok(13_000));
    }

    #[test]
    fn a_late_tick_runs_or_not_by_policy_and_the_next_is_ahead_of_now() {
        let skip = every(1000, 0, Missed::Skip);
        assert_eq!(skip.decide(5000, 5200), Ok((true, 6000)), "on time");
        assert_eq!(skip.decide(5000, 60_300), Ok((false, 61_000)));
        let once = every(1000, 0, Missed::RunOnce);
        assert_eq!(once.decide(5000, 60_300), Ok((true, 61_000)));
    }

    #[test]
    fn cron_finds_the_next_matching_minute() {
        let hourly = Cron::parse("0 * * * *").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-12-06T02:30:00Z")),
            Ok(at("2026-12-06T03:00:00Z"))
        );
        assert_eq!(
            hourly.next_after(at("2026-12-06T03:00:00Z")),
            Ok(at("2026-12-06T04:00:00Z")),
            "strictly after"
        );
        let quarter = Cron::parse("*/15 9-17 * * 1-5").unwrap();
        // Saturday 2026-12-05 → Monday 09:00.
        assert_eq!(
            quarter.next_after(at("2026-12-05T12:00:00Z")),
            Ok(at("2026-12-07T09:00:00Z"))
        );
        let leap = Cron::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            leap.next_after(at("2026-12-06T00:00:00Z")),
            Ok(at("2028-02-29T00:00:00Z"))
        );
        // Day of month or Sunday (both restricted: either matches).
        let either = Cron::parse("30 6 1 * 0").unwrap();
        assert_eq!(
            either.next_after(at("2026-12-01T07:00:00Z")),
            Ok(at("2026-12-06T06:30:00Z"))
        );
        assert_eq!(Cron::parse("0 0 * * 7"), Cron::parse("0 0 * * 0"));
    }

    #[test]
    fn bad_cron_expressions_are_refused_by_field() {
        assert!(Cron::parse("* * * *").unwrap_err().contains("4 fields"));
        assert!(Cron::parse("60 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("* 24 * * *").unwrap_err().contains("hour"));
        assert!(
            Cron::parse("* * 0 * *")
                .unwrap_err()
                .contains("day of month")
        );
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
        assert!(
            Cron::parse("x * * * *")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(Cron::parse("0 0 31 2 *").unwrap().next_after(0).is_err());
    }

    #[test]
    fn schedules_validate_their_period_and_function() {
        every(1000, 0, Missed::Skip).validate().unwrap();
        assert!(
            every(10, 0, Missed::Skip)
                .validate()
                .unwrap_err()
                .contains("shorter")
        );
        let mut s = every(1000, 0, Missed::Skip);
        s.cron = Some("* * * * *".into());
        assert!(s.validate().unwrap_err().contains("either"));
        s.every_ms = None;
        s.validate().unwrap();
        s.func = "two words".into();
        assert!(s.validate().is_err());
    }
}

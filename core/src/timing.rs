//! When a task may run: delays, due times, and the pause before a retry.
//!
//! Why here, and pure: a delayed task waits in Redis (the `P delayed` sorted
//! set, scored by its due time on Redis's own clock), not in RabbitMQ, so no
//! broker visibility timeout or redelivery can run it twice or early (the
//! failure mode of Celery's ETA tasks). The scripts (`make_queued` and
//! `retry_delay_ms` in `lua/common.lua`) apply the rules; this module is
//! their Rust side: the bounds the client and scheduler check, the parsing of
//! a user's `30s` or `2026-12-24T10:00:00Z`, and [`RetryPolicy::delay_ms`],
//! the same backoff formula the script computes, so that tests measure the
//! script against it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest delay a task (or a retry) may have: a year. Longer is a typo.
pub const MAX_DELAY_MS: u64 = 366 * 24 * 3600 * 1000;

/// The latest due time a task may name (Unix ms, 2100-01-01): far beyond any
/// real schedule, and exact in the double a Redis score is.
pub const MAX_AT_MS: u64 = 4_102_444_800_000;

/// The largest backoff factor: at 100, the eighth retry already waits a
/// year, so a larger factor can only be a mistake.
pub const MAX_BACKOFF: f64 = 100.0;

/// The most exception names a policy may retry on (a Python class counts
/// with every subclass its client knows).
pub const MAX_RETRY_ON: usize = 1024;

/// How a failed task waits before its next attempt (the count is the task's
/// `retries`). With every field at its default the retry is immediate, as
/// in dask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The pause before the first retry, in ms.
    #[serde(default)]
    pub delay_ms: u64,
    /// Each further retry waits this many times longer (1: a fixed pause;
    /// Celery's `retry_backoff=True` is 2).
    #[serde(default = "one")]
    pub backoff: f64,
    /// No pause is longer than this, in ms (Celery's `retry_backoff_max`,
    /// default 10 minutes).
    #[serde(default = "ten_minutes")]
    pub max_delay_ms: u64,
    /// Wait a uniformly random part of the computed pause instead (Celery's
    /// `retry_jitter`, "full jitter"), so that tasks failing together do not
    /// retry together.
    #[serde(default)]
    pub jitter: bool,
    /// Retry only errors of these types (exception class names; empty: every
    /// error). Any other error is final at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
}

fn one() -> f64 {
    1.0
}

fn ten_minutes() -> u64 {
    600_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delay_ms: 0,
            backoff: one(),
            max_delay_ms: ten_minutes(),
            jitter: false,
            on: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (0 for the first), with `u` in
    /// `[0, 1)` the random draw jitter uses:
    /// `min(max_delay, delay * backoff^retry)`, times `u` with jitter.
    /// `common.lua`'s `retry_delay_ms` computes the same.
    pub fn delay_ms(&self, retry: u32, u: f64) -> u64 {
        let d = (self.delay_ms as f64 * self.backoff.powi(retry.min(i32::MAX as u32) as i32))
            .min(self.max_delay_ms as f64);
        let d = if self.jitter {
            d * u.clamp(0.0, 1.0)
        } else {
            d
        };
        d.floor() as u64
    }

    /// Checks the policy's bounds (a user's or the network's input).
    pub fn validate(&self) -> Result<(), String> {
        delay("retry delay", self.delay_ms)?;
        delay("longest retry delay", self.max_delay_ms)?;
        if !self.backoff.is_finite() || !(1.0..=MAX_BACKOFF).contains(&self.backoff) {
            return Err(format!(
                "retry backoff {} is outside 1..={MAX_BACKOFF} (the factor each pause grows by)",
                self.backoff
            ));
        }
        if self.on.len() > MAX_RETRY_ON {
            return Err(format!(
                "retry_on names {} error types, more than the {MAX_RETRY_ON} allowed",
                self.on.len()
            ));
        }
        for name in &self.on {
            error_type(name)?;
        }
        Ok(())
    }
}

/// Checks an error type name for `retry_on`: an exception class name, as a
/// task's error reports it (`ConnectionError`, `requests.HTTPError`,
/// `app.f.<locals>.Flaky`).
pub fn error_type(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "retry_on: {} is not an error type name (1 to 200 bytes, no spaces)",
            crate::taskkey::shown(name)
        ))
    }
}

/// Checks a delay (`what` names it in the message).
pub fn delay(what: &str, ms: u64) -> Result<(), String> {
    if ms > MAX_DELAY_MS {
        return Err(format!(
            "{what} of {ms} ms is more than a year ({MAX_DELAY_MS} ms)"
        ));
    }
    Ok(())
}

/// Checks a due time (Unix ms).
pub fn at(ms: u64) -> Result<(), String> {
    if ms > MAX_AT_MS {
        return Err(format!(
            "due time {ms} (Unix ms) is after 2100-01-01 ({MAX_AT_MS})"
        ));
    }
    Ok(())
}

/// Parses a duration as users write one: a number with a unit, `ms`, `s`,
/// `m`, `h` or `d` (`250ms`, `30s`, `1.5m`, `2h`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 1.5m, 2h, 250ms)"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m, h or d, e.g. 30s)"
            ));
        }
    };
    let secs = n * scale;
    if !secs.is_finite() || secs < 0.0 || secs * 1000.0 > MAX_DELAY_MS as f64 {
        return Err(format!("{text:?} is not between 0 and a year"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A global rate limit: at most `count` tasks start per `per_ms`, spread
/// evenly (one every `per_ms / count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tasks per period.
    pub count: u32,
    /// The period, in ms.
    pub per_ms: u64,
}

impl Rate {
    /// Parses `100/s`, `20/m`, `5/h` (a count per second, minute or hour).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a rate (e.g. 100/s, 20/m, 5/h)"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {count:?} is not a count of tasks"))?;
        let per_ms = match unit.trim() {
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            other => {
                return Err(format!(
                    "{text:?}: per {other:?}? Use s, m or h (e.g. 100/s)"
                ));
            }
        };
        if count == 0 || count > 1_000_000 {
            return Err(format!("{text:?}: the count must be 1 to 1,000,000"));
        }
        Ok(Rate { count, per_ms })
    }

    /// The form `rate_limits` stores and `gate` in `common.lua` reads:
    /// `<count>/<period ms>`.
    pub fn stored(&self) -> String {
        format!("{}/{}", self.count, self.per_ms)
    }

    /// Reads [`Rate::stored`] back (`None` for anything else).
    pub fn from_stored(text: &str) -> Option<Rate> {
        let (c, p) = text.split_once('/')?;
        Some(Rate {
            count: c.parse().ok()?,
            per_ms: p.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per_ms {
            1000 => "s".to_string(),
            60_000 => "m".to_string(),
            3_600_000 => "h".to_string(),
            ms => format!("{ms}ms"),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Parses a due time in RFC 3339 (`2026-12-24T10:00:00Z`,
/// `2026-12-24T11:00:00+01:00`) into Unix ms.
pub fn parse_at(text: &str) -> Result<u64, String> {
    let t =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!("{text:?} is not an RFC 3339 time such as 2026-12-24T10:00:00Z ({e})")
            })?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    let ms = u64::try_from(ms).map_err(|_| format!("{text:?} is before 1970"))?;
    at(ms)?;
    Ok(ms)
}

/// Unix ms as RFC 3339 in UTC, to the second (`2026-12-24T10:00:00Z`).
pub fn format_at(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_its_factor_up_to_the_cap() {
        let p = RetryPolicy {
            delay_ms: 100,
            backoff: 2.0,
            max_delay_ms: 1000,
            ..RetryPolicy::default()
        };
        let pauses: Vec<u64> = (0..6).map(|r| p.delay_ms(r, 0.0)).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(RetryPolicy::default().delay_ms(3, 0.5), 0, "dask: at once");
        let fixed = RetryPolicy {
            delay_ms: 250,
            ..RetryPolicy::default()
        };
        assert_eq!(fixed.delay_ms(7, 0.9), 250);
    }

    #[test]
    fn jitter_takes_a_uniform_part_of_the_pause() {
        let p = RetryPolicy {
            delay_ms: 1000,
            backoff: 2.0,
            jitter: true,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_ms(1, 0.0), 0);
        assert_eq!(p.delay_ms(1, 0.25), 500);
        assert_eq!(p.delay_ms(1, 0.999_999), 1999);
        assert_eq!(p.delay_ms(1, 7.0), 2000, "a draw past 1 is clamped");
    }

    #[test]
    fn a_huge_retry_number_stays_capped() {
        let p = RetryPolicy {
            delay_ms: MAX_DELAY_MS,
            backoff: MAX_BACKOFF,
            max_delay_ms: MAX_DELAY_MS,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_ms(u32::MAX, 0.0), MAX_DELAY_MS);
    }

    #[test]
    fn policies_out_of_bounds_are_refused_by_name() {
        let bad = |p: RetryPolicy| p.validate().unwrap_err();
        assert!(
            bad(RetryPolicy {
                backoff: 0.5,
                ..RetryPolicy::default()
            })
            .contains("backoff")
        );
        assert!(
            bad(RetryPolicy {
                backoff: f64::NAN,
                ..RetryPolicy::default()
            })
            .contains("backoff")
        );
        assert!(
            bad(RetryPolicy {
                delay_ms: MAX_DELAY_MS + 1,
                ..RetryPolicy::default()
            })
            .contains("retry delay")
        );
        assert!(
            bad(RetryPolicy {
                on: vec!["Connection Error".into()],
                ..RetryPolicy::default()
            })
            .contains("Connection Error")
        );
        assert!(
            bad(RetryPolicy {
                on: vec!["E".into(); MAX_RETRY_ON + 1],
                ..RetryPolicy::default()
            })
            .contains("error types")
        );
        RetryPolicy {
            on: vec!["ConnectionError".into(), "requests.HTTPError".into()],
            ..RetryPolicy::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn policies_read_with_defaults_and_refuse_unknown_fields() {
        let p: RetryPolicy = serde_json::from_str(r#"{"delay_ms": 1000}"#).unwrap();
        assert_eq!(p.backoff, 1.0);
        assert_eq!(p.max_delay_ms, 600_000);
        assert!(serde_json::from_str::<RetryPolicy>(r#"{"delay": 1}"#).is_err());
    }

    #[test]
    fn durations_parse_with_units_and_refuse_nonsense() {
        let ms = |t: &str| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("1.5m"), Ok(90_000));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("2h"), Ok(7_200_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("12"), Ok(12_000));
        assert!(parse_duration("30x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("400d").unwrap_err().contains("a year"));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn rates_parse_per_second_minute_or_hour_and_round_trip() {
        let r = Rate::parse("50/s").unwrap();
        assert_eq!((r.count, r.per_ms), (50, 1000));
        assert_eq!(Rate::parse(" 20 / m ").unwrap().per_ms, 60_000);
        assert_eq!(Rate::from_stored(&r.stored()), Some(r));
        assert_eq!(Rate::parse("5/h").unwrap().to_string(), "5/h");
        assert!(Rate::parse("50").unwrap_err().contains("not a rate"));
        assert!(Rate::parse("0/s").unwrap_err().contains("1 to"));
        assert!(Rate::parse("x/s").unwrap_err().contains("count"));
        assert!(Rate::parse("5/d").unwrap_err().contains("Use s, m or h"));
        assert_eq!(Rate::from_stored("junk"), None);
    }

    #[test]
    fn due_times_parse_in_rfc3339_and_print_back() {
        assert_eq!(parse_at("2026-12-24T10:00:00Z"), Ok(1_798_106_400_000));
        assert_eq!(
            parse_at("2026-12-24T11:00:00.5+01:00"),
            Ok(1_798_106_400_500)
        );
        assert_eq!(format_at(1_798_106_400_500), "2026-12-24T10:00:00Z");
        assert!(parse_at("tomorrow").unwrap_err().contains("RFC 3339"));
        assert!(
            parse_at("1969-12-31T23:59:59Z")
                .unwrap_err()
                .contains("1970")
        );
        assert!(
            parse_at("2200-01-01T00:00:00Z")
                .unwrap_err()
                .contains("2100")
        );
    }
}

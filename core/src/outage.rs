//! Saying a service outage once, not once per retry.
//!
//! A client waiting on 2,000 futures retries 2,000 Redis calls while Redis
//! is down; a warning per retry buried the terminal (9,948 lines in 10 s).
//! [`Outage`] turns the stream of failures and successes into three kinds
//! of line: one when the outage starts, a reminder every so often, and one
//! when it ends. It is a pure state machine (time is passed in), shared by
//! every call of a process behind a mutex.

use std::time::{Duration, Instant};

/// How often a continuing outage is mentioned again.
pub const REMIND_EVERY: Duration = Duration::from_secs(10);

/// What to tell the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Say {
    /// The first failure of an outage.
    Started,
    /// The outage goes on, this long so far.
    Continuing(Duration),
    /// The first success after an outage that lasted this long.
    Ended(Duration),
}

/// The outage state of one service, as seen by one process.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the current outage began, and when it was last mentioned.
    since: Option<(Instant, Instant)>,
}

impl Outage {
    /// A call failed at `now`: what to say, if anything.
    pub fn failed(&mut self, now: Instant) -> Option<Say> {
        match &mut self.since {
            None => {
                self.since = Some((now, now));
                Some(Say::Started)
            }
            Some((began, said)) if now.duration_since(*said) >= REMIND_EVERY => {
                *said = now;
                Some(Say::Continuing(now.duration_since(*began)))
            }
            Some(_) => None,
        }
    }

    /// A call succeeded at `now`: what to say, if anything.
    pub fn succeeded(&mut self, now: Instant) -> Option<Say> {
        self.since
            .take()
            .map(|(began, _)| Say::Ended(now.duration_since(began)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_said_once_then_reminded_then_ended() {
        let t0 = Instant::now();
        let mut o = Outage::default();
        assert_eq!(o.succeeded(t0), None);
        assert_eq!(o.failed(t0), Some(Say::Started));
        for ms in [1, 50, 9_000] {
            assert_eq!(o.failed(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(
            o.failed(t0 + Duration::from_secs(10)),
            Some(Say::Continuing(Duration::from_secs(10)))
        );
        assert_eq!(o.failed(t0 + Duration::from_secs(11)), None);
        assert_eq!(
            o.succeeded(t0 + Duration::from_secs(12)),
            Some(Say::Ended(Duration::from_secs(12)))
        );
        assert_eq!(o.succeeded(t0 + Duration::from_secs(13)), None);
        assert_eq!(o.failed(t0 + Duration::from_secs(14)), Some(Say::Started));
    }
}

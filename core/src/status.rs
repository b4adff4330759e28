//! The states of a future.
//!
//! Users see dask's four statuses; operators also get the detail of a pending
//! future. The Redis record stores the fine-grained [`State`]; [`State::status`]
//! folds it into the user-facing [`Status`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Fine-grained state of a task, as stored in Redis (field `s` of its record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Some dependencies are not finished yet.
    Waiting,
    /// Ready, but not to run before its due time (a delay, a due time, or a
    /// retry's pause): it waits in Redis until then.
    Scheduled,
    /// Runnable: in the outbox or in a work queue.
    Queued,
    /// A worker has been running it for a while.
    Processing,
    /// Done, with a value.
    Finished,
    /// Done, with an error (its own or a dependency's).
    Error,
    /// Cancelled (by `restart`, or a cancelled dependency).
    Cancelled,
}

/// User-facing status, exactly dask's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not done yet.
    Pending,
    /// Done, with a value.
    Finished,
    /// Done, with an error.
    Error,
    /// Will never run.
    Cancelled,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 7] = [
        State::Waiting,
        State::Scheduled,
        State::Queued,
        State::Processing,
        State::Finished,
        State::Error,
        State::Cancelled,
    ];

    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Scheduled => "scheduled",
            State::Queued => "queued",
            State::Processing => "processing",
            State::Finished => "finished",
            State::Error => "error",
            State::Cancelled => "cancelled",
        }
    }

    /// The dask status this state shows as.
    pub fn status(self) -> Status {
        match self {
            State::Waiting | State::Scheduled | State::Queued | State::Processing => {
                Status::Pending
            }
            State::Finished => Status::Finished,
            State::Error => Status::Error,
            State::Cancelled => Status::Cancelled,
        }
    }

    /// Whether nothing can change this state any more.
    pub fn is_terminal(self) -> bool {
        self.status() != Status::Pending
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown task state {s:?}"))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    /// The dask name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Finished => "finished",
            Status::Error => "error",
            Status::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_fold_to_dask_statuses() {
        for st in State::ALL {
            assert_eq!(st.as_str().parse::<State>().unwrap(), st);
        }
        assert_eq!(State::Processing.status(), Status::Pending);
        assert!(State::Cancelled.is_terminal());
        assert!(!State::Waiting.is_terminal());
        assert!("bogus".parse::<State>().is_err());
    }
}

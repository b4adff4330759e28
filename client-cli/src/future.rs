//! A future: a handle on a task's eventual result.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;
use warren_core::messages::{TaskFailure, Terminal};
use warren_core::status::{State, Status};

use crate::client::Client;
use crate::error::Error;

/// A task's eventual result, like dask's `Future`.
///
/// It serializes as `{"$future": key}`, so a future (or a list or map of them)
/// passed as an argument to `submit` makes the new task depend on it.
#[derive(Clone)]
pub struct Future {
    key: String,
    client: Client,
}

/// A future's status and, for pending ones, where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureStatus {
    /// dask's status: pending, finished, error, cancelled.
    pub status: Status,
    /// The detail: waiting, scheduled, queued, processing (or the final state).
    pub state: State,
    /// When a `scheduled` task is due (Unix ms, Redis's clock).
    pub due_ms: Option<u64>,
}

impl fmt::Display for FutureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Status::Pending, Some(due)) = (self.status, self.due_ms) {
            let at = warren_core::timing::format_at(due);
            write!(f, "{} ({}, due {at})", self.status, self.state)
        } else if self.status == Status::Pending {
            write!(f, "{} ({})", self.status, self.state)
        } else {
            write!(f, "{}", self.status)
        }
    }
}

impl Future {
    pub(crate) fn new(key: String, client: Client) -> Self {
        Self { key, client }
    }

    /// The key (unique in the namespace).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current status, read from Redis.
    pub async fn status(&self) -> Result<FutureStatus, Error> {
        let state = self.client.states(std::slice::from_ref(&self.key)).await?[0];
        let due_ms = match state {
            State::Scheduled => self.client.due(&self.key).await?,
            _ => None,
        };
        Ok(FutureStatus {
            status: state.status(),
            state,
            due_ms,
        })
    }

    /// Waits for the final state without raising the task's error (dask's
    /// `exception()`/`traceback()` in one).
    pub async fn outcome(&self) -> Result<Terminal, Error> {
        Ok(self
            .client
            .outcomes(std::slice::from_ref(&self.key))
            .await?
            .remove(0))
    }

    /// Waits for the value; a failed task is [`Error::Task`] with its type,
    /// message and traceback.
    pub async fn result(&self) -> Result<Value, Error> {
        into_value(&self.key, self.outcome().await?)
    }

    /// The task's error, if it failed, without raising it (dask's `exception()`).
    pub async fn exception(&self) -> Result<Option<TaskFailure>, Error> {
        Ok(match self.outcome().await? {
            Terminal::Error { error } => Some(error),
            _ => None,
        })
    }

    /// The task's traceback, if it failed (dask's `traceback()`).
    pub async fn traceback(&self) -> Result<Option<String>, Error> {
        Ok(self.exception().await?.map(|e| e.traceback))
    }

    /// Whether the future is final (finished, error or cancelled).
    pub async fn done(&self) -> Result<bool, Error> {
        Ok(self.status().await?.status != Status::Pending)
    }

    /// Cancels this future and its dependents.
    pub async fn cancel(&self) -> Result<(), Error> {
        self.client.cancel(std::slice::from_ref(&self.key)).await
    }

    /// Calls `callback` with the final state once there is one (dask's
    /// `add_done_callback`), on the runtime, without blocking the caller.
    pub fn add_done_callback<F>(&self, callback: F)
    where
        F: FnOnce(Result<Terminal, Error>) + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move { callback(me.outcome().await) });
    }

    /// [`Future::result`], decoded into `T`.
    pub async fn result_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_value(self.result().await?)?)
    }
}

/// The value of a final state, or the matching error.
pub(crate) fn into_value(key: &str, t: Terminal) -> Result<Value, Error> {
    match t {
        Terminal::Finished { value } => Ok(value),
        Terminal::Error { error } => Err(Error::Task {
            key: key.to_string(),
            failure: error,
        }),
        Terminal::Cancelled => Err(Error::Cancelled {
            key: key.to_string(),
        }),
    }
}

impl Serialize for Future {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        warren_core::args::future_ref(&self.key).serialize(s)
    }
}

impl fmt::Debug for Future {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Future: key: {}>", self.key)
    }
}

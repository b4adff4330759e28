//! Submitting: the options of a `submit` or `map`, and batches published in
//! the background.
//!
//! Why in the background: `client.map(f, arrays)` seals and stores one
//! envelope per call. Published in one batch at the end, no worker started
//! before the client had sealed the last array; published in batches that
//! each waited for their stores, the Python thread waited on every batch
//! (issue 32's array row, measured in BENCHMARKS.md). A batch now settles
//! its stores and publishes on the runtime while the Python thread seals the
//! next; `map` collects the keys at the end.
//!
//! No task refers to a value not stored yet: a batch is started after its
//! calls' stores, and [`Puts::settle`] returns only once every store started
//! before it was called has ended, whichever settle took it.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::Value;
use tokio::task::JoinHandle;
use warren_client::{Error, SubmitOptions};

use crate::blocking::{runtime, wait};
use crate::client::to_py;
use crate::puts::Puts;

/// The options every task of one `submit` or `map` shares, checked once
/// when Python makes them and used for each batch it publishes.
#[pyclass(frozen, module = "warren._warren")]
pub struct Submission {
    opts: SubmitOptions,
}

#[pymethods]
impl Submission {
    /// Checks the options as Python gave them; `retry` is a
    /// `timing::RetryPolicy` as JSON. `delay_ms`, `at_ms` and `retry` say
    /// when each task may run.
    #[new]
    #[pyo3(signature = (pure=true, retries=0, priority=0, queue=None, timeout=None, *, delay_ms=None, at_ms=None, retry=None, concurrency_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        pure: bool,
        retries: u32,
        priority: i64,
        queue: Option<String>,
        timeout: Option<f64>,
        delay_ms: Option<u64>,
        at_ms: Option<u64>,
        retry: Option<String>,
        concurrency_key: Option<String>,
    ) -> PyResult<Self> {
        let retry = retry
            .map(|text| {
                serde_json::from_str::<warren_core::timing::RetryPolicy>(&text)
                    .map_err(|e| PyValueError::new_err(format!("retry policy: {e}")))
            })
            .transpose()?;
        Ok(Self {
            opts: SubmitOptions {
                key: None,
                pure,
                queue,
                retries,
                timeout_secs: timeout,
                priority,
                delay: delay_ms.map(std::time::Duration::from_millis),
                at_ms,
                retry,
                concurrency_key,
                detach: false,
            },
        })
    }
}

impl Submission {
    /// The work of publishing `func` once per argument list (JSON arrays),
    /// each named by its key where given: it settles the client's stores
    /// first. Bad arguments are refused here, before anything runs.
    pub fn publish(
        &self,
        client: &warren_client::Client,
        puts: &Arc<Puts>,
        func: String,
        arg_lists: Vec<String>,
        keys: Vec<Option<String>>,
    ) -> PyResult<impl Future<Output = Published> + Send + 'static> {
        if !keys.is_empty() && keys.len() != arg_lists.len() {
            return Err(PyValueError::new_err(format!(
                "{} keys for {} tasks",
                keys.len(),
                arg_lists.len()
            )));
        }
        let lists = arg_lists
            .iter()
            .map(|a| match serde_json::from_str::<Value>(a) {
                Ok(Value::Array(v)) => Ok(v),
                Ok(_) => Err(PyValueError::new_err("arguments must be a JSON array")),
                Err(e) => Err(PyValueError::new_err(format!(
                    "arguments are not JSON: {e}"
                ))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut keys = keys;
        keys.resize(lists.len(), None);
        let calls: Vec<(Vec<Value>, Option<String>)> = lists.into_iter().zip(keys).collect();
        let (client, puts, opts) = (client.clone(), puts.clone(), self.opts.clone());
        Ok(async move {
            puts.settle().await?;
            let fs = client.map_with_keys(&func, calls, &opts).await?;
            Ok(fs.iter().map(|f| f.key().to_string()).collect())
        })
    }
}

/// The keys of a published batch, or why it was not.
type Published = Result<Vec<String>, Error>;

/// A batch being published in the background (`Client.submit`).
#[pyclass(module = "warren._warren", frozen)]
pub struct Publishing {
    /// Taken by the one `keys()` that waits for it.
    task: Mutex<Option<JoinHandle<Published>>>,
}

impl Publishing {
    /// Starts publishing on the runtime.
    pub fn start(job: impl Future<Output = Result<Vec<String>, Error>> + Send + 'static) -> Self {
        Self {
            task: Mutex::new(Some(runtime().spawn(job))),
        }
    }
}

#[pymethods]
impl Publishing {
    /// Waits until the batch is published: its keys, in order, or the
    /// error that stopped it (a store that failed, the broker). Once only.
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let task = self
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| PyValueError::new_err("this batch's keys were already taken"))?;
        match wait(py, task)? {
            Ok(outcome) => outcome.map_err(to_py),
            Err(e) => Err(to_py(Error::Core(warren_core::Error::Script(format!(
                "publishing a batch failed: {e}"
            ))))),
        }
    }
}

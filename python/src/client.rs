//! The `Client` class: warren's Rust client, driven from Python.
//!
//! Arguments arrive as JSON text that the Python side has checked (and in
//! which futures are already `{"$future": key}`); final states leave as a
//! `(state, json)` pair that the Python side turns into a value or an
//! exception. Everything that waits goes through [`crate::blocking::wait`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::keys::Keys;
use crate::objects::Got;
use bytes::Bytes;
use futures::StreamExt;
use pyo3::exceptions::{PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};
use warren_client::{Error, Terminal, WaitMode};
use warren_core::Settings;
use warren_core::store::blobs::BlobRef;

use crate::blocking::{released, runtime, wait};
use crate::publishing::{Publishing, Submission};
use crate::puts::Puts;
use crate::{UnservedFunction, WarrenError};

/// A connection to one warren namespace (see `warren.Client`).
#[pyclass(module = "warren._warren", frozen)]
pub struct Client {
    inner: warren_client::Client,
    /// Values being stored in the background ([`Client::put_blob_later`]):
    /// every call that publishes a message settles them first.
    puts: Arc<Puts>,
}

/// A Python exception for a client error.
pub fn to_py(e: Error) -> PyErr {
    match e {
        Error::Timeout { .. } => PyTimeoutError::new_err(e.to_string()),
        Error::InvalidArgument(m) => PyValueError::new_err(m),
        Error::UnservedFunction(m) => UnservedFunction::new_err(m),
        Error::Core(warren_core::Error::Invalid(m)) => PyValueError::new_err(m),
        other => WarrenError::new_err(other.to_string()),
    }
}

/// A final state as `(state, json)`: the value, the failure
/// (`{type, message, traceback, previous}`), or nothing for a cancel.
fn encode(t: Terminal) -> (&'static str, String) {
    match t {
        Terminal::Finished { value } => ("finished", value.to_string()),
        Terminal::Error { error } => (
            "error",
            serde_json::to_string(&error).unwrap_or_else(|_| "{}".into()),
        ),
        Terminal::Cancelled => ("cancelled", String::new()),
    }
}

pub(crate) fn seconds(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!("timeout must be a number of seconds >= 0, not {s}"))
            })
        })
        .transpose()
}

/// Bounds `fut` by `timeout`; past it, Python's `TimeoutError` naming `what`.
async fn within<T>(
    timeout: Option<Duration>,
    what: String,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> PyResult<T> {
    match timeout {
        None => fut.await.map_err(to_py),
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(r) => r.map_err(to_py),
            Err(_) => Err(PyTimeoutError::new_err(format!(
                "{what} not done after {}s",
                d.as_secs_f64()
            ))),
        },
    }
}

/// Settings as `Client(config, **overrides)` names them: defaults,
/// `warren.toml` (or `config`), `WARREN_*`, then `overrides`; an unknown
/// name is Python's `TypeError`, as for any unexpected keyword argument.
pub(crate) fn load_settings(
    config: Option<PathBuf>,
    overrides: &[(String, String)],
) -> PyResult<Settings> {
    for (name, _) in overrides {
        if !Settings::FIELDS.contains(&name.as_str()) {
            let mut known = Settings::FIELDS.to_vec();
            known.sort_unstable();
            return Err(PyTypeError::new_err(format!(
                "Client() got an unexpected keyword argument {name:?}; warren's settings are: {}",
                known.join(", ")
            )));
        }
    }
    let pairs: Vec<(&str, String)> = overrides
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    Settings::load(config.as_deref(), &pairs).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymethods]
impl Client {
    /// Connects with warren's settings (defaults, `warren.toml` or `config`,
    /// `WARREN_*`), then `overrides` (setting name, value).
    #[new]
    #[pyo3(signature = (config=None, overrides=Vec::new()))]
    fn new(
        py: Python<'_>,
        config: Option<PathBuf>,
        overrides: Vec<(String, String)>,
    ) -> PyResult<Self> {
        let settings = load_settings(config, &overrides)?;
        let inner = wait(py, warren_client::Client::connect(settings))?.map_err(to_py)?;
        Ok(Self {
            inner,
            puts: Arc::default(),
        })
    }

    /// The keys this client's settings name (`key_file`), or none.
    fn keys(&self) -> PyResult<crate::keys::Keys> {
        let ring = self
            .inner
            .settings()
            .keyring()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(crate::keys::Keys::new(ring))
    }

    /// Stores `data` in the namespace: its `(hash, size)` reference.
    fn put_blob(&self, py: Python<'_>, data: &[u8]) -> PyResult<(String, u64)> {
        let inner = self.inner.clone();
        let data = data.to_vec();
        let r = wait(py, async move { inner.put_blob(data).await })?.map_err(to_py)?;
        Ok((r.hash, r.size))
    }

    /// The client's object store (`store_url`), into which a big value is
    /// sealed straight from its buffers; `None` without one.
    fn object_store(&self) -> Option<crate::objects::Objects> {
        let store = self.inner.objects()?;
        let inline_max = self.inner.settings().inline_max_bytes;
        Some(crate::objects::Objects::new(store.clone(), inline_max))
    }

    /// Starts storing `data` in the namespace and returns its `(hash, size)`
    /// reference at once (see [`crate::puts`]): the Python thread goes on
    /// while the bytes are written, and every call that publishes waits for
    /// them first. The `bytes` object is kept, not copied, until written.
    fn put_blob_later(&self, py: Python<'_>, data: PyBackedBytes) -> PyResult<(String, u64)> {
        let (inner, puts) = (&self.inner, &self.puts);
        let r = released(py, || {
            let bytes = Bytes::from_owner(data);
            let r = BlobRef::of(&bytes);
            puts.start(inner, r.clone(), bytes).map(|()| r)
        })
        .map_err(to_py)?;
        Ok((r.hash, r.size))
    }

    /// The bytes of the value `(hash, size)` names, checked, as a new
    /// `bytearray` (which an envelope opens in place: an array built on
    /// it is not copied again).
    fn get_blob<'py>(
        &self,
        py: Python<'py>,
        hash: String,
        size: u64,
    ) -> PyResult<Bound<'py, pyo3::types::PyByteArray>> {
        let r = BlobRef { hash, size };
        // A value in the object store straight into the bytearray: one
        // copy. Anything else (missing there too) takes the general path,
        // which also looks in Redis and says where it looked.
        if let (Some(objects), Ok(len)) = (self.inner.objects_for(size), usize::try_from(size))
            && let Ok(Got::Value(buf, _)) = crate::objects::read_value(py, objects, &r, len)
        {
            return Ok(buf);
        }
        let inner = self.inner.clone();
        let bytes = wait(py, async move { inner.get_blob(&r).await })?.map_err(to_py)?;
        Ok(pyo3::types::PyByteArray::new(py, &bytes))
    }

    /// The envelope `(hash, size)` names, read from the object store and
    /// opened by `keys` for `purpose`, hashed once for its name and its
    /// MAC together (see `Objects.open_envelope`): the bytes and
    /// `Keys.open_in`'s answer. `None` if it is not there to read (a value
    /// in Redis): then `get_blob`, which says where it looked.
    fn open_blob<'py>(
        &self,
        py: Python<'py>,
        hash: String,
        size: u64,
        keys: PyRef<'py, Keys>,
        purpose: &str,
    ) -> PyResult<Option<crate::objects::Opened<'py>>> {
        let r = BlobRef { hash, size };
        match (self.inner.objects_for(size), usize::try_from(size)) {
            (Some(objects), Ok(len)) => match crate::objects::read_value(py, objects, &r, len) {
                Ok(Got::Value(buf, body)) => {
                    crate::objects::opened(py, buf, &body, &keys, purpose).map(Some)
                }
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// The namespace: prefix of every queue and Redis key.
    #[getter]
    fn namespace(&self) -> String {
        self.inner.settings().namespace.clone()
    }

    /// The RabbitMQ URL, password hidden.
    #[getter]
    fn amqp_url(&self) -> String {
        let nodes = warren_core::amqp::node_urls(&self.inner.settings().amqp_url);
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(warren_core::settings::redact_url)
            .collect();
        nodes.join(",")
    }

    /// The Redis URL, password hidden.
    #[getter]
    fn redis_url(&self) -> String {
        warren_core::settings::redact_url(&self.inner.settings().redis_url)
    }

    /// Submits `func` once per argument list (JSON arrays) with `options`,
    /// published in the background (see [`crate::publishing`]): returns at
    /// once, and the `Publishing`'s `keys()` waits for the keys (or the
    /// error). `keys` names each task's future where given (else warren's
    /// pure or random key), one per argument list or none at all.
    fn submit(
        &self,
        func: String,
        arg_lists: Vec<String>,
        keys: Vec<Option<String>>,
        options: &Submission,
    ) -> PyResult<Publishing> {
        let job = options.publish(&self.inner, &self.puts, func, arg_lists, keys)?;
        Ok(Publishing::start(job))
    }

    /// Fails unless a live worker consuming `queue` runs `func`.
    fn check_served(&self, py: Python<'_>, func: String, queue: String) -> PyResult<()> {
        let client = self.inner.clone();
        wait(py, async move { client.check_served(&func, &queue).await })?.map_err(to_py)
    }

    /// Adds (or replaces) periodic schedule `name`: `func(*args)` (a JSON
    /// array) every `every_ms` or at cron expression `cron`; `missed` is
    /// `run-once` or `skip`. Returns its first tick (Unix ms).
    #[pyo3(signature = (name, func, args, queue, every_ms, cron, missed))]
    #[allow(clippy::too_many_arguments)]
    fn add_schedule(
        &self,
        py: Python<'_>,
        name: String,
        func: String,
        args: String,
        queue: String,
        every_ms: Option<u64>,
        cron: Option<String>,
        missed: String,
    ) -> PyResult<u64> {
        use warren_core::periodic::{Missed, Schedule};
        let args = match serde_json::from_str::<Value>(&args) {
            Ok(Value::Array(v)) => v,
            _ => return Err(PyValueError::new_err("arguments must be a JSON array")),
        };
        let missed = match missed.as_str() {
            "run-once" => Missed::RunOnce,
            "skip" => Missed::Skip,
            other => {
                return Err(PyValueError::new_err(format!(
                    "missed={other:?}: use 'run-once' or 'skip'"
                )));
            }
        };
        let schedule = Schedule {
            func,
            args,
            queue,
            every_ms,
            cron,
            start_ms: warren_core::messages::now_ms(),
            missed,
            paused: false,
        };
        let (client, puts) = (self.inner.clone(), self.puts.clone());
        wait(py, async move {
            puts.settle().await?;
            client.add_schedule(&name, &schedule).await
        })?
        .map_err(to_py)
    }

    /// Removes periodic schedule `name`; whether it existed.
    fn remove_schedule(&self, py: Python<'_>, name: String) -> PyResult<bool> {
        let client = self.inner.clone();
        wait(py, async move { client.remove_schedule(&name).await })?.map_err(to_py)
    }

    /// The keys of schedule `name`'s latest runs, newest first.
    fn schedule_runs(&self, py: Python<'_>, name: String) -> PyResult<Vec<String>> {
        let client = self.inner.clone();
        wait(py, async move { client.schedule_runs(&name).await })?.map_err(to_py)
    }

    /// Waits until every submission so far is recorded by a scheduler.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let (client, puts) = (self.inner.clone(), self.puts.clone());
        wait(py, async move {
            puts.settle().await?;
            client.flush().await
        })?
        .map_err(to_py)
    }

    /// The final state of each key, in order, as `(state, json)`.
    #[pyo3(signature = (keys, timeout=None))]
    fn outcomes(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<(&'static str, String)>> {
        let timeout = seconds(timeout)?;
        let client = self.inner.clone();
        let what = match keys.as_slice() {
            [one] => format!("future {one}"),
            many => format!("{} futures", many.len()),
        };
        let ts = wait(py, async move {
            within(timeout, what, client.outcomes(&keys)).await
        })??;
        Ok(ts.into_iter().map(encode).collect())
    }

    /// `(status, state)` of each key: dask's status and warren's detail.
    fn statuses(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<Vec<(String, String)>> {
        let client = self.inner.clone();
        let states = wait(py, async move { client.states(&keys).await })?.map_err(to_py)?;
        Ok(states
            .into_iter()
            .map(|s| (s.status().to_string(), s.to_string()))
            .collect())
    }

    /// dask's `wait`: `(done, not_done)` once the first (or every) key is
    /// final, or once `timeout` passes.
    #[pyo3(signature = (keys, first, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        first: bool,
        timeout: Option<f64>,
    ) -> PyResult<(Vec<String>, Vec<String>)> {
        let timeout = seconds(timeout)?;
        let mode = if first {
            WaitMode::FirstCompleted
        } else {
            WaitMode::AllCompleted
        };
        let client = self.inner.clone();
        wait(py, async move { client.wait(&keys, mode, timeout).await })?.map_err(to_py)
    }

    /// Final states in the order they happen; more keys may be added to
    /// the same stream later (`Completed::add`).
    fn as_completed(&self, keys: Vec<String>) -> Completed {
        let (tx, rx) = mpsc::unbounded_channel();
        let completed = Completed {
            rx: Arc::new(Mutex::new(rx)),
            tx,
            client: self.inner.clone(),
        };
        completed.follow(keys);
        completed
    }

    /// The namespace's coordination primitives (`warren.Variable`, ...).
    fn coordination(&self) -> crate::coordination::Coordination {
        crate::coordination::Coordination::new(self.inner.clone())
    }

    /// What task `key` printed, `(stdout, stderr)`, if anything was kept.
    fn logs(&self, py: Python<'_>, key: String) -> PyResult<Option<(String, String)>> {
        let client = self.inner.clone();
        let logs = wait(py, async move { client.logs(&key).await })?.map_err(to_py)?;
        Ok(logs.map(|l| (l.stdout, l.stderr)))
    }

    /// Cancels the keys and everything that depends on them.
    fn cancel(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<()> {
        let client = self.inner.clone();
        wait(py, async move { client.cancel(&keys).await })?.map_err(to_py)
    }

    /// Drops finished keys' records and results; returns how many went.
    fn forget(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<usize> {
        let client = self.inner.clone();
        let gone = wait(py, async move { client.forget(&keys).await })?.map_err(to_py)?;
        Ok(gone.len())
    }

    /// Cancels every future of the namespace and empties its queues;
    /// returns `(epoch, workers expected, workers that confirmed)`.
    fn restart(&self, py: Python<'_>) -> PyResult<(u64, u32, usize)> {
        let client = self.inner.clone();
        let r = wait(py, async move { client.restart().await })?.map_err(to_py)?;
        Ok((r.epoch, r.workers_expected, r.workers_ready.len()))
    }

    /// Broadcasts `func(args)` (the argument list as JSON text, as
    /// `submit` takes one) to every worker that has it; the run's id.
    fn run(&self, py: Python<'_>, func: String, args: String) -> PyResult<String> {
        let args: Vec<Value> = serde_json::from_str(&args)
            .map_err(|e| PyValueError::new_err(format!("arguments of run: {e}")))?;
        let (client, puts) = (self.inner.clone(), self.puts.clone());
        wait(py, async move {
            puts.settle().await?;
            client.run(&func, args).await
        })?
        .map_err(to_py)
    }

    /// Each worker's outcome of run `id` so far: `{worker: JSON}`.
    fn run_outcomes(
        &self,
        py: Python<'_>,
        id: String,
    ) -> PyResult<std::collections::HashMap<String, String>> {
        let client = self.inner.clone();
        wait(py, async move { client.run_outcomes(&id).await })?.map_err(to_py)
    }

    /// What the namespace's tasks print from now on, as they print it.
    fn output(&self, py: Python<'_>) -> PyResult<crate::output::OutputStream> {
        let client = self.inner.clone();
        let rx = wait(py, async move { client.output().await })?;
        Ok(crate::output::OutputStream::new(rx))
    }

    /// Schedulers consuming the namespace's submit queue now.
    fn scheduler_count(&self, py: Python<'_>) -> PyResult<u32> {
        let client = self.inner.clone();
        wait(py, async move { client.scheduler_count().await })
    }

    /// What `repr(client)` shows, as JSON: schedulers, live workers (slots,
    /// queues, functions), the namespace's counters.
    fn info(&self, py: Python<'_>) -> PyResult<String> {
        let client = self.inner.clone();
        let info = wait(py, async move {
            let schedulers = client.scheduler_count().await;
            let workers = client.workers().await?;
            let stats = client.info().await?.stats;
            Ok::<_, Error>(serde_json::json!({
                "namespace": client.settings().namespace,
                "schedulers": schedulers,
                "workers": workers,
                "stats": stats.0,
                "pending": stats.pending(),
            }))
        })?
        .map_err(to_py)?;
        Ok(info.to_string())
    }
}

/// Final states as [`warren_client::Client::as_completed`] yields them.
type Arrivals = mpsc::UnboundedReceiver<Result<(String, Terminal), Error>>;

/// The stream of [`Client::as_completed`], read one final state at a time.
/// It never ends by itself, since keys may be added: the Python side counts
/// what it still waits for.
#[pyclass(module = "warren._warren", frozen)]
pub struct Completed {
    rx: Arc<Mutex<Arrivals>>,
    tx: mpsc::UnboundedSender<Result<(String, Terminal), Error>>,
    client: warren_client::Client,
}

impl Completed {
    /// Forwards the final states of `keys` into this stream as they come.
    fn follow(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        let client = self.client.clone();
        runtime().spawn(async move {
            let stream = client.as_completed(&keys);
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
    }
}

/// A final state as Python takes it: `(key, state, json)`.
type Arrival = (String, &'static str, String);

fn arrival(item: Result<(String, Terminal), Error>) -> PyResult<Arrival> {
    let (key, t) = item.map_err(to_py)?;
    let (state, json) = encode(t);
    Ok((key, state, json))
}

#[pymethods]
impl Completed {
    /// Waits for the final states of `keys` too.
    fn add(&self, keys: Vec<String>) {
        self.follow(keys);
    }

    /// The next `(key, state, json)`; `TimeoutError` after `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Arrival>> {
        let timeout = seconds(timeout)?;
        let rx = self.rx.clone();
        let item = wait(py, async move {
            let mut rx = rx.lock().await;
            match timeout {
                None => Ok(rx.recv().await),
                Some(d) => tokio::time::timeout(d, rx.recv()).await.map_err(|_| d),
            }
        })?;
        match item {
            Err(d) => Err(PyTimeoutError::new_err(format!(
                "no future completed within {}s",
                d.as_secs_f64()
            ))),
            Ok(None) => Ok(None),
            Ok(Some(item)) => arrival(item).map(Some),
        }
    }

    /// Every final state that has already arrived, without waiting (none
    /// while another thread waits in `next`).
    fn ready(&self) -> PyResult<Vec<Arrival>> {
        let Ok(mut rx) = self.rx.try_lock() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            out.push(arrival(item)?);
        }
        Ok(out)
    }
}

//! `run_worker`: warren's worker runtime serving Python functions.
//!
//! The runtime is the Rust worker's own ([`warren_worker::Worker`]):
//! consuming, admission, starts recorded in Redis, reports, acks, drain,
//! heartbeats that announce the functions. Each registered name is a bridge
//! ([`warren_worker::Registry::register_raw`]) to a prefork pool of Python
//! processes ([`warren_worker::prefork`]) that imported the user's modules,
//! one per slot, so N slots use N cores whatever the GIL does.

use std::path::PathBuf;
use std::sync::{Arc, Once};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use warren_core::Settings;
use warren_core::messages::TaskFailure;
use warren_core::store::blobs::BlobRef;
use warren_core::store::output::Chunk;
use warren_worker::prefork::{Asides, Blob, ChildCommand, Greeting, Prefork};
use warren_worker::{Registry, Worker};

/// Serves `functions` (registered names) from `queues` with `concurrency`
/// Python processes, each started as `python child_args...`; returns once
/// the worker has drained (SIGTERM or Ctrl-C).
#[pyfunction]
#[pyo3(signature = (functions, python, child_args, queues, concurrency=None, config=None, overrides=Vec::new(), log_format="human".to_string()))]
#[allow(clippy::too_many_arguments)]
pub fn run_worker(
    py: Python<'_>,
    functions: Vec<String>,
    python: PathBuf,
    child_args: Vec<String>,
    queues: Vec<String>,
    concurrency: Option<usize>,
    config: Option<PathBuf>,
    overrides: Vec<(String, String)>,
    log_format: String,
) -> PyResult<()> {
    static LOGGING: Once = Once::new();
    LOGGING.call_once(|| {
        warren_core::logging::init(
            warren_core::logging::Format::named(&log_format),
            "RUST_LOG",
            "info,lapin=off",
        );
    });
    let mut pairs: Vec<(&str, String)> = overrides
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    // The pool is the isolation: each slot's call already runs in a
    // process of its own, which a stop ends for real.
    pairs.push(("isolation", "thread".into()));
    if let Some(n) = concurrency {
        pairs.push(("concurrency", n.to_string()));
    }
    let settings = Settings::load(config.as_deref(), &pairs)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let size = settings.effective_concurrency();
    let keys = settings
        .keyring()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    if settings.accept_code && keys.is_none() {
        return Err(PyValueError::new_err(
            "--accept-code needs the namespace key, to check that a key holder signed the code: make one with `warren key new` and give its file to the worker (setting key_file, WARREN_KEY_FILE)",
        ));
    }
    let key_file = warren_core::signing::key_file(&settings.key_file)
        .filter(|_| keys.is_some())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let command = ChildCommand {
        program: python,
        args: child_args.into_iter().map(Into::into).collect(),
        env: vec![
            // The pool processes verify and open what they run with the
            // worker's key, and run code only if the worker accepts it.
            ("WARREN_KEY_FILE".into(), Some(key_file.clone())),
            (
                "WARREN_PREVIOUS_KEY_FILE".into(),
                Some(settings.previous_key_file.clone()),
            ),
            (
                "WARREN_ACCEPT_CODE".into(),
                Some(
                    if settings.accept_code {
                        "true"
                    } else {
                        "false"
                    }
                    .into(),
                ),
            ),
            // The passwords stay out of their environment (and so out of
            // /proc/<pid>/environ): a task's get_client() has them from the
            // greeting, in memory.
            ("WARREN_AMQP_URL".into(), None),
            ("WARREN_REDIS_URL".into(), None),
        ],
        greeting: Some(Greeting(greeting(&settings, &key_file))),
    };
    let mut functions = functions;
    if settings.accept_code {
        functions.push(warren_core::routing::CODE_FUNC.to_string());
    }
    py.allow_threads(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("warren-worker")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the worker's runtime: {e}"))?;
        let store = runtime
            .block_on(warren_core::store::Store::connect(&settings))
            .map_err(|e| e.to_string())?;
        let values = Values {
            store,
            rt: runtime.handle().clone(),
            recent: Arc::default(),
        };
        let pool = Arc::new(Prefork::start(command, size).map_err(|e| e.to_string())?);
        let mut registry = Registry::new();
        for name in functions {
            let pool = pool.clone();
            let func = name.clone();
            let values = values.clone();
            registry.register_raw(&name, move |args, site| {
                let blobs = values.fetch(&args)?;
                let forward = |chunk: &serde_json::Value| values.forward_output(site.key, chunk);
                let asides = Asides {
                    seat: site.seat,
                    output: Some(&forward),
                };
                let (outcome, logs) = pool.call_logged(
                    site.key,
                    &func,
                    args,
                    &blobs,
                    &warren_worker::cancel::is_cancelled,
                    &asides,
                );
                if let Some(logs) = logs {
                    values.keep_logs(site.key, &logs);
                }
                let (value, made) = outcome.map_err(|mut failure| {
                    failure.traceback = with_site(&failure.traceback, site.key, &func, site.worker);
                    failure
                })?;
                values.keep(site.key, made)?;
                Ok(value)
            });
        }
        Worker::new(settings, registry)
            .queues(queues)
            .on_restart(move || {
                // New processes import the modules afresh: an edited module
                // is what the tasks after a restart run.
                if let Err(e) = pool.recycle() {
                    tracing::error!(error = %e, "the pool could not start afresh after a restart; tasks start new processes as they come");
                }
            })
            .run_on(runtime)
            .map_err(|e| e.to_string())
    })
    .map_err(PyRuntimeError::new_err)
}

/// The values that are not JSON, in Redis: fetched for a task's arguments
/// before its pool process gets them, stored for its result after. The
/// worker does this I/O, so pool processes need no connection (and no
/// password) of their own. Values in the object store are the exception:
/// pool processes read and write those themselves (see `objects`), and
/// the worker sees only their references.
#[derive(Clone)]
struct Values {
    store: warren_core::store::Store,
    rt: tokio::runtime::Handle,
    /// Small values read lately, by hash: a function sent as code for a
    /// map of 10,000 tasks is read from Redis once, not 10,000 times. The
    /// bytes of a hash never change, so a copy is as good as Redis's.
    recent: Arc<std::sync::Mutex<Recent>>,
}

/// A bounded memory of small blobs, oldest forgotten first.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<String>,
    bytes: std::collections::HashMap<String, Vec<u8>>,
    total: usize,
}

/// Blobs kept in [`Recent`]: each at most this big, all at most [`RECENT_TOTAL`].
const RECENT_ONE: usize = 1 << 20;
const RECENT_TOTAL: usize = 32 << 20;

impl Recent {
    fn get(&self, sha: &str) -> Option<Vec<u8>> {
        self.bytes.get(sha).cloned()
    }

    fn keep(&mut self, sha: &str, bytes: &[u8]) {
        if bytes.len() > RECENT_ONE || self.bytes.contains_key(sha) {
            return;
        }
        self.total += bytes.len();
        self.order.push_back(sha.to_string());
        self.bytes.insert(sha.to_string(), bytes.to_vec());
        while self.total > RECENT_TOTAL {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(b) = self.bytes.remove(&old) {
                self.total -= b.len();
            }
        }
    }
}

impl Values {
    /// The blobs `args` refer to, each once, checked against its hash.
    fn fetch(&self, args: &[serde_json::Value]) -> Result<Vec<Blob>, TaskFailure> {
        let mut blobs: Vec<Blob> = Vec::new();
        for r in BlobRef::all_in(args) {
            // A big value the pool process reads from the store itself.
            if self.store.in_objects(r.size) {
                continue;
            }
            let known = self
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&r.hash);
            let bytes = match known {
                Some(b) => b,
                None => {
                    let b = self.rt.block_on(self.store.get_blob(&r)).map_err(|e| {
                        TaskFailure::new(
                            "LostValue",
                            format!("an argument could not be read: {e}"),
                            "",
                        )
                    })?;
                    self.recent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .keep(&r.hash, &b);
                    b
                }
            };
            blobs.push(Blob {
                hash: r.hash,
                bytes,
            });
        }
        Ok(blobs)
    }

    /// What a task printed, kept for `future.logs()` and `warren logs KEY`
    /// as a program task's output is; losing it fails no task.
    fn keep_logs(&self, key: &str, logs: &serde_json::Value) {
        if let Err(e) = self
            .rt
            .block_on(self.store.put_logs(key, &logs.to_string()))
        {
            tracing::warn!(key, error = %e, "a task's output could not be kept for its logs");
        }
    }

    /// Publishes what task `key` printed just now, for clients that
    /// forward output; a chunk that cannot be published is only logged (the
    /// task's output is kept with its result anyway).
    fn forward_output(&self, key: &str, chunk: &serde_json::Value) {
        let Ok(chunk) = serde_json::from_value::<Chunk>(chunk.clone()) else {
            return;
        };
        if let Err(e) = self.rt.block_on(self.store.publish_output(key, &chunk)) {
            tracing::debug!(key, error = %e, "could not publish a task's output");
        }
    }

    /// Stores the blobs a task's value refers to (those its pool process
    /// handed over; it stored the big ones itself).
    fn keep(&self, key: &str, blobs: Vec<Vec<u8>>) -> Result<(), TaskFailure> {
        for b in blobs {
            self.rt.block_on(self.store.put_blob(b)).map_err(|e| {
                TaskFailure::new(
                    "WorkerError",
                    format!("the result of task {key} could not be stored: {e}"),
                    "",
                )
            })?;
        }
        Ok(())
    }
}

/// A Python traceback with the task's place (key, function, worker) as
/// its first entry, as the Rust worker's tracebacks have.
fn with_site(traceback: &str, key: &str, func: &str, worker: &str) -> String {
    let site = format!("  task {key} (function {func}) on worker {worker}\n");
    match traceback.split_once('\n') {
        Some((first, rest)) if first.starts_with("Traceback") => format!("{first}\n{site}{rest}"),
        _ if traceback.is_empty() => traceback.to_string(),
        _ => format!("{site}{traceback}"),
    }
}

/// The settings a client needs, as a task's `get_client()` connects with
/// them: the worker's own, sent to each pool process once it is ready.
const CLIENT_SETTINGS: [&str; 19] = [
    "amqp_url",
    "redis_url",
    "namespace",
    "result_ttl_secs",
    "max_payload_bytes",
    "max_message_bytes",
    "redis_timeout_secs",
    "queue_type",
    "request_timeout_secs",
    "previous_key_file",
    "redis_min_replicas",
    // The object store, which pool processes reach themselves for big
    // values (and a task's client for big results).
    "store_url",
    "inline_max_bytes",
    "cache_bytes",
    "cache_dir",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
];

/// The greeting line: `{"settings": {name: text}}` for [`CLIENT_SETTINGS`],
/// with `key_file` the worker's resolved key file (`none` if it has none).
fn greeting(settings: &Settings, key_file: &str) -> String {
    let all = serde_json::to_value(settings).unwrap_or_default();
    let mut out = serde_json::Map::new();
    for name in CLIENT_SETTINGS {
        let text = match all.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => continue,
            Some(v) => v.to_string(),
        };
        out.insert(name.into(), text.into());
    }
    let key = if key_file.is_empty() {
        warren_core::signing::NO_KEY
    } else {
        key_file
    };
    out.insert("key_file".into(), key.into());
    serde_json::json!({ "settings": out }).to_string()
}

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
use warren_worker::prefork::{ChildCommand, Prefork};
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
    let command = ChildCommand {
        program: python,
        args: child_args.into_iter().map(Into::into).collect(),
    };
    py.allow_threads(move || {
        let pool = Arc::new(Prefork::start(command, size).map_err(|e| e.to_string())?);
        let mut registry = Registry::new();
        for name in functions {
            let pool = pool.clone();
            let func = name.clone();
            registry.register_raw(&name, move |args, site| {
                pool.call(site.key, &func, args, &warren_worker::cancel::is_cancelled)
                    .map_err(|mut failure| {
                        failure.traceback =
                            with_site(&failure.traceback, site.key, &func, site.worker);
                        failure
                    })
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("warren-worker")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the worker's runtime: {e}"))?;
        Worker::new(settings, registry)
            .queues(queues)
            .run_on(runtime)
            .map_err(|e| e.to_string())
    })
    .map_err(PyRuntimeError::new_err)
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

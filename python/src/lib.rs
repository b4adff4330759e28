//! `warren._warren`: the Rust engine under the `warren` Python package.
//!
//! Python code (in `python/warren/`) holds the user's API; this module holds
//! what must not be Python: the warren client (one tokio runtime, the
//! RabbitMQ connections and the Redis reads) and the worker runtime, whose
//! task slots hand each call to a Python process of a prefork pool. As in
//! Temporal's Python SDK bridge, Rust does the I/O and Python runs the
//! user's code, and values cross as JSON text, the form they travel in.
//!
//! - [`blocking`]: waiting on the runtime with the GIL released, and
//!   Ctrl-C still heard;
//! - [`client`]: the `Client` class, the library's futures API;
//! - [`keys`]: the namespace key, sealing and opening value envelopes;
//! - [`local`]: settings and the key as a local cluster needs them;
//! - [`objects`]: the object store of big values, as pool processes reach it;
//! - [`output`]: tasks' output as they print it, for `forward_output`;
//! - [`puts`]: values a client stores in the background while it
//!   prepares the next;
//! - [`worker`]: `run_worker`, the worker runtime of `python -m warren worker`,
//!   whose slots hand tasks to Python processes ([`warren_worker::prefork`]).

use pyo3::prelude::*;

mod blocking;
mod client;
mod coordination;
mod keys;
mod local;
mod objects;
mod output;
mod publishing;
mod puts;
mod worker;

pyo3::create_exception!(
    _warren,
    WarrenError,
    pyo3::exceptions::PyException,
    "An error of warren itself (a broker or Redis that cannot be reached, a refused submission), as opposed to a task's own error."
);
pyo3::create_exception!(
    _warren,
    UnservedFunction,
    WarrenError,
    "No live worker runs the function (on its queue); the message lists what is served."
);

/// The extension module.
#[pymodule]
fn _warren(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("WarrenError", m.py().get_type::<WarrenError>())?;
    m.add("UnservedFunction", m.py().get_type::<UnservedFunction>())?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Completed>()?;
    m.add_class::<coordination::Coordination>()?;
    m.add_class::<output::OutputStream>()?;
    m.add_class::<publishing::Publishing>()?;
    m.add_class::<publishing::Submission>()?;
    m.add_class::<keys::Keys>()?;
    m.add_class::<objects::Objects>()?;
    m.add("BadSignature", m.py().get_type::<keys::BadSignature>())?;
    m.add_function(wrap_pyfunction!(keys::blob_hash, m)?)?;
    m.add_function(wrap_pyfunction!(worker::run_worker, m)?)?;
    m.add_function(wrap_pyfunction!(local::resolved_settings, m)?)?;
    m.add_function(wrap_pyfunction!(local::ensure_key, m)?)?;
    // Registered at import, so it runs after every hook registered later
    // (a LocalCluster's close among them): see `blocking`'s module doc.
    let exiting = wrap_pyfunction!(blocking::exiting, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (exiting,))?;
    Ok(())
}

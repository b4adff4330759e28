//! `OutputStream`: what the namespace's tasks print, as they print it, for
//! the Python client's `forward_output` (its thread reads it and prints).

use std::sync::Arc;

use pyo3::prelude::*;
use tokio::sync::{Mutex, mpsc};
use warren_core::store::output::Chunk;

use crate::blocking::wait;
use crate::client::seconds;

/// Tasks' output as `(key, stream, text)`.
#[pyclass(module = "warren._warren", frozen)]
pub struct OutputStream {
    rx: Arc<Mutex<mpsc::UnboundedReceiver<(String, Chunk)>>>,
}

impl OutputStream {
    /// The stream of a client's subscription.
    pub fn new(rx: mpsc::UnboundedReceiver<(String, Chunk)>) -> Self {
        Self {
            rx: Arc::new(Mutex::new(rx)),
        }
    }
}

#[pymethods]
impl OutputStream {
    /// The next `(key, stream, text)`, or `None` once `timeout` seconds
    /// pass without one.
    #[pyo3(signature = (timeout=None))]
    fn next(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(String, String, String)>> {
        let timeout = seconds(timeout)?;
        let rx = self.rx.clone();
        let item = wait(py, async move {
            let mut rx = rx.lock().await;
            match timeout {
                None => rx.recv().await,
                Some(d) => tokio::time::timeout(d, rx.recv()).await.ok().flatten(),
            }
        })?;
        Ok(item.map(|(key, chunk)| (key, chunk.stream, chunk.text)))
    }
}

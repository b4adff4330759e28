//! The Python client's coordination primitives (`warren.Variable`,
//! `Queue`, `Event`, `Lock`, `Semaphore`): Rust does the Redis I/O and the
//! waiting, with the GIL released; Python encodes and decodes the values
//! (`warren/_coordination.py`). Timeouts are seconds; `None` waits for ever.

use std::time::Duration;

use pyo3::prelude::*;

use crate::blocking::wait;
use crate::client::{seconds, to_py};

/// One client's handle on its namespace's primitives.
#[pyclass(module = "warren._warren", frozen)]
pub struct Coordination {
    inner: warren_client::Client,
}

impl Coordination {
    pub fn new(inner: warren_client::Client) -> Self {
        Self { inner }
    }
}

fn lease(secs: f64) -> PyResult<Duration> {
    Ok(seconds(Some(secs))?.unwrap_or_default())
}

#[pymethods]
impl Coordination {
    fn variable_set(&self, py: Python<'_>, name: String, value: String) -> PyResult<()> {
        let c = self.inner.clone();
        wait(py, async move { c.variable_set(&name, &value).await })?.map_err(to_py)
    }

    #[pyo3(signature = (name, timeout=None))]
    fn variable_get(
        &self,
        py: Python<'_>,
        name: String,
        timeout: Option<f64>,
    ) -> PyResult<Option<String>> {
        let (c, t) = (self.inner.clone(), seconds(timeout)?);
        wait(py, async move { c.variable_get(&name, t).await })?.map_err(to_py)
    }

    fn variable_delete(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let c = self.inner.clone();
        wait(py, async move { c.variable_delete(&name).await })?.map_err(to_py)
    }

    #[pyo3(signature = (name, value, maxsize, timeout=None))]
    fn queue_put(
        &self,
        py: Python<'_>,
        name: String,
        value: String,
        maxsize: usize,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let (c, t) = (self.inner.clone(), seconds(timeout)?);
        wait(
            py,
            async move { c.queue_put(&name, &value, maxsize, t).await },
        )?
        .map_err(to_py)
    }

    #[pyo3(signature = (name, timeout=None))]
    fn queue_get(
        &self,
        py: Python<'_>,
        name: String,
        timeout: Option<f64>,
    ) -> PyResult<Option<String>> {
        let (c, t) = (self.inner.clone(), seconds(timeout)?);
        wait(py, async move { c.queue_get(&name, t).await })?.map_err(to_py)
    }

    fn queue_len(&self, py: Python<'_>, name: String) -> PyResult<usize> {
        let c = self.inner.clone();
        wait(py, async move { c.queue_len(&name).await })?.map_err(to_py)
    }

    fn event_set(&self, py: Python<'_>, name: String, set: bool) -> PyResult<()> {
        let c = self.inner.clone();
        wait(py, async move { c.event_set(&name, set).await })?.map_err(to_py)
    }

    #[pyo3(signature = (name, timeout=None))]
    fn event_wait(&self, py: Python<'_>, name: String, timeout: Option<f64>) -> PyResult<bool> {
        let (c, t) = (self.inner.clone(), seconds(timeout)?);
        wait(py, async move { c.event_wait(&name, t).await })?.map_err(to_py)
    }

    #[pyo3(signature = (name, token, lease_secs, timeout=None))]
    fn lock_acquire(
        &self,
        py: Python<'_>,
        name: String,
        token: String,
        lease_secs: f64,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let (c, t, l) = (self.inner.clone(), seconds(timeout)?, lease(lease_secs)?);
        wait(py, async move { c.lock_acquire(&name, &token, l, t).await })?.map_err(to_py)
    }

    fn lock_release(&self, py: Python<'_>, name: String, token: String) -> PyResult<bool> {
        let c = self.inner.clone();
        wait(py, async move { c.lock_release(&name, &token).await })?.map_err(to_py)
    }

    fn lock_held(&self, py: Python<'_>, name: String) -> PyResult<bool> {
        let c = self.inner.clone();
        wait(py, async move { c.lock_held(&name).await })?.map_err(to_py)
    }

    #[pyo3(signature = (name, token, max_leases, lease_secs, timeout=None))]
    fn semaphore_acquire(
        &self,
        py: Python<'_>,
        name: String,
        token: String,
        max_leases: u32,
        lease_secs: f64,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let (c, t, l) = (self.inner.clone(), seconds(timeout)?, lease(lease_secs)?);
        wait(py, async move {
            c.semaphore_acquire(&name, &token, max_leases, l, t).await
        })?
        .map_err(to_py)
    }

    fn semaphore_release(&self, py: Python<'_>, name: String, token: String) -> PyResult<bool> {
        let c = self.inner.clone();
        wait(py, async move { c.semaphore_release(&name, &token).await })?.map_err(to_py)
    }
}

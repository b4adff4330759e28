//! `Objects`: the object store of big values, as a pool process reaches it.
//!
//! Why a pool process reads and writes big values itself: the worker used
//! to fetch every value a task's arguments refer to and pipe its bytes to
//! the pool process, and to read the bytes of the result back over the pipe
//! and store them. For a value of 100 MiB that is two pipe copies, a buffer
//! in the worker and another copy to hand it to the store, on every hop;
//! issue 36's benchmark spent most of its time there. A value over
//! `inline_max_bytes` with a `store_url` set now goes from the pool process
//! to the store and back, and the worker only ever sees its reference.
//! Small values still cross the pipe (their Redis home needs the worker's
//! connection, which a pool process does not have).
//!
//! The bytes are checked against their hash (in
//! [`warren_core::store::objects::Objects::read_opened`] for a directory,
//! `read_incoming` for S3), as
//! [`warren_core::store::Store::get_blob`] checks them. Writing is
//! `Keys.seal_to` (in [`crate::keys`]): a result is sealed straight into
//! the store as it is made (a directory's file, an S3 multipart upload).

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use warren_core::envelope::BodyHash;
use warren_core::store::blobs::BlobRef;
use warren_core::store::objects::{Objects as Store, Opened as Found};

use crate::WarrenError;
use crate::blocking::{released, runtime};
use crate::keys::{Keys, OpenedIn};

/// The object store a worker's settings name (`store_url`), and the size
/// over which values live there (`inline_max_bytes`).
#[pyclass(module = "warren._warren", frozen)]
pub struct Objects {
    pub(crate) store: Store,
    inline_max: usize,
}

impl Objects {
    /// `store`, holding values over `inline_max` bytes.
    pub(crate) fn new(store: Store, inline_max: usize) -> Self {
        Self { store, inline_max }
    }
}

#[pymethods]
impl Objects {
    /// The store of `settings` (names to text, as a worker's greeting gives
    /// them), or `None` when `store_url` is empty.
    #[staticmethod]
    fn open(settings: HashMap<String, String>) -> PyResult<Option<Self>> {
        let pairs: Vec<(&str, String)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let settings = warren_core::Settings::load(None, &pairs)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let store = Store::open(&settings).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(store.map(|store| Self {
            store,
            inline_max: settings.inline_max_bytes,
        }))
    }

    /// Whether a value of `size` bytes lives in this store (rather than in
    /// Redis).
    fn holds(&self, size: u64) -> bool {
        warren_core::store::blobs::lives_in_objects(size, self.inline_max)
    }

    /// The bytes of the value `(hash, size)` names, checked against the
    /// hash, as a new `bytearray` (which an envelope opens in place); an
    /// error naming the value if they are gone or changed. A directory
    /// store's file is read straight into it.
    fn get<'py>(
        &self,
        py: Python<'py>,
        hash: String,
        size: u64,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        Ok(self.read(py, hash, size)?.0)
    }

    /// [`get`](Self::get) of an envelope sealed for `purpose`, opened by
    /// `keys`: the bytes and [`Keys::open_in`]'s answer. Its bytes are
    /// hashed once, for their name and their MAC together
    /// ([`warren_core::envelope::open_checked`]), where `get` and then
    /// `open_in` hash them twice.
    fn open_envelope<'py>(
        &self,
        py: Python<'py>,
        hash: String,
        size: u64,
        keys: PyRef<'py, Keys>,
        purpose: &str,
    ) -> PyResult<Opened<'py>> {
        let (buf, body) = self.read(py, hash, size)?;
        opened(py, buf, &body, &keys, purpose)
    }
}

impl Objects {
    /// [`read_value`], its misses as errors naming the value and the store.
    fn read<'py>(
        &self,
        py: Python<'py>,
        hash: String,
        size: u64,
    ) -> PyResult<(Bound<'py, PyByteArray>, BodyHash)> {
        let r = BlobRef { hash, size };
        let url = self.store.url();
        let gone = || WarrenError::new_err(r.gone(&format!("not in the object store {url}")));
        let changed = || WarrenError::new_err(r.changed(&format!(" in the object store {url}")));
        let len = usize::try_from(size).map_err(|_| changed())?;
        match read_value(py, &self.store, &r, len)? {
            Got::Value(buf, body) => Ok((buf, body)),
            Got::Missing => Err(gone()),
            Got::Changed => Err(changed()),
        }
    }
}

/// A stored envelope read and opened: its bytes and [`Keys::open_in`]'s
/// answer.
pub(crate) type Opened<'py> = (Bound<'py, PyByteArray>, OpenedIn<'py>);

/// `buf`, just read and checked with `body` its body hash, opened by `keys`
/// as `purpose`.
pub(crate) fn opened<'py>(
    py: Python<'py>,
    buf: Bound<'py, PyByteArray>,
    body: &BodyHash,
    keys: &Keys,
    purpose: &str,
) -> PyResult<Opened<'py>> {
    let parts = keys.opened_in(py, &buf, purpose, Some(body))?;
    Ok((buf, parts))
}

/// What [`read_value`] found.
pub(crate) enum Got<'py> {
    /// The value's bytes, checked, and the hash of their body found then.
    Value(Bound<'py, PyByteArray>, BodyHash),
    /// No value of that name.
    Missing,
    /// Stored bytes whose size or content are not the value's.
    Changed,
}

/// The store's value `r` (`len` bytes) read straight into a new
/// `bytearray`, without the GIL: a directory's file with one read, an S3
/// object as its chunks arrive. The buffer is made only once the store has
/// said the value's size and it is `r`'s, so the value is copied once and
/// a reference claiming any size allocates nothing.
pub(crate) fn read_value<'py>(
    py: Python<'py>,
    store: &Store,
    r: &BlobRef,
    len: usize,
) -> PyResult<Got<'py>> {
    let failed = |e: warren_core::Error| WarrenError::new_err(e.to_string());
    let mut outcome = Ok(None);
    let made = match released(py, || store.open_file(r)) {
        Some(opened) => match opened.map_err(failed)? {
            Found::Here(file) => PyByteArray::new_with(py, len, |buf| {
                outcome = released(py, || store.read_opened(r, file, buf));
                Ok(())
            })?,
            Found::Missing => return Ok(Got::Missing),
            Found::Changed => return Ok(Got::Changed),
        },
        None => {
            if let Some((cached, body)) = read_cached(py, store, r, len)? {
                return Ok(Got::Value(cached, body));
            }
            match released(py, || runtime().block_on(store.open_object(r))).map_err(failed)? {
                Found::Here(incoming) => PyByteArray::new_with(py, len, |buf| {
                    outcome = released(py, || {
                        let read = runtime().block_on(store.read_incoming(r, incoming, buf));
                        if let (Ok(Some(_)), Some(cache)) = (&read, store.cache()) {
                            cache.keep(&r.hash, buf);
                        }
                        read
                    });
                    Ok(())
                })?,
                Found::Missing => return Ok(Got::Missing),
                Found::Changed => return Ok(Got::Changed),
            }
        }
    };
    match outcome.map_err(failed)? {
        Some(body) => Ok(Got::Value(made, body)),
        None => Ok(Got::Changed),
    }
}

/// The value `r` from the S3 store's cache on this machine, if it is there
/// whole and unchanged (a changed file is forgotten, and the store read).
fn read_cached<'py>(
    py: Python<'py>,
    store: &Store,
    r: &BlobRef,
    len: usize,
) -> PyResult<Option<(Bound<'py, PyByteArray>, BodyHash)>> {
    let Some(cache) = store.cache() else {
        return Ok(None);
    };
    let Some(file) = released(py, || cache.open(r)) else {
        return Ok(None);
    };
    let mut whole = None;
    let buf = PyByteArray::new_with(py, len, |buf| {
        whole = released(py, || store.read_opened(r, file, buf)).unwrap_or(None);
        Ok(())
    })?;
    if let Some(body) = whole {
        return Ok(Some((buf, body)));
    }
    cache.forget(&r.hash);
    Ok(None)
}

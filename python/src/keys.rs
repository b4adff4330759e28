//! `Keys`: the namespace key, for sealing and opening value envelopes
//! (`warren_core::envelope`) from Python.
//!
//! Python decides what a value's header and frames are (its codecs); Rust
//! holds the key and makes and checks the MACs, so no Python code path can
//! open a pickle that a key holder did not sign: `open` returns the header
//! and frames only once the envelope has been checked for the purpose the
//! caller names.

use std::borrow::Cow;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};
use warren_core::envelope::{self, BodyHash, EnvelopeError, Frame, Kind};
use warren_core::signing::Keyring;

use crate::blocking::released;

pyo3::create_exception!(
    _warren,
    BadSignature,
    PyValueError,
    "A value or function was refused: unsigned, signed with another key, changed after signing, or sealed for another purpose."
);

/// An opened envelope as Python gets it: its kind (`data` or `pickle`),
/// header, frames, and the id of the key that signed it. Frames are
/// `bytearray`s: an array built on one owns writable memory, as the
/// sender's did, with no second copy to make it so.
type Opened<'py> = (
    &'static str,
    Bound<'py, PyBytes>,
    Vec<Bound<'py, PyByteArray>>,
    Option<String>,
);

/// The keys a process holds (possibly none).
#[pyclass(module = "warren._warren", frozen)]
pub struct Keys {
    ring: Option<Keyring>,
}

impl Keys {
    /// Keys from a loaded keyring.
    pub fn new(ring: Option<Keyring>) -> Self {
        Self { ring }
    }
}

/// A frame as Python hands it: a `bytes` (borrowed), or any C-contiguous
/// buffer of bytes (a numpy array's memoryview, a pickle's out-of-band
/// buffer), copied straight into the envelope. Never PyO3's `Vec<u8>`,
/// which takes a `bytes` element by element as a sequence of ints (14 ms
/// for 1 MiB, measured), and no `bytes(view)` first (a copy into a fresh
/// buffer: ~1 ms per MiB of page faults here).
enum PyFrame<'a, 'py> {
    Bytes(&'a [u8]),
    Buffer(PyBuffer<u8>, Python<'py>),
}

impl<'a, 'py> PyFrame<'a, 'py> {
    fn of(f: &'a Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(b) = f.downcast::<PyBytes>() {
            return Ok(PyFrame::Bytes(b.as_bytes()));
        }
        let refused = || {
            pyo3::exceptions::PyTypeError::new_err(
                "an envelope's frames must be bytes or C-contiguous buffers of bytes",
            )
        };
        let buffer = PyBuffer::<u8>::get(f).map_err(|_| refused())?;
        if !buffer.is_c_contiguous() {
            return Err(refused());
        }
        Ok(PyFrame::Buffer(buffer, f.py()))
    }
}

impl PyFrame<'_, '_> {
    /// The frame's bytes, in place.
    fn bytes(&self) -> &[u8] {
        match self {
            PyFrame::Bytes(b) => b,
            // An empty buffer's pointer may be null, which a slice's may not.
            PyFrame::Buffer(b, _) if b.len_bytes() == 0 => &[],
            // SAFETY: the buffer is C-contiguous (checked in `of`) and
            // `len_bytes` long; the `PyBuffer` holds the exporter's buffer
            // (it cannot be freed or resized while exported), and callers
            // hold the GIL while they read it, so no Python code writes it.
            PyFrame::Buffer(b, _) => unsafe {
                std::slice::from_raw_parts(b.buf_ptr() as *const u8, b.len_bytes())
            },
        }
    }
}

impl Frame for PyFrame<'_, '_> {
    fn size(&self) -> usize {
        match self {
            PyFrame::Bytes(b) => b.len(),
            PyFrame::Buffer(b, _) => b.len_bytes(),
        }
    }

    fn write(&self, out: &mut [u8]) -> Result<(), EnvelopeError> {
        match self {
            PyFrame::Bytes(b) => out.copy_from_slice(b),
            PyFrame::Buffer(b, py) => b
                .copy_to_slice(*py, out)
                .map_err(|e| EnvelopeError::Malformed(format!("a frame's buffer: {e}")))?,
        }
        Ok(())
    }
}

fn kind_of(name: &str) -> PyResult<Kind> {
    match name {
        "data" => Ok(Kind::Data),
        "pickle" => Ok(Kind::Pickle),
        other => Err(PyValueError::new_err(format!(
            "envelope kind must be 'data' or 'pickle', not {other:?}"
        ))),
    }
}

#[pymethods]
impl Keys {
    /// The keys in `key_file` (and `previous_key_file`), as the settings of
    /// that name say: an empty `key_file` means the default file, if it
    /// exists.
    #[new]
    #[pyo3(signature = (key_file="", previous_key_file=""))]
    fn load(key_file: &str, previous_key_file: &str) -> PyResult<Self> {
        let ring = warren_core::signing::load(key_file, previous_key_file)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { ring })
    }

    /// Keys of a process that holds none: it seals and opens data only.
    #[staticmethod]
    fn none() -> Self {
        Self { ring: None }
    }

    /// The signing key's id, or None without a key.
    #[getter]
    fn key_id(&self) -> Option<String> {
        self.ring.as_ref().map(|r| r.current().id_hex())
    }

    /// Seals `header` and `frames` for `purpose` straight into the object
    /// store `objects`: its `(hash, size)` reference. The envelope is
    /// written as it is made (a directory store's file, an S3 multipart
    /// upload: [`warren_core::store::upload`]), so a big value is never held
    /// twice in memory. The frames are Python buffers, read holding the GIL.
    fn seal_to(
        &self,
        objects: &crate::objects::Objects,
        kind: &str,
        purpose: &str,
        header: &[u8],
        frames: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<(String, u64)> {
        let kind = kind_of(kind)?;
        let frames = frames
            .iter()
            .map(PyFrame::of)
            .collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<&[u8]> = frames.iter().map(PyFrame::bytes).collect();
        let ring = self.ring.as_ref();
        let (len, hash) = objects
            .store
            .put_sealed(crate::blocking::runtime().handle(), &mut |mut out| {
                envelope::seal_into(&mut out, kind, purpose, header, &slices, ring)
                    .map_err(std::io::Error::other)
            })
            .map_err(|e| crate::WarrenError::new_err(e.to_string()))?;
        Ok((hash, len))
    }

    /// Seals `header` and `frames` for `purpose`; a `pickle` needs a key.
    fn seal<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        purpose: &str,
        header: &[u8],
        frames: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let kind = kind_of(kind)?;
        let frames = frames
            .iter()
            .map(PyFrame::of)
            .collect::<PyResult<Vec<_>>>()?;
        let ring = self.ring.as_ref();
        let len = envelope::sealed_len(kind, purpose, header, &frames, ring)
            .map_err(|e| BadSignature::new_err(e.to_string()))?;
        // Written straight into the new `bytes`, the frames with the GIL
        // (they are Python buffers), the MAC without it.
        let mut outcome = Ok(());
        let sealed = PyBytes::new_with(py, len, |buf| {
            outcome = envelope::write_body(buf, kind, purpose, header, &frames, ring);
            if let (Ok(()), Some(ring)) = (&outcome, ring) {
                released(py, || envelope::sign_body(buf, purpose, ring));
            }
            Ok(())
        })?;
        outcome.map_err(|e| BadSignature::new_err(e.to_string()))?;
        Ok(sealed)
    }

    /// Opens an envelope sealed for `purpose`: `(kind, header, frames,
    /// signed_by)`. A pickle opens only signed by a key held here.
    fn open<'py>(
        &self,
        py: Python<'py>,
        data: Cow<'_, [u8]>,
        purpose: &str,
    ) -> PyResult<Opened<'py>> {
        let opened = released(py, || envelope::open(&data, purpose, self.ring.as_ref()))
            .map_err(|e| BadSignature::new_err(e.to_string()))?;
        let kind = match opened.kind {
            Kind::Data => "data",
            Kind::Pickle => "pickle",
        };
        let frames = opened
            .frames
            .iter()
            .map(|r| PyByteArray::new(py, &data[r.clone()]))
            .collect();
        Ok((
            kind,
            PyBytes::new(py, &data[opened.header.clone()]),
            frames,
            opened.signed_by,
        ))
    }

    /// [`open`](Self::open) of an envelope held in a `bytearray` (as an
    /// object store's value arrives): its frames are given as `(start,
    /// end)` ranges of `data`, which the caller views in place, so a value
    /// of hundreds of MB is not copied once more to be opened. The check
    /// runs holding the GIL: a `bytearray` may be resized by another
    /// thread, and Python cannot run while this reads it.
    fn open_in<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyByteArray>,
        purpose: &str,
    ) -> PyResult<OpenedIn<'py>> {
        self.opened_in(py, data, purpose, None)
    }
}

impl Keys {
    /// [`Keys::open_in`], with the body hash of the check of the bytes'
    /// name when they were just read and checked (then the body is not
    /// hashed again: [`envelope::open_checked`]).
    pub(crate) fn opened_in<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyByteArray>,
        purpose: &str,
        body: Option<&BodyHash>,
    ) -> PyResult<OpenedIn<'py>> {
        // SAFETY: the GIL is held from here to the end of this function and
        // nothing in between runs Python code, so no thread can resize or
        // free the bytearray while the slice is read.
        let bytes = unsafe { data.as_bytes() };
        let opened = envelope::open_checked(bytes, purpose, self.ring.as_ref(), body)
            .map_err(|e| BadSignature::new_err(e.to_string()))?;
        let kind = match opened.kind {
            Kind::Data => "data",
            Kind::Pickle => "pickle",
        };
        let frames = opened.frames.iter().map(|r| (r.start, r.end)).collect();
        Ok((
            kind,
            PyBytes::new(py, &bytes[opened.header.clone()]),
            frames,
            opened.signed_by,
        ))
    }
}

/// [`Keys::open_in`]'s answer: frames as ranges of the envelope.
pub(crate) type OpenedIn<'py> = (
    &'static str,
    Bound<'py, PyBytes>,
    Vec<(usize, usize)>,
    Option<String>,
);

/// The hash that names a stored value (`{"$blob": hash, ...}`), as
/// [`warren_core::store::blobs::BlobRef`] computes it: computed here so
/// that Python and Rust can never disagree, with the GIL released.
#[pyfunction]
pub fn blob_hash(py: Python<'_>, data: Cow<'_, [u8]>) -> String {
    released(py, || warren_core::store::blobs::BlobRef::of(&data).hash)
}

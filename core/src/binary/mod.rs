//! Bytes and arrays for Rust task functions: the stored values a Rust
//! function can take and return, apart from JSON.
//!
//! A Python `bytes`, `bytearray` or numpy array crosses warren as a data
//! envelope ([`crate::envelope`]) stored by reference
//! ([`crate::store::blobs`]), so a Rust function given one sees only
//! `{"$blob": hash, "size": N}`. [`Binary`] is what such a function declares
//! instead: the worker reads the value when the argument is decoded, and a
//! `Binary` it returns is sealed and stored, travelling as a reference that
//! Python reads back as `bytes` or as the numpy array it describes. The
//! bytes are never copied through JSON; an argument's buffer is a slice of
//! the envelope as it was read.
//!
//! This module is the codec: which envelopes are binary data and how one is
//! made, pure and tested with vectors. [`context`] is how a task's
//! arguments are read and its results kept while serde decodes and encodes
//! them.

pub mod context;

use bytes::Bytes;
use serde_json::Value;

use crate::envelope::{self, EnvelopeError, Kind};
use crate::signing::Keyring;

/// The purpose stored values are sealed for (the Python package's
/// `_signing.VALUE`).
pub const VALUE_PURPOSE: &str = "value";

/// An array's element type and shape, as numpy names them (`"<f8"`,
/// `[2, 3]`), for a [`Binary`] that is an array's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    /// numpy's `dtype.str`: byte order, kind and size (`"<f8"`, `"|u1"`).
    pub dtype: String,
    /// The length of each dimension; empty for a numpy scalar.
    pub shape: Vec<u64>,
}

/// Bytes a task function takes or returns as a stored value: a Python
/// `bytes` or `bytearray`, or a numpy array's buffer (C order) with its
/// [`Array`] description.
///
/// ```
/// use warren_core::binary::Binary;
/// let b = Binary::new(vec![1u8, 2, 3]);
/// assert_eq!(&b[..], &[1, 2, 3]);
/// let a = Binary::array(vec![0u8; 16], "<f8", vec![2]).unwrap();
/// assert_eq!(a.shape(), Some(&[2u64][..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    data: Bytes,
    array: Option<Array>,
}

impl Binary {
    /// Plain bytes: Python reads them back as `bytes`.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Self {
            data: data.into(),
            array: None,
        }
    }

    /// An array's buffer: Python reads it back as a numpy array of `dtype`
    /// (numpy's `dtype.str`, a number type: `"<f8"`, `"<i4"`, `"|u1"`, `"|b1"`)
    /// and `shape`. An error names what does not fit: a dtype that is not
    /// a plain number type, or a shape whose size is not the buffer's.
    pub fn array(
        data: impl Into<Bytes>,
        dtype: &str,
        shape: Vec<u64>,
    ) -> Result<Self, BinaryError> {
        let data = data.into();
        let item = numeric_itemsize(dtype).ok_or_else(|| {
            BinaryError(format!(
                "dtype {dtype:?} is not a number type numpy names by byte order, kind and size (\"<f8\", \"<i4\", \"|u1\")"
            ))
        })?;
        check_size(dtype, item, &shape, data.len())?;
        Ok(Self {
            data,
            array: Some(Array {
                dtype: dtype.to_string(),
                shape,
            }),
        })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The bytes, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The bytes as a vector (a copy unless they were the whole value).
    pub fn into_vec(self) -> Vec<u8> {
        Vec::from(self.data)
    }

    /// The array it is, if it is one.
    pub fn array_info(&self) -> Option<&Array> {
        self.array.as_ref()
    }

    /// The array's dtype (`"<f8"`), if it is an array.
    pub fn dtype(&self) -> Option<&str> {
        self.array.as_ref().map(|a| a.dtype.as_str())
    }

    /// The array's shape, if it is an array.
    pub fn shape(&self) -> Option<&[u64]> {
        self.array.as_ref().map(|a| a.shape.as_slice())
    }

    /// What the CLI shows for it: `bytes of 3`, `numpy.ndarray float64 (2, 3)`.
    pub fn describe(&self) -> String {
        match &self.array {
            None => format!("bytes of {}", self.data.len()),
            Some(a) => {
                let dims: Vec<String> = a.shape.iter().map(u64::to_string).collect();
                let shape = match dims.len() {
                    1 => format!("({},)", dims[0]),
                    _ => format!("({})", dims.join(", ")),
                };
                format!("numpy.ndarray {} {shape}", numpy_name(&a.dtype))
            }
        }
    }
}

impl std::ops::Deref for Binary {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl From<Vec<u8>> for Binary {
    fn from(v: Vec<u8>) -> Self {
        Self::new(v)
    }
}

impl From<Bytes> for Binary {
    fn from(b: Bytes) -> Self {
        Self::new(b)
    }
}

/// Why bytes are not a [`Binary`], or a `Binary` cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BinaryError(pub String);

impl From<EnvelopeError> for BinaryError {
    fn from(e: EnvelopeError) -> Self {
        Self(e.to_string())
    }
}

/// The [`Binary`] a stored value's envelope holds, sharing its buffer (no
/// copy): a data envelope whose root is `bytes`, `bytearray`, a numpy array
/// or a numpy scalar. Anything else is an error naming what the value is.
/// A signature is checked when `keys` are given and the envelope has one.
pub fn decode(envelope: Bytes, keys: Option<&Keyring>) -> Result<Binary, BinaryError> {
    let opened = envelope::open(&envelope, VALUE_PURPOSE, keys)?;
    let header: Value = serde_json::from_slice(&envelope[opened.header.clone()])
        .map_err(|e| BinaryError(format!("the value's header is not JSON: {e}")))?;
    let what = header
        .get("describe")
        .and_then(Value::as_str)
        .unwrap_or("a value of another type")
        .to_string();
    let not_binary = || BinaryError(format!("the value is {what}, not bytes or a numpy array"));
    if opened.kind != Kind::Data || header.get("codec").and_then(Value::as_str) != Some("data") {
        return Err(not_binary());
    }
    let root = header.get("root").ok_or_else(not_binary)?;
    let tag = root.get("$t").and_then(Value::as_str).unwrap_or("");
    let frame = |n: &Value| -> Result<Bytes, BinaryError> {
        let i = n.get("f").and_then(Value::as_u64).unwrap_or(u64::MAX);
        let range = usize::try_from(i)
            .ok()
            .and_then(|i| opened.frames.get(i))
            .ok_or_else(|| BinaryError(format!("the value names frame {i}, which it lacks")))?;
        Ok(envelope.slice(range.clone()))
    };
    match tag {
        "bytes" | "bytearray" => Ok(Binary::new(frame(root)?)),
        "ndarray" | "npscalar" => {
            let dtype = root.get("dtype").and_then(Value::as_str).unwrap_or("");
            if dtype.is_empty() || dtype.len() > 32 || !dtype.is_ascii() {
                return Err(BinaryError(format!(
                    "the array's dtype {dtype:?} is not numpy's"
                )));
            }
            let shape = match (tag, root.get("shape")) {
                ("npscalar", _) => Vec::new(),
                (_, Some(Value::Array(dims))) => dims
                    .iter()
                    .map(|d| {
                        d.as_u64()
                            .ok_or_else(|| BinaryError(format!("bad array shape {dims:?}")))
                    })
                    .collect::<Result<_, _>>()?,
                (_, other) => return Err(BinaryError(format!("bad array shape {other:?}"))),
            };
            let data = frame(root)?;
            if let Some(item) = itemsize(dtype) {
                check_size(dtype, item, &shape, data.len())?;
            }
            Ok(Binary {
                data,
                array: Some(Array {
                    dtype: dtype.to_string(),
                    shape,
                }),
            })
        }
        _ => Err(not_binary()),
    }
}

/// `b` as a data envelope (unsigned: data builds values, never runs code),
/// the form Python's codec writes for the same value.
pub fn encode(b: &Binary) -> Result<Vec<u8>, BinaryError> {
    let header = header(b)?;
    Ok(envelope::seal(
        Kind::Data,
        VALUE_PURPOSE,
        &header,
        &[b.as_bytes()],
        None,
    )?)
}

/// [`encode`], written to `out` as it is made (a big value goes to a store
/// without a second copy in memory); its length and BLAKE3 hash, its
/// reference.
pub fn encode_into(b: &Binary, out: &mut dyn std::io::Write) -> std::io::Result<(u64, String)> {
    let header = header(b).map_err(|e| std::io::Error::other(e.0))?;
    envelope::seal_into(
        &mut &mut *out,
        Kind::Data,
        VALUE_PURPOSE,
        &header,
        &[b.as_bytes()],
        None,
    )
    .map_err(std::io::Error::other)
}

/// The JSON header of `b`'s envelope.
fn header(b: &Binary) -> Result<Vec<u8>, BinaryError> {
    let root = Root {
        tag: if b.array.is_some() {
            "ndarray"
        } else {
            "bytes"
        },
        dtype: b.dtype(),
        shape: b.shape(),
        f: 0,
    };
    let header = Header {
        v: 1,
        codec: "data",
        root,
        describe: b.describe(),
    };
    serde_json::to_vec(&header).map_err(|e| BinaryError(e.to_string()))
}

/// A data envelope's header, its fields in the order Python writes them
/// (so that both sides make the same bytes for the same value).
#[derive(serde::Serialize)]
struct Header<'a> {
    v: u8,
    codec: &'a str,
    root: Root<'a>,
    describe: String,
}

/// The root node of a [`Header`]: `bytes`, or an `ndarray` with its dtype
/// and shape, in frame `f`.
#[derive(serde::Serialize)]
struct Root<'a> {
    #[serde(rename = "$t")]
    tag: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dtype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shape: Option<&'a [u64]>,
    f: u32,
}

/// The size of one element of `dtype` (numpy's `dtype.str`), where it can
/// be read off: the digits after the kind, times 4 for unicode (`"<U5"`).
fn itemsize(dtype: &str) -> Option<u64> {
    let body = dtype.strip_prefix(['<', '>', '|', '=']).unwrap_or(dtype);
    let mut chars = body.chars();
    let kind = chars.next()?;
    let digits: String = chars.take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    Some(if kind == 'U' { n * 4 } else { n })
}

/// [`itemsize`] of a plain number type only (bool, ints, floats, complex).
fn numeric_itemsize(dtype: &str) -> Option<u64> {
    let body = dtype.strip_prefix(['<', '>', '|', '=']).unwrap_or(dtype);
    let kind = body.chars().next()?;
    let digits = body.get(1..)?;
    let ok =
        "biufc".contains(kind) && !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
    ok.then(|| itemsize(dtype)).flatten().filter(|n| *n > 0)
}

fn check_size(dtype: &str, item: u64, shape: &[u64], len: usize) -> Result<(), BinaryError> {
    let count = shape
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .and_then(|c| c.checked_mul(item));
    if count != Some(len as u64) {
        return Err(BinaryError(format!(
            "an array of shape {shape:?} and dtype {dtype} needs {} bytes, not {len}",
            count.map_or("more than 2**64".to_string(), |c| c.to_string())
        )));
    }
    Ok(())
}

/// numpy's own name of a number type (`"<f8"` is `float64`), else `dtype`.
fn numpy_name(dtype: &str) -> String {
    let Some(item) = numeric_itemsize(dtype) else {
        return dtype.to_string();
    };
    let body = dtype.strip_prefix(['<', '>', '|', '=']).unwrap_or(dtype);
    let bits = item * 8;
    match body.chars().next() {
        Some('b') => "bool".to_string(),
        Some('i') => format!("int{bits}"),
        Some('u') => format!("uint{bits}"),
        Some('f') => format!("float{bits}"),
        Some('c') => format!("complex{bits}"),
        _ => dtype.to_string(),
    }
}

#[cfg(test)]
mod tests;

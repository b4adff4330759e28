//! How a task's [`Binary`] arguments are read and its `Binary` results kept,
//! while serde decodes and encodes them.
//!
//! serde gives a type's `Deserialize` nothing but the JSON in front of it,
//! and a stored value's JSON is only its reference. So a worker runs each
//! task [`within`] a [`Values`] for the thread: an argument's reference is
//! read through it when decoded (only the arguments a function declares as
//! `Binary` are read at all), and a `Binary` the function returns is
//! sealed, kept for the worker to store, and written as its reference.
//! Outside a task there is no such context, and both directions say so.

use std::cell::RefCell;

use bytes::Bytes;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{Binary, decode, encode_into};
use crate::store::blobs::BlobRef;

/// Reads a stored value's bytes (checked against its hash), or says why not.
pub type Fetch = Box<dyn FnMut(&BlobRef) -> Result<Bytes, String> + Send>;

/// A value a task made: its reference and the value, to be sealed into
/// the store ([`super::encode_into`]) before the task's result is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The envelope's reference (what the result holds).
    pub blob: BlobRef,
    /// The value.
    pub value: Binary,
}

/// What one task's thread reads values through, and what it made.
///
/// A value is checked against its hash as it is read, and its reference
/// came in a work message the worker checked (signed, with a key): so its
/// envelope's own signature, where a data envelope has one, adds nothing,
/// and is not checked here (a child process holds no key to check it with).
pub struct Values {
    fetch: Fetch,
    made: Vec<Made>,
}

impl Values {
    /// Values read through `fetch`.
    pub fn new(fetch: Fetch) -> Self {
        Self {
            fetch,
            made: Vec::new(),
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Values>> = const { RefCell::new(None) };
}

/// Runs `f` (one task) with `values` as this thread's, and returns what it
/// returned and the values it made, each once.
pub fn within<R>(values: Values, f: impl FnOnce() -> R) -> (R, Vec<Made>) {
    let before = CURRENT.with(|c| c.borrow_mut().replace(values));
    let out = f();
    let mine = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), before));
    let made = mine.map(|v| v.made).unwrap_or_default();
    (out, made)
}

/// The value `r` names, read through this thread's [`Values`].
fn read(r: &BlobRef) -> Result<Binary, String> {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let values = current.as_mut().ok_or_else(|| {
            "a stored value is read only inside a task run by a worker".to_string()
        })?;
        let bytes = (values.fetch)(r)?;
        decode(bytes, None).map_err(|e| e.0)
    })
}

/// `b` kept for storing; the reference of its envelope (made into
/// nothing here, for its hash: the envelope is made once more, straight
/// into the store).
fn keep(b: &Binary) -> Result<BlobRef, String> {
    let (size, hash) = encode_into(b, &mut std::io::sink()).map_err(|e| e.to_string())?;
    let blob = BlobRef { hash, size };
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        let values = current.as_mut().ok_or_else(|| {
            "a Binary is made into a stored value only as a task's result, inside a worker"
                .to_string()
        })?;
        if !values.made.iter().any(|m| m.blob == blob) {
            values.made.push(Made {
                blob: blob.clone(),
                value: b.clone(),
            });
        }
        Ok(blob)
    })
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        // "invalid type" first: the registry words that part itself
        // ("must be bytes, got list").
        let r = BlobRef::from_json(&v)
            .ok_or_else(|| D::Error::custom("invalid type: not a stored value"))?;
        read(&r).map_err(D::Error::custom)
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = keep(self).map_err(serde::ser::Error::custom)?;
        r.to_json().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::encode;
    use std::collections::HashMap;

    fn from_map(map: HashMap<String, Bytes>) -> Values {
        Values::new(Box::new(move |r: &BlobRef| {
            map.get(&r.hash)
                .cloned()
                .ok_or_else(|| format!("{} is gone", r.hash))
        }))
    }

    #[test]
    fn an_argument_is_read_and_a_result_kept_inside_a_task_only() {
        let stored = encode(&Binary::new(b"abc".to_vec())).unwrap();
        let r = BlobRef::of(&stored);
        let values = from_map(HashMap::from([(
            r.hash.clone(),
            Bytes::from(stored.clone()),
        )]));
        let ((arg, out), made) = within(values, || {
            let arg: Binary = serde_json::from_value(r.to_json()).unwrap();
            let out = serde_json::to_value(Binary::new(b"xyz".to_vec())).unwrap();
            // The same value twice is kept once.
            serde_json::to_value(Binary::new(b"xyz".to_vec())).unwrap();
            (arg, out)
        });
        assert_eq!(&arg[..], b"abc");
        assert_eq!(made.len(), 1);
        assert_eq!(out, made[0].blob.to_json());
        let envelope = encode(&made[0].value).unwrap();
        assert!(
            made[0].blob.matches(&envelope),
            "the reference is the envelope's"
        );
        assert_eq!(made[0].value.as_bytes(), b"xyz");
        // Outside a task, both directions are errors, never panics.
        let e = serde_json::from_value::<Binary>(r.to_json()).unwrap_err();
        assert!(e.to_string().contains("inside a task"), "{e}");
        let e = serde_json::to_value(Binary::new(vec![1])).unwrap_err();
        assert!(e.to_string().contains("task's result"), "{e}");
    }

    #[test]
    fn a_missing_value_or_a_non_reference_is_an_error_naming_it() {
        let gone = BlobRef::of(b"nothing");
        let (e, _) = within(from_map(HashMap::new()), || {
            serde_json::from_value::<Binary>(gone.to_json()).unwrap_err()
        });
        assert!(e.to_string().contains("is gone"), "{e}");
        let (e, _) = within(from_map(HashMap::new()), || {
            serde_json::from_value::<Binary>(serde_json::json!([1, 2])).unwrap_err()
        });
        assert!(e.to_string().starts_with("invalid type"), "{e}");
    }
}

//! Values that are not JSON, stored by reference.
//!
//! A value that is not JSON (an envelope, see [`crate::envelope`]) is stored
//! once in Redis under the BLAKE3 hash of its bytes, `P blob:<hash>`, and
//! travels as the JSON reference `{"$blob": "<hash>", "size": N}`: in
//! arguments, results, work messages and client events alike. So schedulers
//! and RabbitMQ carry a few dozen bytes whatever the value's size, Lua
//! scripts and Rust functions see ordinary JSON, and a reader checks the
//! bytes it gets against the hash in the reference (a blob someone changed
//! in Redis is refused, key or no key). A blob lives `result_ttl_secs` from
//! its last write, as a finished future's value does.
//!
//! With a `store_url`, blobs over `inline_max_bytes` live in that object
//! store instead ([`super::objects`]); the reference does not say where, so
//! a reader looks first where a blob of its size would be, then in the
//! other place (the setting may have changed while values lived).

use bytes::Bytes;
use redis::AsyncCommands;
use serde_json::{Value, json};

use super::Store;
use super::encode::Args;
use super::reply::Reply;
use crate::envelope::BodyHash;
use crate::error::{Error, Result};

/// The JSON field that marks a blob reference.
pub const BLOB_FIELD: &str = "$blob";

/// A blob's reference: its hash and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The BLAKE3 hash of the bytes, in hex (BLAKE3 for its speed on big
    /// values: see [`crate::signing`]).
    pub hash: String,
    /// Its length in bytes.
    pub size: u64,
}

impl BlobRef {
    /// The reference of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hash: blake3::hash(bytes).to_hex().to_string(),
            size: bytes.len() as u64,
        }
    }

    /// The reference as JSON, as values carry it.
    pub fn to_json(&self) -> Value {
        json!({ BLOB_FIELD: self.hash, "size": self.size })
    }

    /// The reference `v` is, if it is one: exactly `{"$blob": <64 hex>,
    /// "size": N}`.
    pub fn from_json(v: &Value) -> Option<Self> {
        let o = v.as_object()?;
        if o.len() != 2 {
            return None;
        }
        let hash = o.get(BLOB_FIELD)?.as_str()?;
        let size = o.get("size")?.as_u64()?;
        is_hash(hash).then(|| Self {
            hash: hash.to_string(),
            size,
        })
    }

    /// What a reader says when the value is not where it looked: `place`
    /// says where that was ("not in the object store URL").
    pub fn gone(&self, place: &str) -> String {
        format!(
            "value {} ({} bytes) is {place} (values live result_ttl_secs)",
            self.hash, self.size
        )
    }

    /// What a reader says of stored bytes that are not the value's: `place`
    /// names the store (" in the object store URL"), or is empty.
    pub fn changed(&self, place: &str) -> String {
        format!(
            "the bytes stored for value {}{place} are not the value's: refused",
            self.hash
        )
    }

    /// Every reference inside `args`, in order, each once (iterative:
    /// arguments may nest deeply).
    pub fn all_in(args: &[Value]) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        let mut stack: Vec<&Value> = args.iter().rev().collect();
        while let Some(v) = stack.pop() {
            if let Some(r) = Self::from_json(v) {
                if !out.contains(&r) {
                    out.push(r);
                }
                continue;
            }
            match v {
                Value::Array(a) => stack.extend(a.iter().rev()),
                Value::Object(o) => stack.extend(o.values().rev()),
                _ => {}
            }
        }
        out
    }

    /// Whether `bytes` are the bytes this reference names.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.check(bytes).is_some()
    }

    /// Whether `bytes` are this value's ([`BlobRef::matches`]), and if they
    /// are, the hash of all but their last 32 bytes, found on the way: a
    /// signed envelope's MAC covers that hash
    /// ([`crate::envelope::open_checked`]), so a value read and opened is
    /// hashed once. BLAKE3's state after the body is finished on a copy and
    /// carried on over the rest, which gives the same name as hashing the
    /// bytes whole.
    pub fn check(&self, bytes: &[u8]) -> Option<BodyHash> {
        if bytes.len() as u64 != self.size {
            return None;
        }
        let (body, mac) = bytes.split_at(bytes.len().saturating_sub(32));
        let mut hasher = blake3::Hasher::new();
        hasher.update(body);
        let body_hash = BodyHash::new(hasher.clone().finalize(), body.len());
        hasher.update(mac);
        (hasher.finalize().to_hex().as_str() == self.hash).then_some(body_hash)
    }
}

/// Whether `text` is a blob's name: 64 lower-case hex digits, so never a
/// path that walks out of a store's directory, whoever wrote it in Redis.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What one [`Store::reap_blobs`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reaped {
    /// Doomed blobs it looked at (as many as `limit`: call again).
    pub handled: usize,
    /// Blobs it deleted (the rest were held again).
    pub deleted: usize,
}

/// Whether a value of `size` bytes lives in the object store rather than in
/// Redis, when a store is set and `inline_max_bytes` is `inline_max`: one
/// rule, so that a worker and its pool processes look in the same place.
pub fn lives_in_objects(size: u64, inline_max: usize) -> bool {
    size > inline_max as u64
}

impl Store {
    /// Stores `bytes` (for `result_ttl_secs`) and returns their reference.
    /// Owned bytes, so that a big value goes to the object store without
    /// another copy.
    pub async fn put_blob(&self, bytes: impl Into<Bytes>) -> Result<BlobRef> {
        let bytes: Bytes = bytes.into();
        let r = BlobRef::of(&bytes);
        self.put_blob_as(&r, bytes).await?;
        Ok(r)
    }

    /// Stores `bytes` under `r`, which the caller computed from them
    /// ([`BlobRef::of`]) to refer to them before they are stored. A wrong
    /// `r` harms only the caller's own task: every reader checks the bytes
    /// against the hash.
    pub async fn put_blob_as(&self, r: &BlobRef, bytes: Bytes) -> Result<()> {
        match &self.objects {
            Some(objects) if lives_in_objects(bytes.len() as u64, self.inline_max) => {
                objects.put(&r.hash, bytes).await?;
            }
            _ => {
                let mut con = self.con();
                let _: () = con
                    .set_ex(self.keys.blob(&r.hash), bytes.as_ref(), self.ttl.max(1))
                    .await?;
            }
        }
        Ok(())
    }

    /// The object store of big values (`store_url`), if one is set.
    pub fn objects(&self) -> Option<&super::objects::Objects> {
        self.objects.as_ref()
    }

    /// The object store a value of `size` bytes lives in, if it lives in
    /// one (a `store_url` is set and the value is over
    /// `inline_max_bytes`).
    pub fn objects_for(&self, size: u64) -> Option<&super::objects::Objects> {
        self.objects()
            .filter(|_| lives_in_objects(size, self.inline_max))
    }

    /// Whether a value of `size` bytes lives in the object store (a
    /// `store_url` is set and the value is over `inline_max_bytes`): a
    /// process with the store's settings reads and writes it there itself.
    pub fn in_objects(&self, size: u64) -> bool {
        self.objects.is_some() && lives_in_objects(size, self.inline_max)
    }

    /// The bytes `r` names; an error if they are gone (expired, forgotten)
    /// or are not the bytes the reference names.
    pub async fn get_blob(&self, r: &BlobRef) -> Result<Vec<u8>> {
        // The object store checks what it reads (`Objects::get`); only
        // Redis's bytes are checked here, so no value is hashed twice.
        let bytes = match &self.objects {
            Some(objects) if lives_in_objects(r.size, self.inline_max) => {
                match objects.get(r).await? {
                    Some(b) => return Ok(Vec::from(b)),
                    None => self.redis_blob(r).await?,
                }
            }
            Some(objects) => match self.redis_blob(r).await? {
                Some(b) => Some(b),
                None => match objects.get(r).await? {
                    Some(b) => return Ok(Vec::from(b)),
                    None => None,
                },
            },
            None => self.redis_blob(r).await?,
        };
        let bytes = bytes.ok_or_else(|| {
            let place = match &self.objects {
                Some(o) => format!("neither in Redis nor in the object store {}", o.url()),
                None => "not in Redis, and this process has no store_url: if the workers \
                         have one, set it here too"
                    .to_string(),
            };
            Error::Script(r.gone(&place))
        })?;
        if !r.matches(&bytes) {
            return Err(Error::Script(r.changed("")));
        }
        Ok(bytes)
    }

    async fn redis_blob(&self, r: &BlobRef) -> Result<Option<Vec<u8>>> {
        let mut con = self.con();
        Ok(con.get(self.keys.blob(&r.hash)).await?)
    }

    /// Deletes blobs that no record has held for `grace` (see `P doomed` in
    /// `lua/common.lua`: a blob is doomed when the future whose value it is
    /// is forgotten or restarted and no other future or pending task refers
    /// to it), at most `limit` per call, from Redis and from the object
    /// store.
    pub async fn reap_blobs(&self, grace: std::time::Duration, limit: usize) -> Result<Reaped> {
        let args = Args::new(self.prefix())
            .num(grace.as_millis())
            .num(limit.max(1));
        let mut r = Reply::new(self.run(&self.scripts.reap, args).await?)?;
        let handled = usize::try_from(r.int()?).unwrap_or(0);
        let mut deleted = 0;
        while !r.done() {
            let hash = r.string()?;
            if !is_hash(&hash) {
                // Not written by reap.lua's callers: someone else's entry in
                // `P doomed`, never taken for a file name.
                tracing::warn!(entry = %hash.escape_debug(), "not a blob's name in doomed: ignored");
                continue;
            }
            if let Some(objects) = &self.objects {
                objects.delete(&hash).await?;
            }
            deleted += 1;
        }
        Ok(Reaped { handled, deleted })
    }

    /// Deletes at most `limit` objects of the object store older than
    /// `result_ttl_secs` (see [`super::objects`]); 0 without a store.
    pub async fn sweep_objects(&self, limit: usize) -> Result<usize> {
        match &self.objects {
            Some(o) => {
                o.sweep(std::time::Duration::from_secs(self.ttl), limit)
                    .await
            }
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_inside_arguments_is_found_once_in_order() {
        let a = BlobRef::of(b"a");
        let b = BlobRef::of(b"b");
        let args = [
            json!({"x": [a.to_json(), {"y": b.to_json()}]}),
            a.to_json(),
            json!({"$blob": "short", "size": 1}),
        ];
        assert_eq!(BlobRef::all_in(&args), vec![a, b]);
    }

    #[test]
    fn a_value_lives_in_the_object_store_only_over_inline_max() {
        assert!(!lives_in_objects(64 * 1024, 64 * 1024));
        assert!(lives_in_objects(64 * 1024 + 1, 64 * 1024));
        assert!(!lives_in_objects(0, 0));
        let r = BlobRef::of(b"hello");
        assert_eq!(
            r.gone("not in the object store file:///s"),
            format!(
                "value {} (5 bytes) is not in the object store file:///s (values live result_ttl_secs)",
                r.hash
            )
        );
        assert_eq!(
            r.changed(""),
            format!(
                "the bytes stored for value {} are not the value's: refused",
                r.hash
            )
        );
    }

    #[test]
    fn a_check_names_the_bytes_as_a_whole_hash_does_and_keeps_the_body_hash() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let r = BlobRef::of(&bytes);
        let body = r.check(&bytes).expect("its own bytes");
        let split = bytes.len() - 32;
        assert_eq!(body, BodyHash::new(blake3::hash(&bytes[..split]), split));
        let mut changed = bytes.clone();
        changed[split] ^= 1;
        assert_eq!(r.check(&changed), None, "a changed MAC byte");
        assert_eq!(r.check(&bytes[1..]), None, "another size");
    }

    #[test]
    fn references_round_trip_and_odd_ones_are_not_references() {
        let r = BlobRef::of(b"hello");
        // BLAKE3("hello"), as the reference implementation gives it.
        assert_eq!(
            r.hash,
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(BlobRef::from_json(&r.to_json()), Some(r.clone()));
        assert!(r.matches(b"hello"));
        assert!(!r.matches(b"hellO"));
        assert_eq!(
            r.check(b"hello"),
            Some(BodyHash::new(blake3::hash(b""), 0)),
            "shorter than a MAC: the body is nothing"
        );
        for odd in [
            json!({"$blob": "abc", "size": 5}),
            json!({"$blob": r.hash.to_uppercase(), "size": 5}),
            json!({"$blob": r.hash, "size": -1}),
            json!({"$blob": r.hash, "size": 5, "x": 1}),
            json!({"$blob": r.hash}),
            json!([r.hash]),
        ] {
            assert_eq!(BlobRef::from_json(&odd), None, "{odd}");
        }
    }
}

//! Big values in an object store (setting `store_url`).
//!
//! Redis holds every byte it stores in memory, on the one machine every
//! process of the namespace shares; a value of hundreds of MB there is RAM
//! taken from every other future, and over 512 MB it cannot be stored at
//! all. So values bigger than `inline_max_bytes` are written to an object
//! store instead, through the `object_store` crate (one API for a directory,
//! S3, GCS and Azure), and Redis, RabbitMQ and the scheduler only ever see
//! their reference, `{"$blob": <hash>, "size": N}`, as for every value that
//! is not JSON ([`super::blobs`]).
//!
//! Objects are named by content, `<namespace>/blobs/<hash>`: a value used by
//! twenty dependents is one object, a rerun that computes the same bytes
//! writes the same object, and a reader checks the bytes against the hash,
//! so an object someone changed is refused. A write is atomic (a directory
//! store writes a temporary file and renames it into place; an S3 object
//! appears when its `PUT` or multipart upload completes, see
//! [`super::upload`]): a worker killed while writing leaves no partial object
//! under the name. A directory store does not fsync: a written value
//! survives any process's death, not the machine's power loss (as Redis
//! with its default `appendfsync everysec` may lose the last second).
//!
//! An S3 store (`s3://BUCKET/PREFIX`, any S3-compatible server: AWS,
//! Garage, MinIO, Ceph) is reached with the settings `s3_endpoint`,
//! `s3_region`, `s3_access_key_id` and `s3_secret_access_key`, which the
//! standard `AWS_*` variables fill where they are empty (see
//! [`crate::settings`]); whatever else `AWS_*` says (a session token, an
//! instance role) the `object_store` crate reads itself.
//!
//! Lifetime: a value goes with the last future that holds it (schedulers
//! [`delete`](Objects::delete) what [`super::Store::reap_blobs`] names).
//! Otherwise, as a value in Redis lives `result_ttl_secs` from its last
//! write, an object lives that long from its last modification; schedulers
//! [`sweep`](Objects::sweep) older ones, a bounded number per pass, so a
//! crashed writer leaks nothing for longer than that.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::blobs::BlobRef;
use super::cache::Cache;
pub use super::location::Location;
use crate::envelope::BodyHash;
use crate::error::{Error, Result};
use crate::settings::Settings;

/// The object store of one namespace's big values. Cheap to clone.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// `<namespace>/blobs`.
    prefix: Path,
    /// The `store_url`, for errors.
    url: String,
    /// A directory store's `<DIR>/<namespace>/blobs`, which is written and
    /// read with plain file calls (see [`Objects::file`]).
    dir: Option<PathBuf>,
    /// An S3 store's cache on this machine (setting `cache_bytes`).
    cache: Option<Cache>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

impl Objects {
    /// The store `settings.store_url` names for the namespace (a directory
    /// is made if it does not exist yet); `None` for an empty `store_url`.
    pub fn open(settings: &Settings) -> Result<Option<Self>> {
        let url = settings.store_url.as_str();
        let failed = |cause| Error::ObjectStore {
            url: url.to_string(),
            cause,
        };
        let mut files = None;
        let mut cache = None;
        let (store, root): (Arc<dyn ObjectStore>, String) = match Location::parse(url)? {
            Location::Redis => return Ok(None),
            Location::Dir(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::Settings(format!(
                        "store_url {url:?}: cannot make the directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(failed)?;
                files = Some(dir.join(&settings.namespace).join("blobs"));
                (Arc::new(store), String::new())
            }
            Location::S3 { bucket, prefix } => {
                let store = s3_builder(settings, &bucket).build().map_err(failed)?;
                cache = Cache::from_settings(settings);
                (Arc::new(store), prefix)
            }
        };
        let prefix = Path::from_iter(
            root.split('/')
                .filter(|p| !p.is_empty())
                .chain([settings.namespace.as_str(), "blobs"]),
        );
        Ok(Some(Self {
            store,
            prefix,
            url: url.to_string(),
            dir: files,
            cache,
        }))
    }

    /// The cache of an S3 store's values on this machine, if one is set.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// A directory store's directory of values (`<DIR>/<namespace>/blobs`);
    /// `None` for other stores.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Where a directory store keeps the value `hash`; `None` for other
    /// stores. A caller that holds the bytes in memory it does not own (a
    /// Python buffer) writes and reads this file itself, with no copy in
    /// between: object_store's API takes and gives owned buffers.
    pub fn file(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(hash))
    }

    /// Opens a directory store's file of value `r`, if it has `r`'s size;
    /// `None` for other stores, whose API gives owned buffers. A caller
    /// with a buffer of its own (a Python `bytearray`) then reads the file
    /// into it with [`Objects::read_opened`]: the bytes are copied once,
    /// and the buffer is only made once the file's size is known to be the
    /// value's (a reference read from Redis may claim any size).
    pub fn open_file(&self, r: &BlobRef) -> Option<Result<Opened<std::fs::File>>> {
        let path = self.file(&r.hash)?;
        let open = || -> std::io::Result<Opened<std::fs::File>> {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Missing),
                Err(e) => return Err(e),
            };
            Ok(if file.metadata()?.len() == r.size {
                Opened::Here(file)
            } else {
                Opened::Changed
            })
        };
        Some(open().map_err(|e| self.failed_io(&r.hash, e)))
    }

    /// Reads `file` (from [`Objects::open_file`]) into `buf`, of `r`'s
    /// size; if its bytes are `r`'s, their body hash ([`BlobRef::check`]).
    pub fn read_opened(
        &self,
        r: &BlobRef,
        mut file: std::fs::File,
        buf: &mut [u8],
    ) -> Result<Option<BodyHash>> {
        std::io::Read::read_exact(&mut file, buf).map_err(|e| self.failed_io(&r.hash, e))?;
        Ok(r.check(buf))
    }

    /// Starts reading value `r` from the store (S3; a directory store's
    /// files are better read with [`Objects::open_file`], in bigger chunks
    /// than object_store's 8 KiB): the store has said the value's size,
    /// which is checked before the caller makes a buffer for it
    /// ([`Objects::read_incoming`]), so the value is copied once, from the
    /// network into that buffer.
    pub async fn open_object(&self, r: &BlobRef) -> Result<Opened<Incoming>> {
        match self.store.get(&self.path(&r.hash)).await {
            Ok(got) if got.meta.size == r.size => Ok(Opened::Here(Incoming(got.into_stream()))),
            Ok(_) => Ok(Opened::Changed),
            Err(object_store::Error::NotFound { .. }) => Ok(Opened::Missing),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Reads `incoming` (from [`Objects::open_object`]) into `buf`, of
    /// `r`'s size; if its bytes are `r`'s (more or fewer bytes than that
    /// are not), their body hash ([`BlobRef::check`]).
    pub async fn read_incoming(
        &self,
        r: &BlobRef,
        mut incoming: Incoming,
        buf: &mut [u8],
    ) -> Result<Option<BodyHash>> {
        let mut at = 0;
        while let Some(chunk) = incoming.0.next().await {
            let chunk = chunk.map_err(|e| self.failed(e))?;
            let Some(to) = buf.get_mut(at..at + chunk.len()) else {
                return Ok(None);
            };
            to.copy_from_slice(&chunk);
            at += chunk.len();
        }
        Ok(if at == buf.len() { r.check(buf) } else { None })
    }

    /// The store's URL (the setting `store_url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object of the value `hash`.
    pub(super) fn path(&self, hash: &str) -> Path {
        self.prefix.clone().join(hash)
    }

    /// An I/O error writing or reading value `hash` (a directory store's
    /// file, a value being sealed), as object_store words its own.
    pub fn failed_io(&self, hash: &str, source: std::io::Error) -> Error {
        self.failed(object_store::Error::Generic {
            store: if self.dir.is_some() {
                "directory"
            } else {
                "S3"
            },
            source: format!("value {hash}: {source}").into(),
        })
    }

    /// The store itself, for the writes of [`super::upload`].
    pub(super) fn store(&self) -> &dyn ObjectStore {
        self.store.as_ref()
    }

    pub(super) fn failed(&self, cause: object_store::Error) -> Error {
        Error::ObjectStore {
            url: self.url.clone(),
            cause,
        }
    }

    /// Writes the value whose hash is `hash`, whole or not at all.
    pub async fn put(&self, hash: &str, bytes: Bytes) -> Result<()> {
        if let Some(path) = self.file(hash) {
            let written = tokio::task::spawn_blocking(move || write_file(&path, &bytes)).await;
            return match written {
                Ok(result) => result.map_err(|e| self.failed_io(hash, e)),
                Err(e) => Err(self.failed_io(hash, std::io::Error::other(e))),
            };
        }
        self.store
            .put(&self.path(hash), PutPayload::from(bytes.clone()))
            .await
            .map_err(|e| self.failed(e))?;
        self.cache_later(hash, bytes);
        Ok(())
    }

    /// The bytes of value `r`, checked against it, or `None` if there are
    /// none: from the cache if it has them (its read checks them), else
    /// from the store, checked once here, so the caller hashes nothing again
    /// and the cache keeps them without hashing them a third time. Bytes
    /// that are not `r`'s are an error naming the value.
    pub async fn get(&self, r: &BlobRef) -> Result<Option<Bytes>> {
        if let Some(cache) = self.cache.clone() {
            let name = r.hash.clone();
            let cached = tokio::task::spawn_blocking(move || cache.read(&name)).await;
            if let Ok(Some(bytes)) = cached
                && bytes.len() as u64 == r.size
            {
                return Ok(Some(Bytes::from(bytes)));
            }
        }
        match self.store.get(&self.path(&r.hash)).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.failed(e))?;
                if !r.matches(&bytes) {
                    return Err(Error::Script(r.changed("")));
                }
                if let Some(cache) = self.cache.clone() {
                    let (hash, bytes) = (r.hash.clone(), bytes.clone());
                    tokio::task::spawn_blocking(move || cache.keep(&hash, &bytes));
                }
                Ok(Some(bytes))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Keeps `bytes` in the cache, if there is one and they are the value
    /// `hash` (a caller's hash is checked: a wrong one must not name a
    /// cached file), off the caller's path (a cache write is never waited
    /// for).
    fn cache_later(&self, hash: &str, bytes: Bytes) {
        if let Some(cache) = self.cache.clone() {
            let hash = hash.to_string();
            tokio::task::spawn_blocking(move || {
                if BlobRef::of(&bytes).hash == hash {
                    cache.keep(&hash, &bytes);
                }
            });
        }
    }

    /// Deletes the value `hash`; one already gone is not an error. This
    /// machine's cache forgets it too (other machines' caches keep their
    /// copy until it is evicted: bounded, and only ever read by a holder of
    /// the value's reference).
    pub async fn delete(&self, hash: &str) -> Result<()> {
        if let Some(cache) = &self.cache {
            cache.forget(hash);
        }
        match self.store.delete(&self.path(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Deletes at most `limit` objects last written more than `older_than`
    /// ago, and returns how many it deleted. Another process sweeping at
    /// once is harmless: an object already gone is not an error.
    pub async fn sweep(&self, older_than: Duration, limit: usize) -> Result<usize> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let cutoff = now.saturating_sub(older_than.as_secs());
        let mut listing = self.store.list(Some(&self.prefix));
        let mut deleted = 0;
        while deleted < limit {
            let Some(meta) = listing.next().await else {
                break;
            };
            let meta = meta.map_err(|e| self.failed(e))?;
            let written = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
            if written >= cutoff {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failed(e)),
            }
        }
        Ok(deleted)
    }
}

/// What [`Objects::open_file`] or [`Objects::open_object`] found.
#[derive(Debug)]
pub enum Opened<T> {
    /// The value's file or bytes to come, of the value's size.
    Here(T),
    /// No value of that name.
    Missing,
    /// A value whose size is not the reference's.
    Changed,
}

impl<T> Opened<T> {
    /// The same finding, of what `f` makes of the value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Opened<U> {
        match self {
            Opened::Here(t) => Opened::Here(f(t)),
            Opened::Missing => Opened::Missing,
            Opened::Changed => Opened::Changed,
        }
    }
}

/// A value's bytes as a store other than a directory sends them, in chunks
/// ([`Objects::open_object`]).
pub struct Incoming(pub(super) futures::stream::BoxStream<'static, object_store::Result<Bytes>>);

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Incoming")
    }
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file
/// beside it, renamed into place (see [`write_named`]).
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other(format!(
            "no file name in {}",
            path.display()
        )));
    };
    write_named(dir, |file| {
        file.write_all(bytes)?;
        Ok(name.to_string_lossy().into_owned())
    })
    .map(|_| ())
}

/// Writes a new file in `dir` with `write`, which returns the name the file
/// is to have (a value's hash, known once it is written), whole or not at
/// all: the bytes go to a temporary file, `new#w<random>`, renamed into
/// place. That temporary name is one a store's listing shows (object_store
/// hides only `#<digits>`), so the file of a writer killed mid-write is swept
/// like an old object.
///
/// The name is random, not the writer's pid, and the file is created only if
/// it does not exist: a directory store is shared by every machine of the
/// namespace (over NFS, say), where two writers may have the same pid, and
/// truncating another writer's file would rename its half into place.
pub fn write_named(
    dir: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<String>,
) -> std::io::Result<String> {
    write_via(dir, &temp_name(), write)
}

/// [`write_named`] through the temporary file `dir/temp`.
fn write_via(
    dir: &std::path::Path,
    temp: &str,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<String>,
) -> std::io::Result<String> {
    let temp = dir.join(temp);
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
    };
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            create()?
        }
        other => other?,
    };
    let written = write(&mut file).and_then(|name| {
        if name.is_empty() || name.contains(['/', '#']) {
            return Err(std::io::Error::other(format!(
                "{name:?} is not a value's name"
            )));
        }
        std::fs::rename(&temp, dir.join(&name)).map(|()| name)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// A temporary file's name no other writer, on any machine, picks: 122
/// random bits.
fn temp_name() -> String {
    format!("new#w{}", uuid::Uuid::new_v4().simple())
}

/// The client of an S3 bucket: the `AWS_*` environment first (session
/// tokens, instance roles), then warren's settings over it.
fn s3_builder(settings: &Settings, bucket: &str) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    // Every byte read back is checked against the value's BLAKE3 hash (the
    // object's name), end to end: a body changed on the way is refused
    // there. So a SHA-256 of each part for its request's signature (made
    // here, checked again by the server) buys nothing but two passes over
    // the bytes; the signature still covers the request itself. An explicit
    // `AWS_UNSIGNED_PAYLOAD` is obeyed.
    if std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
        b = b.with_unsigned_payload(true);
    }
    if !settings.s3_region.is_empty() {
        b = b.with_region(&settings.s3_region);
    }
    if !settings.s3_endpoint.is_empty() {
        // A server on a private network is often plain HTTP: the endpoint
        // says so, and only then is HTTP allowed.
        b = b
            .with_endpoint(&settings.s3_endpoint)
            .with_allow_http(settings.s3_endpoint.starts_with("http://"));
    }
    if !settings.s3_access_key_id.is_empty() {
        b = b.with_access_key_id(&settings.s3_access_key_id);
    }
    if !settings.s3_secret_access_key.is_empty() {
        b = b.with_secret_access_key(&settings.s3_secret_access_key);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_differ_and_an_existing_file_is_never_truncated() {
        let a = temp_name();
        assert!(a.starts_with("new#w") && a.len() == 37, "{a}");
        assert_ne!(a, temp_name());
        // A writer whose temporary name is taken (by another machine's
        // writer on a shared directory) fails rather than truncating it.
        let dir = std::env::temp_dir().join(format!("warren-temp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let taken = dir.join(&a);
        std::fs::write(&taken, b"another writer's half").unwrap();
        let clash = write_via(&dir, &a, |f| {
            std::io::Write::write_all(f, b"mine")?;
            Ok("value".into())
        });
        assert_eq!(clash.unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        assert!(!dir.join("value").exists());
        assert_eq!(std::fs::read(&taken).unwrap(), b"another writer's half");
        let name = write_named(&dir, |f| {
            std::io::Write::write_all(f, b"v")?;
            Ok("value".into())
        })
        .unwrap();
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), b"v");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_directory_store_round_trips_and_sweeps_only_old_objects() {
        let dir = std::env::temp_dir().join(format!("warren-objects-{}", std::process::id()));
        let settings = Settings {
            store_url: format!("file://{}", dir.display()),
            namespace: "ns".into(),
            ..Settings::default()
        };
        let objects = Objects::open(&settings).unwrap().unwrap();
        let hash = blake3::hash(b"big").to_hex().to_string();
        let big = BlobRef::of(b"big");
        assert_eq!(objects.get(&big).await.unwrap(), None);
        objects
            .put(&hash, Bytes::from_static(b"big"))
            .await
            .unwrap();
        assert_eq!(
            objects.get(&big).await.unwrap().as_deref(),
            Some(&b"big"[..])
        );
        let blobs = dir.join("ns").join("blobs");
        assert!(blobs.join(&hash).is_file());
        assert_eq!(objects.file(&hash), Some(blobs.join(&hash)));
        let read = |r: &BlobRef| {
            let mut buf = vec![0; r.size as usize];
            match objects.open_file(r).unwrap().unwrap() {
                Opened::Here(f) => objects
                    .read_opened(r, f, &mut buf)
                    .unwrap()
                    .map(|_| buf)
                    .ok_or("changed"),
                Opened::Missing => Err("missing"),
                Opened::Changed => Err("changed size"),
            }
        };
        assert_eq!(read(&BlobRef::of(b"big")).unwrap(), b"big");
        let other = BlobRef::of(b"bag");
        assert_eq!(read(&other), Err("missing"));
        std::fs::write(blobs.join(&other.hash), b"bug").unwrap();
        assert_eq!(read(&other), Err("changed"));
        let refused = objects.get(&other).await.unwrap_err().to_string();
        assert!(refused.contains("are not the value's"), "{refused}");
        std::fs::write(blobs.join(&other.hash), b"bags").unwrap();
        assert_eq!(read(&other), Err("changed size"));
        std::fs::remove_file(blobs.join(&other.hash)).unwrap();
        // What a writer killed mid-write leaves: a temporary file, which no
        // reader takes for the value and the sweep removes.
        std::fs::write(blobs.join("new#w1-0"), b"cu").unwrap();
        assert_eq!(objects.get(&BlobRef::of(b"cut")).await.unwrap(), None);
        // Written just now: not older than an hour, so kept.
        assert_eq!(
            objects.sweep(Duration::from_secs(3600), 10).await.unwrap(),
            0
        );
        assert!(objects.get(&big).await.unwrap().is_some());
        // Older than "no time at all" only once a second has passed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(objects.sweep(Duration::ZERO, 10).await.unwrap(), 2);
        assert_eq!(objects.get(&big).await.unwrap(), None);
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! A bounded cache of an S3 store's values on this machine's disk (setting
//! `cache_bytes`), so that a chain of tasks on one machine does not fetch
//! its own output again.
//!
//! The cache is only a cache: a value is written to the store first (it is
//! durable there), a file here is named by the value's hash and checked
//! against it on every read like any stored value, and a file that is
//! missing, short or changed is a miss (deleted, then read from the store).
//! Every process of the machine's user shares the directory: files appear
//! whole (written to a temporary name, then renamed, as a directory store's
//! are), a read marks a file used (its modification time), and whoever
//! writes one removes the least recently used files past `cache_bytes`. A
//! directory store is not cached: its files are on a disk already.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::blobs::{BlobRef, is_hash};
use super::objects::write_named;
use crate::settings::Settings;

/// The cache directory and its bound.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
}

impl Cache {
    /// The cache `settings` ask for (`cache_bytes` over 0), made private to
    /// this user (0700) if it is new; `None` without one, or if the
    /// directory cannot be made (a cache is never worth failing for).
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        if settings.cache_bytes == 0 {
            return None;
        }
        let dir = match settings.cache_dir.as_str() {
            "" => std::env::temp_dir()
                .join(format!("warren-{}", uid()))
                .join("cache"),
            d => PathBuf::from(d),
        };
        if let Err(e) = make_private_dir(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "no cache of S3 values: its directory cannot be made");
            return None;
        }
        Some(Self {
            dir,
            max_bytes: settings.cache_bytes,
        })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached file of `r`, opened, if there is one of `r`'s size
    /// (marked used); its bytes are checked by the reader.
    pub fn open(&self, r: &BlobRef) -> Option<std::fs::File> {
        if !is_hash(&r.hash) {
            return None;
        }
        let file = std::fs::File::open(self.dir.join(&r.hash)).ok()?;
        if file.metadata().ok()?.len() != r.size {
            self.forget(&r.hash);
            return None;
        }
        // Used now: the last to be evicted.
        let _ = file.set_modified(SystemTime::now());
        Some(file)
    }

    /// The bytes of the value `hash`, if the cache has them and they are the
    /// value's (a changed file is forgotten).
    pub fn read(&self, hash: &str) -> Option<Vec<u8>> {
        if !is_hash(hash) {
            return None;
        }
        let bytes = std::fs::read(self.dir.join(hash)).ok()?;
        if BlobRef::of(&bytes).hash != hash {
            self.forget(hash);
            return None;
        }
        if let Ok(f) = std::fs::File::options()
            .write(true)
            .open(self.dir.join(hash))
        {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(bytes)
    }

    /// Removes the file of `hash` (a miss: short or changed).
    pub fn forget(&self, hash: &str) {
        if is_hash(hash) {
            let _ = std::fs::remove_file(self.dir.join(hash));
        }
    }

    /// Keeps `bytes`, the value `hash`; a failure is only logged.
    pub fn keep(&self, hash: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.max_bytes || !is_hash(hash) {
            return;
        }
        let written = write_named(&self.dir, |file| {
            std::io::Write::write_all(file, bytes)?;
            Ok(hash.to_string())
        });
        self.after_write(written.map(|_| ()));
    }

    /// Keeps the value `write` writes into the file it is given and names
    /// (its hash), as it is written: for a value that is sealed as it is
    /// uploaded. An error of `write` is returned (and nothing is kept).
    pub fn keep_written(
        &self,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<String>,
    ) -> std::io::Result<String> {
        let written = write_named(&self.dir, write);
        if written.is_ok() {
            self.after_write(Ok(()));
        }
        written
    }

    fn after_write(&self, written: std::io::Result<()>) {
        match written {
            Ok(()) => self.evict(),
            Err(e) => tracing::debug!(error = %e, "a value was not cached"),
        }
    }

    /// Removes the least recently used files until the cache holds at most
    /// `cache_bytes` (temporary files of writers that died included, oldest
    /// first like the rest).
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// This process's user id, for a per-user default directory.
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Makes `dir` (and its parents); a directory made here is readable by
/// this user only.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_bytes: u64) -> Cache {
        let dir = std::env::temp_dir()
            .join(format!("warren-cache-test-{}", std::process::id()))
            .join(format!("{max_bytes}"));
        let _ = std::fs::remove_dir_all(&dir);
        make_private_dir(&dir).unwrap();
        Cache { dir, max_bytes }
    }

    #[test]
    fn a_kept_value_opens_at_its_size_only_and_the_oldest_go_past_the_bound() {
        let c = cache(25);
        let values: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 10]).collect();
        let refs: Vec<BlobRef> = values.iter().map(|v| BlobRef::of(v)).collect();
        for (v, r) in values.iter().zip(&refs) {
            c.keep(&r.hash, v);
            // Distinct times, so that "least recently used" is well defined.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(c.open(&refs[0]).is_none(), "the oldest went: 30 bytes > 25");
        let mut f = c.open(&refs[2]).expect("the newest stays");
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut back).unwrap();
        assert_eq!(back, values[2]);
        let longer = BlobRef {
            size: 11,
            ..refs[1].clone()
        };
        assert!(c.open(&longer).is_none(), "another size is a miss");
        assert!(c.open(&refs[1]).is_none(), "and was forgotten");
        // Bigger than the whole cache: not kept. Not a hash: not a name.
        c.keep(&BlobRef::of(&[9; 30]).hash, &[9; 30]);
        assert!(c.open(&BlobRef::of(&[9; 30])).is_none());
        c.keep("../escape", b"x");
        assert!(!c.dir.parent().unwrap().join("escape").exists());
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

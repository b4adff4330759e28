//! A big value written to the object store as it is made, never whole in
//! memory: a pool process's 2 GiB result, a client's 1 GiB argument.
//!
//! A value is named by the hash of its bytes, known only once the last of
//! them is made. A directory store writes them to a temporary file and
//! renames it ([`super::objects::write_named`]). S3 has no rename: a copy
//! to the right name is a request per 5 GiB, and a crash between the copy
//! and the delete leaks the temporary object. So the value is made twice
//! instead: once into nothing, for its hash and length (BLAKE3 runs at
//! gigabytes a second, a small part of an upload's time; a value of one
//! part is kept from this first making and sent with one `PUT`), then into
//! a multipart upload under its own name, in parts of [`PART_BYTES`] with at
//! most [`PARTS_IN_FLIGHT`] on the way. An object appears only when its
//! upload completes, so a writer that dies leaves no partial value under
//! the name (only parts, which a bucket's lifecycle rule for incomplete
//! uploads removes); an upload that fails is aborted. An object already
//! there with the value's size is the value (its name is its hash): a rerun
//! that makes the same bytes does not send them again.

use std::io::Write;

use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::runtime::Handle;

use super::blobs::is_hash;
use super::objects::{Objects, write_named};
use crate::error::Result;

/// The size of one part of an upload (S3 takes parts of 5 MiB or more).
pub const PART_BYTES: usize = 8 << 20;
/// Parts uploading at once: the memory a write holds is about this many
/// parts, plus the one being filled.
pub const PARTS_IN_FLIGHT: usize = 4;

/// Makes a value's bytes into `out` and returns their length and hash
/// ([`crate::envelope::seal_into`] is one). Called twice for an S3 store,
/// so it must make the same bytes each time.
pub type Seal<'a> = dyn FnMut(&mut dyn Write) -> std::io::Result<(u64, String)> + 'a;

impl Objects {
    /// Stores the value `seal` makes as it is made, and returns its length
    /// and hash. `rt` runs the uploads: this blocks, so call it outside the
    /// runtime (a Python thread, tokio's blocking pool).
    pub fn put_sealed(&self, rt: &Handle, seal: &mut Seal<'_>) -> Result<(u64, String)> {
        if let Some(dir) = self.dir() {
            let mut sealed = 0;
            let hash = write_named(dir, |file| {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                let (len, hash) = seal(&mut out)?;
                out.flush()?;
                sealed = len;
                Ok(hash)
            })
            .map_err(|e| self.failed_io("(new)", e))?;
            return Ok((sealed, hash));
        }
        // The first making keeps a value of one part (then it is the only
        // one, and a single PUT stores it), and only hashes a bigger one.
        let mut first = Small::default();
        let (len, hash) = seal(&mut first).map_err(|e| self.failed_io("(new)", e))?;
        if !is_hash(&hash) {
            let e = std::io::Error::other(format!("{hash:?} is not a value's name"));
            return Err(self.failed_io("(new)", e));
        }
        let path = self.path(&hash);
        if !first.over {
            let whole = bytes::Bytes::from(first.whole.unwrap_or_default());
            rt.block_on(self.store().put(&path, PutPayload::from(whole.clone())))
                .map_err(|e| self.failed(e))?;
            if let Some(cache) = self.cache() {
                cache.keep(&hash, &whole);
            }
            return Ok((len, hash));
        }
        if let Ok(meta) = rt.block_on(self.store().head(&path))
            && meta.size == len
        {
            return Ok((len, hash));
        }
        let upload = rt
            .block_on(self.store().put_multipart(&path))
            .map_err(|e| self.failed(e))?;
        let mut parts = Parts {
            rt,
            upload: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
        };
        let made = match self.cache() {
            None => seal(&mut parts),
            Some(cache) => sealed_and_cached(cache, &mut parts, seal, (len, &hash)),
        };
        let upload = parts.upload;
        match made {
            Ok((again, same)) if (again, same.as_str()) == (len, hash.as_str()) => {
                rt.block_on(upload.finish()).map_err(|e| self.failed(e))?;
                Ok((len, hash))
            }
            other => {
                let _ = rt.block_on(upload.abort());
                let e = match other {
                    Err(e) => e,
                    Ok(_) => std::io::Error::other(
                        "the value changed while it was written (its bytes were made twice and differed)",
                    ),
                };
                Err(self.failed_io(&hash, e))
            }
        }
    }
}

/// `seal` into `parts` and, beside them, into a file of `cache` kept under
/// the value's name if it is made whole and the same as the first time
/// (`want`). What `seal` returned, whatever became of the file: a cache
/// that cannot be written fails no write.
fn sealed_and_cached(
    cache: &super::cache::Cache,
    parts: &mut Parts<'_>,
    seal: &mut Seal<'_>,
    want: (u64, &str),
) -> std::io::Result<(u64, String)> {
    let mut made = None;
    let _ = cache.keep_written(|file| {
        let mut tee = Tee {
            upload: parts,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        };
        let result = seal(&mut tee);
        let file_ok = tee.file.take().is_some_and(|mut f| f.flush().is_ok());
        let name = match &result {
            Ok((len, hash)) if file_ok && (*len, hash.as_str()) == want => Ok(hash.clone()),
            _ => Err(std::io::Error::other("not cached")),
        };
        made = Some(result);
        name
    });
    made.unwrap_or_else(|| Err(std::io::Error::other("the cache did not start the write")))
}

/// Writes to an upload and, while it can, to a cache file; a failed cache
/// write drops the file and the upload goes on.
struct Tee<'a, 'b, W: Write> {
    upload: &'a mut Parts<'b>,
    file: Option<W>,
}

impl<W: Write> Write for Tee<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.upload.write(buf)?;
        if let Some(f) = &mut self.file
            && f.write_all(&buf[..n]).is_err()
        {
            self.file = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first making of a value: kept whole while it fits in one part,
/// else only counted on (its hash is all that is wanted of it).
#[derive(Default)]
struct Small {
    whole: Option<Vec<u8>>,
    over: bool,
}

impl Write for Small {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.over {
            let whole = self.whole.get_or_insert_with(Vec::new);
            if whole.len() + buf.len() <= PART_BYTES {
                whole.extend_from_slice(buf);
            } else {
                self.whole = None;
                self.over = true;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A multipart upload as a `Write`: each write waits until fewer than
/// [`PARTS_IN_FLIGHT`] parts are on the way, then buffers at most a part.
struct Parts<'a> {
    rt: &'a Handle,
    upload: WriteMultipart,
}

impl Write for Parts<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.rt
            .block_on(self.upload.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(std::io::Error::other)?;
        let n = buf.len().min(PART_BYTES);
        // A full part starts its upload as a task on the runtime.
        let _entered = self.rt.enter();
        self.upload.write(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

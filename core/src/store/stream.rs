//! A stored value read as it arrives, chunk by chunk, checked against its
//! reference on the way: `warren result --raw KEY > FILE` of a value of
//! gigabytes holds one chunk at a time, not the value.
//!
//! [`super::Store::get_blob`] reads a value whole and checks it before the
//! caller sees a byte. Here the caller sees bytes before the last one is
//! read, so the check ends the read: the chunk that makes the value longer
//! than its reference, or the end of a value whose hash is not the
//! reference's, is an error, and a caller that wrote the earlier chunks out
//! must say that what it wrote is not the value.

use bytes::Bytes;
use futures::StreamExt;

use super::Store;
use super::blobs::BlobRef;
use super::objects::{Incoming, Objects, Opened};
use crate::error::{Error, Result};

/// The bytes read from a directory store's file at a time.
const FILE_CHUNK: usize = 1 << 20;

/// A value's bytes in chunks ([`Store::read_blob`]).
#[derive(Debug)]
pub struct BlobReader {
    r: BlobRef,
    source: Source,
    hasher: blake3::Hasher,
    at: u64,
}

#[derive(Debug)]
enum Source {
    /// Read whole and checked already (a value in Redis, at most
    /// `inline_max_bytes`, or one a store without it held).
    Whole(Option<Bytes>),
    /// A directory store's file; `None` once read to its end.
    File(Option<std::fs::File>, Objects),
    /// A store's stream (S3).
    Incoming(Incoming, Objects),
}

impl Store {
    /// Starts reading the value `r` names, in chunks
    /// ([`BlobReader::next_chunk`]); an error if it is gone (expired,
    /// forgotten) or, as the chunks come, not the value.
    pub async fn read_blob(&self, r: &BlobRef) -> Result<BlobReader> {
        if let Some(objects) = self.objects_for(r.size) {
            let opened = match objects.open_file(r) {
                Some(file) => file?.map(|f| Source::File(Some(f), objects.clone())),
                None => objects
                    .open_object(r)
                    .await?
                    .map(|i| Source::Incoming(i, objects.clone())),
            };
            match opened {
                Opened::Here(source) => return Ok(BlobReader::new(r, source)),
                Opened::Changed => return Err(changed_in(r, Some(objects))),
                // Perhaps in Redis (a store_url set after it was written):
                // get_blob looks everywhere and names what it did not find.
                Opened::Missing => {}
            }
        }
        let whole = Bytes::from(self.get_blob(r).await?);
        Ok(BlobReader::new(r, Source::Whole(Some(whole))))
    }
}

impl BlobReader {
    fn new(r: &BlobRef, source: Source) -> Self {
        Self {
            r: r.clone(),
            source,
            hasher: blake3::Hasher::new(),
            at: 0,
        }
    }

    /// The value's size, as its reference says.
    pub fn size(&self) -> u64 {
        self.r.size
    }

    /// The next chunk, `None` at the end. An error when the bytes turn
    /// out not to be the value's: more of them than its size, or, at the
    /// end, too few or another hash.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let chunk = match &mut self.source {
            Source::Whole(whole) => return Ok(whole.take()),
            Source::File(file, objects) => match file.take() {
                None => None,
                Some(f) => {
                    let (f, read) = read_chunk(f, &self.r, objects).await?;
                    if read.is_empty() {
                        None
                    } else {
                        *file = Some(f);
                        Some(read)
                    }
                }
            },
            Source::Incoming(incoming, objects) => match incoming.0.next().await {
                Some(chunk) => Some(chunk.map_err(|e| objects.failed(e))?),
                None => None,
            },
        };
        match chunk {
            Some(chunk) => {
                self.at += chunk.len() as u64;
                if self.at > self.r.size {
                    return Err(self.changed());
                }
                self.hasher.update(&chunk);
                Ok(Some(chunk))
            }
            None if self.at == self.r.size
                && self.hasher.finalize().to_hex().as_str() == self.r.hash =>
            {
                Ok(None)
            }
            None => Err(self.changed()),
        }
    }

    fn changed(&self) -> Error {
        let objects = match &self.source {
            Source::File(_, o) | Source::Incoming(_, o) => Some(o),
            Source::Whole(_) => None,
        };
        changed_in(&self.r, objects)
    }
}

/// The error of bytes that are not `r`'s, naming the store they came from.
fn changed_in(r: &BlobRef, objects: Option<&Objects>) -> Error {
    let place = objects.map_or(String::new(), |o| {
        format!(" in the object store {}", o.url())
    });
    Error::Script(r.changed(&place))
}

/// Reads up to [`FILE_CHUNK`] bytes of `file` off the runtime's threads;
/// an empty chunk at its end.
async fn read_chunk(
    mut file: std::fs::File,
    r: &BlobRef,
    objects: &Objects,
) -> Result<(std::fs::File, Bytes)> {
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; FILE_CHUNK];
        let mut n = 0;
        // Fill the chunk: a short read is not the end.
        while n < buf.len() {
            match std::io::Read::read(&mut file, &mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(n);
        Ok((file, Bytes::from(buf)))
    })
    .await;
    match read {
        Ok(Ok(got)) => Ok(got),
        Ok(Err(e)) => Err(objects.failed_io(&r.hash, e)),
        Err(e) => Err(objects.failed_io(&r.hash, std::io::Error::other(e))),
    }
}

//! Values that are not JSON, by reference: the client stores an argument's
//! bytes before it submits, and reads a result's bytes when asked (see
//! `warren_core::store::blobs`).

use warren_core::store::blobs::BlobRef;
use warren_core::store::stream::BlobReader;

use super::Client;
use crate::error::Error;

impl Client {
    /// Stores `bytes` in the namespace and returns their reference, to put
    /// in a task's arguments (`{"$blob": hash, "size": N}`).
    pub async fn put_blob(&self, bytes: impl Into<bytes::Bytes>) -> Result<BlobRef, Error> {
        Ok(self.inner.store.put_blob(bytes).await?)
    }

    /// Stores `bytes` under `r`, computed from them with [`BlobRef::of`]
    /// beforehand (to refer to them while they are being stored).
    pub async fn put_blob_as(&self, r: &BlobRef, bytes: bytes::Bytes) -> Result<(), Error> {
        Ok(self.inner.store.put_blob_as(r, bytes).await?)
    }

    /// The object store of big values (`store_url`), if one is set.
    pub fn objects(&self) -> Option<&warren_core::store::objects::Objects> {
        self.inner.store.objects()
    }

    /// The object store a value of `size` bytes lives in, if it lives in
    /// one: a caller with a buffer of its own reads a directory store's file
    /// into it ([`warren_core::store::objects::Objects::read_opened`]).
    pub fn objects_for(&self, size: u64) -> Option<&warren_core::store::objects::Objects> {
        self.inner.store.objects_for(size)
    }

    /// The bytes `r` names, checked against its hash.
    pub async fn get_blob(&self, r: &BlobRef) -> Result<Vec<u8>, Error> {
        Ok(self.inner.store.get_blob(r).await?)
    }

    /// The bytes `r` names in chunks, checked as they come (the last chunk
    /// or the end is an error if they are not the value's): for a value
    /// too big to hold, written out as it arrives.
    pub async fn read_blob(&self, r: &BlobRef) -> Result<BlobReader, Error> {
        Ok(self.inner.store.read_blob(r).await?)
    }
}

//! The stored values a Rust task reads and makes ([`Binary`] arguments and
//! results), between the task's thread or child process and the store.
//!
//! In a thread, an argument is read when the function's `Binary` parameter
//! is decoded, so a function that takes the reference as JSON reads
//! nothing. A child process (`--isolation process`) holds no connection:
//! its worker reads every value the arguments refer to and hands them over
//! with the task. Either way, the values a task made are stored before its
//! result, which refers to them, is reported.
//!
//! [`Binary`]: warren_core::binary::Binary

use std::collections::HashMap;

use bytes::Bytes;
use warren_core::binary::{
    self,
    context::{Made, Values},
};
use warren_core::messages::TaskFailure;
use warren_core::store::Store;
use warren_core::store::blobs::BlobRef;

/// Values read from `store` as the task asks (on tokio's blocking pool,
/// where blocking on the runtime is allowed).
pub(crate) fn through_store(store: &Store, rt: tokio::runtime::Handle) -> Values {
    let store = store.clone();
    Values::new(Box::new(move |r: &BlobRef| {
        rt.block_on(store.get_blob(r))
            .map(Bytes::from)
            .map_err(|e| format!("the value could not be read: {e}"))
    }))
}

/// Values from those handed to a child process, by hash.
pub(crate) fn handed(given: HashMap<String, Bytes>) -> Values {
    Values::new(Box::new(move |r: &BlobRef| {
        given
            .get(&r.hash)
            .cloned()
            .ok_or_else(|| format!("value {} was not handed to this process", r.hash))
    }))
}

/// Every value `args` refer to, read from `store` (for a child process).
pub(crate) async fn read_all(
    store: &Store,
    key: &str,
    args: &[serde_json::Value],
) -> Result<Vec<(BlobRef, Vec<u8>)>, TaskFailure> {
    let mut out = Vec::new();
    for r in BlobRef::all_in(args) {
        let bytes = store.get_blob(&r).await.map_err(|e| {
            TaskFailure::new(
                "LostValue",
                format!("an argument of task {key} could not be read: {e}"),
                "",
            )
        })?;
        out.push((r, bytes));
    }
    Ok(out)
}

/// Stores the values task `key` made; its result may be reported only then.
/// A big one is sealed straight into the object store as it is made (no
/// second copy of it in memory); others are sealed and put in Redis.
pub(crate) async fn store_made(
    store: &Store,
    key: &str,
    made: Vec<Made>,
) -> Result<(), TaskFailure> {
    let failed = |e: String| {
        TaskFailure::new(
            "WorkerError",
            format!("the result of task {key} could not be stored: {e}"),
            "",
        )
    };
    for m in made {
        match store.objects() {
            Some(objects) if store.in_objects(m.blob.size) => {
                let want = (m.blob.size, m.blob.hash.clone());
                let (objects, rt) = (objects.clone(), tokio::runtime::Handle::current());
                let sealed = tokio::task::spawn_blocking(move || {
                    objects.put_sealed(&rt, &mut |out| binary::encode_into(&m.value, out))
                })
                .await
                .map_err(|e| failed(e.to_string()))?
                .map_err(|e| failed(e.to_string()))?;
                if sealed != want {
                    return Err(failed("its value changed while it was stored".into()));
                }
            }
            _ => {
                let envelope = binary::encode(&m.value).map_err(|e| failed(e.0))?;
                store
                    .put_blob_as(&m.blob, Bytes::from(envelope))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            }
        }
    }
    Ok(())
}

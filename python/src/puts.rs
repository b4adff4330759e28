//! Values a client stores in the background while it prepares the next.
//!
//! Why: `client.map(f, arrays)` seals one envelope per call and stores it
//! before the task may refer to it. Stored one after the other, the client
//! spent most of a `map` over 200 arrays of 1 MiB waiting for each file
//! write (issue 32's array row). Each store now starts at once on the
//! runtime and the Python thread goes on sealing the next call; the
//! reference is known before the write ends (it is the bytes' hash), and
//! every call that publishes a message [`settle`](Puts::settle)s first, so
//! no task ever refers to a value that is not stored yet.
//!
//! Memory stays bounded: while more than [`IN_FLIGHT`] bytes are being
//! stored, the oldest store is waited for before another starts.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::task::JoinHandle;
use warren_client::Error;
use warren_core::store::blobs::BlobRef;

use crate::blocking::runtime;

/// Bytes being stored at once, at most (beyond one value).
pub const IN_FLIGHT: u64 = 256 << 20;

/// A client's stores under way, oldest first.
#[derive(Default)]
pub struct Puts {
    pending: Mutex<VecDeque<Put>>,
    /// Held by a [`Puts::settle`] while it waits: a settle that finds the
    /// stores it must wait for already taken by another one waits for that
    /// one to end (batches of a `map` settle concurrently, see
    /// [`crate::publishing`]).
    settling: tokio::sync::Mutex<()>,
}

struct Put {
    size: u64,
    task: JoinHandle<Result<(), Error>>,
}

impl Puts {
    /// Starts storing `bytes` under `r` with `client`, after waiting for
    /// the oldest stores while more than [`IN_FLIGHT`] bytes are under way
    /// (the error of one of those, if it failed). Called without the GIL.
    pub fn start(
        &self,
        client: &warren_client::Client,
        r: BlobRef,
        bytes: Bytes,
    ) -> Result<(), Error> {
        loop {
            let oldest = {
                let mut pending = self.lock();
                let busy: u64 = pending.iter().map(|p| p.size).sum();
                if busy <= IN_FLIGHT {
                    let client = client.clone();
                    let size = r.size;
                    let task = runtime().spawn(async move { client.put_blob_as(&r, bytes).await });
                    pending.push_back(Put { size, task });
                    return Ok(());
                }
                pending.pop_front()
            };
            if let Some(put) = oldest {
                joined(runtime().block_on(put.task))?;
            }
        }
    }

    /// Waits until every store started before this call has ended; the
    /// first error, if one failed (the others are still waited for).
    pub async fn settle(&self) -> Result<(), Error> {
        let _turn = self.settling.lock().await;
        let taken: Vec<Put> = self.lock().drain(..).collect();
        let mut first = Ok(());
        for put in taken {
            let outcome = joined(put.task.await);
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Put>> {
        // A panic while holding the lock leaves a list of handles: usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A store task's outcome, a panic in it as an error.
fn joined(r: Result<Result<(), Error>, tokio::task::JoinError>) -> Result<(), Error> {
    r.unwrap_or_else(|e| {
        Err(Error::Core(warren_core::Error::Script(format!(
            "storing a value failed: {e}"
        ))))
    })
}

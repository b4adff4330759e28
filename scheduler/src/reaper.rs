//! Deletes the values no future needs any more, in Redis and in the object
//! store: every scheduler runs [`run`] beside its loops.
//!
//! Two rules, one per way a value ends (see `warren_core::store::blobs`):
//! - **let go of** (the future whose value it is was forgotten or
//!   restarted, and no other future or pending task refers to it): Redis's
//!   scripts doom the blob, and [`Store::reap_blobs`] deletes it [`GRACE`]
//!   later unless a record holds it again by then;
//! - **expired** (`result_ttl_secs` after its last write): Redis expires a
//!   blob it holds itself, and [`Store::sweep_objects`] deletes older
//!   objects, a bounded number per pass, whatever the records say, so a
//!   crashed writer leaks nothing for longer than that.
//!
//! Every scheduler reaps and sweeps: two at once are harmless (a value
//! already gone is not an error). Best effort, as a value's life in Redis is:
//! a failed pass is logged and tried again.

use std::time::{Duration, Instant};

use tracing::{info, warn};
use warren_core::Settings;
use warren_core::store::Store;

/// How long a blob no record holds is kept before it is deleted: the time a
/// writer has to refer to bytes it stored just before their last holder let
/// go (the same bytes, content-addressed, are one blob). A client's
/// arguments are stored before its submit reaches a scheduler, so a
/// namespace whose schedulers are all down longer than this may find such an
/// argument gone: the task then fails with an error that says so.
pub const GRACE: Duration = Duration::from_secs(60);

/// Doomed blobs one reap call looks at (it is called again while it finds
/// as many).
const REAP_LIMIT: usize = 1_000;

/// Objects a sweep deletes at most per pass: a pass must not hold the
/// store's listing for long however much expired at once.
const SWEEP_LIMIT: usize = 10_000;

/// Reaps every 10 seconds and sweeps every minute (each every
/// `result_ttl_secs`, if shorter), for ever. A sweep lists the whole store,
/// so it runs less often than a reap, which reads only what was let go of.
pub async fn run(settings: Settings) {
    let every = Duration::from_secs(settings.result_ttl_secs.clamp(1, 10));
    let sweep_every = Duration::from_secs(settings.result_ttl_secs.clamp(1, 60));
    loop {
        if let Ok(store) = Store::connect(&settings).await {
            let mut swept: Option<Instant> = None;
            loop {
                reap(&store).await;
                if swept.is_none_or(|t| t.elapsed() >= sweep_every) {
                    sweep(&store).await;
                    swept = Some(Instant::now());
                }
                tokio::time::sleep(every).await;
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Deletes what was let go of [`GRACE`] ago.
async fn reap(store: &Store) {
    let mut reaped = 0;
    loop {
        match store.reap_blobs(GRACE, REAP_LIMIT).await {
            Ok(r) => {
                reaped += r.deleted;
                if r.handled < REAP_LIMIT {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %e, "could not delete the values no future holds");
                break;
            }
        }
    }
    if reaped > 0 {
        info!(
            values = reaped,
            "deleted values no future holds any more (forgotten or restarted)"
        );
    }
}

/// Deletes the object store's values older than `result_ttl_secs`.
async fn sweep(store: &Store) {
    match store.sweep_objects(SWEEP_LIMIT).await {
        Ok(0) => {}
        Ok(n) => info!(
            objects = n,
            "deleted values older than result_ttl_secs from the object store"
        ),
        Err(e) => warn!(error = %e, "could not sweep the object store"),
    }
}

//! warren's scheduler as a library: the `warren-scheduler` binary is its
//! settings and its reconnection loop around these parts.
//!
//! - [`admission`]: which tasks of a submit request are recorded (pure);
//! - [`batches`]: a consumer's deliveries taken as micro-batches (pure);
//! - [`intake`]: client requests and worker reports in, applied to Redis;
//! - [`dispatch`]: runnable tasks out of the outbox into the work queues, in
//!   claimed, confirmed, released windows;
//! - [`eager`]: a task a script made runnable alone, published by the intake
//!   itself (a lone submit, the next link of a chain);
//! - [`notify`]: final states out to the clients watching them;
//! - [`reaper`]: values no future needs any more, deleted;
//! - [`packs`]: work messages and packs built from claimed tasks (pure);
//! - [`decide`]: the decisions among them that need no server (outcome to
//!   transition, KilledWorker, deferral of a submit), unit-tested.

pub mod admission;
pub mod batches;
pub mod decide;
pub mod dispatch;
pub mod eager;
pub mod intake;
pub mod notify;
pub mod packs;
pub mod reaper;

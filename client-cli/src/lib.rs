//! The warren client: dask.distributed's futures API, in Rust.
//!
//! ```no_run
//! use warren_client::Client;
//!
//! # async fn go() -> Result<(), warren_client::Error> {
//! let client = Client::connect(warren_core::Settings::load(None, &[]).map_err(warren_client::Error::from)?).await?;
//! let m1 = client.submit("count_primes_less_than", (4_000_000,)).await?;
//! let m2 = client.submit("count_primes_less_than", (4_500_000,)).await?;
//! let total = client.submit("add_them", (&m1, &m2)).await?; // futures as arguments: a DAG
//! println!("{}", total.result().await?);
//! let many = client.map("count_primes_less_than", 1_500_000..1_500_009).await?;
//! println!("{:?}", client.gather(&many).await?);
//! # Ok(()) }
//! ```
//!
//! - [`Client`]: connect, `submit`, `map` (both return at once), `flush` (wait
//!   until every submission is recorded), `gather`, `as_completed`, `wait`,
//!   `cancel`, `forget`, `restart`, `workers`, `info`, attach to a key;
//! - [`Future`]: `key`, `status`, `result`, `outcome`, `exception` and
//!   `traceback` (the error without raising), `cancel`, done callbacks;
//! - [`dead`]: the namespace's dead letters, listed, replayed or purged;
//! - [`events`]: how completions reach the client (its reply queue, plus a Redis
//!   poll as a safety net).

mod client;
pub mod dead;
mod error;
pub mod events;
mod future;
mod served;
pub mod stall;

pub use client::{Client, Info, Logs, QueueInfo, RestartReport, SubmitOptions, WaitMode};
pub use error::Error;
pub use future::{Future, FutureStatus};
pub use warren_core::messages::{TaskFailure, Terminal, WorkerInfo};
pub use warren_core::status::{State, Status};
pub use warren_core::store::Forgotten;

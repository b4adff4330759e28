//! Build warren workers.
//!
//! A worker runs only functions it registered: a name, typed arguments decoded
//! with serde, a typed result. Nothing is shipped as code over the wire.
//!
//! ```no_run
//! use warren_worker::{Registry, TaskError, Worker};
//!
//! # async fn go() -> anyhow::Result<()> {
//! let mut registry = Registry::new();
//! registry.register("double", |x: i64| Ok::<_, TaskError>(x * 2));
//! registry.register("greet", |name: String, excited: bool| {
//!     Ok::<_, TaskError>(format!("hello {name}{}", if excited { "!" } else { "" }))
//! });
//! let settings = warren_core::Settings::load(None, &[])?;
//! Worker::new(settings, registry).run().await?;
//! # Ok(()) }
//! ```
//!
//! - [`registry`]: registering functions, and turning errors and panics into
//!   `{type, message, traceback}`; a [`Binary`] argument or result is a stored
//!   value (Python's `bytes`, a numpy array), read and stored by `values`;
//! - [`runner`]: the worker loop: consuming work queues, taking each task
//!   through [`admission`] to [`execute`], and [`report`]ing outcomes with
//!   confirms before acking (the parts it shares live in `shared`, what it
//!   remembers in [`memory`], one message's ack in `pack_ack`);
//! - [`isolation`]: task runs in child processes, ended for real at their limits;
//! - [`command`]: programs as tasks, on workers that allow them;
//! - [`secrets`]: the worker's passwords hidden from the programs it runs;
//! - [`prefork`]: long-lived interpreter processes that run a non-Rust
//!   worker's tasks (the Python worker's slots);
//! - [`control`]: cancels and restarts broadcast to every worker;
//! - [`admission`]: what to do with a delivered task, as pure rules;
//! - [`stock`]: the functions of the stock `warren-worker` (the notebook's);
//! - [`cancel`]: how long-running functions notice a cancel or a time limit;
//! - [`drain`]: stopping on SIGTERM without a task running twice;
//! - [`watchdog`]: noticing that this process was stopped, so that it starts
//!   nothing from a connection the broker has closed meanwhile.

pub mod admission;
pub mod cancel;
pub mod command;
pub mod control;
pub mod drain;
mod error;
pub mod execute;
pub mod isolation;
pub mod memory;
mod pack_ack;
pub mod prefork;
pub mod registry;
pub mod report;
pub mod runner;
pub mod seat;
pub mod secrets;
mod shared;
pub mod slots;
pub mod stock;
mod values;
pub mod watchdog;

pub use error::WorkerError;
pub use registry::{Registry, TaskError, TaskFn};
pub use runner::Worker;
pub use warren_core::binary::Binary;

//! The shared core of warren.
//!
//! warren is the dask.distributed futures workflow on a durable data path: task
//! messages live in RabbitMQ queues and every future's state lives in Redis. This
//! crate holds everything the scheduler, the workers and the client must agree on:
//!
//! - [`settings`]: one settings type, loaded the same way by every binary;
//! - [`messages`]: the JSON bodies that travel through RabbitMQ;
//! - [`topology`]: the names of exchanges and queues, and their idempotent declaration;
//! - [`allow`]: what a worker lets a program task set (environment variables, working directory);
//! - [`amqp`]: connecting to RabbitMQ, publishing with confirms, queue counts;
//! - [`dead_letter`]: the one way a component moves a message it cannot process to `<ns>.dead`;
//! - [`logging`]: one logging set-up for every binary (colour only on a terminal);
//! - [`sizing`]: what fits in one RabbitMQ message, decided before publishing;
//! - [`limits`]: the bounds of every field a message carries (names, time limits, counts);
//! - [`message_limit`]: the largest message to publish, lowered to the broker's once it refuses one;
//! - [`outage`]: an outage said once, reminded, and ended, not once per retry;
//! - [`shutdown`]: the drain on SIGTERM every process shares (take nothing new, finish, exit 0);
//! - [`reconnect`]: running a component again, with backoff, when a service goes away;
//! - [`signing`] and [`envelope`]: the namespace key, MACs made with it, and the signed binary
//!   envelope of a value that is not JSON (pure, tested with vectors);
//! - [`binary`]: bytes and numpy arrays as Rust task functions take and return them;
//! - [`msgauth`]: the MAC on every message that causes an effect, checked before it does;
//! - [`store`]: the Redis key layout and the Lua scripts that are the only way state changes;
//! - [`args`] and [`taskkey`]: futures inside arguments, and dask-style task keys;
//! - [`status`]: the states a future moves through;
//! - [`timing`]: delays, due times and retry backoff (the rules the scripts apply, pure);
//! - [`periodic`]: periodic schedules and cron expressions, and when each next tick falls (pure).

pub mod access;
pub mod allow;
pub mod amqp;
pub mod args;
pub mod binary;
pub mod command;
pub mod dead_letter;
pub mod envelope;
pub mod envelope_stream;
pub mod error;
pub mod lifeline;
pub mod limits;
pub mod logging;
pub mod message_limit;
pub mod messages;
pub mod metrics;
pub mod msgauth;
pub mod outage;
pub mod periodic;
pub mod reconnect;
pub mod routing;
pub mod settings;
pub mod shutdown;
pub mod signing;
pub mod sizing;
pub mod status;
pub mod store;
pub mod taskkey;
pub mod timing;
pub mod tls;
pub mod topology;

pub use error::{Error, Result};
pub use settings::Settings;

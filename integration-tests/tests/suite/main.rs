//! The end-to-end suite: one test binary, one module per concern, every test
//! against the real RabbitMQ and Redis with real scheduler and worker processes.
//!
//! Why one binary: each test binary links tokio, lapin and redis on its own,
//! and 23 of them cost minutes of every CI run in linking alone. The tests
//! already isolate themselves by namespace (and by private servers where they
//! break one), so they can share a process and run side by side.
//!
//! Four suites stay binaries of their own (`tests/*.rs`): `chaos` restarts the
//! machine's own RabbitMQ, which no other test may see, and `cluster_chaos`,
//! `rabbit_cluster` and `redis_failover` boot clusters whose load would
//! distort the timing of tests beside them.
//!
//! Run one module with `cargo test --release -p warren-integration-tests
//! --test suite -- <module>::`.

mod access;
mod alarms;
mod bad_input;
mod bad_submit;
mod binary;
mod cli;
mod cli_usability;
mod commands;
mod control;
mod dag;
mod dead;
mod docs;
mod drain;
mod faults;
mod isolation;
mod later;
mod limits;
mod metrics;
mod namespaces;
mod notebook;
mod objects;
mod outages;
mod output;
mod payloads;
mod periodic;
mod policies;
mod rolling_upgrade;
mod signed;
mod stopped_peers;
mod store;
mod tls;
mod validation;

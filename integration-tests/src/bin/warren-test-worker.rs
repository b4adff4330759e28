//! `warren-test-worker`: the stock worker plus functions that misbehave on
//! purpose, for the fault-injection tests. It is also the worked example of
//! building your own worker binary with the worker library.

use std::time::Duration;

use clap::Parser;
use warren_core::Settings;
use warren_worker::{TaskError, Worker, stock};

/// A warren worker with the stock functions and test helpers: `crash` (aborts
/// the whole process, like a segfault or an OOM kill), `flaky` (fails until a
/// counter file reaches a number), `slow_inc` (inc after a pause),
/// `count_run` (appends a line to a file for every run, then `slow_inc`).
#[derive(Debug, Parser)]
struct Args {
    /// Tasks run at once.
    #[arg(long, short = 'c')]
    concurrency: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    warren_core::logging::init(
        warren_core::logging::Format::Text,
        "RUST_LOG",
        "warn,lapin=off",
    );
    let mut registry = stock::registry();
    registry.register("crash", || -> Result<(), TaskError> {
        std::process::abort()
    });
    registry.register("flaky", |counter: String, failures: u64| {
        let seen: u64 = std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
            + 1;
        std::fs::write(&counter, seen.to_string())?;
        if seen <= failures {
            return Err(TaskError::new(
                "FlakyError",
                format!("failure {seen} of {failures}"),
            ));
        }
        Ok(seen)
    });
    registry.register("slow_inc", |x: i64, millis: u64| {
        std::thread::sleep(Duration::from_millis(millis));
        Ok::<_, TaskError>(x + 1)
    });
    registry.register("count_run", |log: String, x: i64, millis: u64| {
        use std::io::Write;
        // One short append per run: lines from several processes do not mix.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        f.write_all(format!("{x}\n").as_bytes())?;
        std::thread::sleep(Duration::from_millis(millis));
        Ok::<_, TaskError>(x + 1)
    });
    let mut overrides = Vec::new();
    if let Some(c) = args.concurrency {
        overrides.push(("concurrency", c.to_string()));
    }
    let settings = Settings::load(None, &overrides)?;
    Worker::new(settings, registry).run().await?;
    Ok(())
}

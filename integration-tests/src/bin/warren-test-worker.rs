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
/// `count_run` (appends a line to a file for every run, then `slow_inc`),
/// `spin` (busy for ever, never polling a cancel), `hog` (allocates MiB),
/// `pid` (the process that ran it), `stamp_flaky` (logs each run's time,
/// fails with a chosen error type a number of times), `span` (logs when
/// each run started and ended).
#[derive(Debug, Parser)]
struct Args {
    /// Tasks run at once.
    #[arg(long, short = 'c')]
    concurrency: Option<usize>,
    /// `thread` or `process`.
    #[arg(long)]
    isolation: Option<String>,
    /// A run's memory cap in MiB (with --isolation process).
    #[arg(long)]
    max_memory_per_task: Option<u64>,
}

// One runtime thread, as `warren-worker` (see its main).
fn main() -> anyhow::Result<()> {
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
    // Appends the time of each run (Unix ms) to `log`, and fails with an
    // error of type `kind` while the log holds at most `failures` lines: the
    // retry backoff tests measure the pauses between the lines.
    registry.register("stamp_flaky", |log: String, failures: u64, kind: String| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        f.write_all(format!("{}\n", warren_core::messages::now_ms()).as_bytes())?;
        let runs = std::fs::read_to_string(&log)?.lines().count() as u64;
        if runs <= failures {
            return Err(TaskError::new(
                kind,
                format!("failure {runs} of {failures}"),
            ));
        }
        Ok(runs)
    });
    // Sleeps `millis` and appends "<start ms> <end ms>" to `log`: the
    // concurrency tests read how many runs overlapped.
    registry.register("span", |log: String, millis: u64| {
        use std::io::Write;
        let start = warren_core::messages::now_ms();
        std::thread::sleep(Duration::from_millis(millis));
        let end = warren_core::messages::now_ms();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        f.write_all(format!("{start} {end}\n").as_bytes())?;
        Ok::<_, TaskError>(end - start)
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
    // Never polls is_cancelled(): only a process boundary stops it.
    registry.register("spin", || -> Result<(), TaskError> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    });
    // Allocates and touches `mb` MiB.
    registry.register("hog", |mb: usize| {
        let v = vec![1u8; mb * 1024 * 1024];
        Ok::<_, TaskError>(v.iter().map(|&b| b as u64).sum::<u64>())
    });
    registry.register("pid", || Ok::<_, TaskError>(std::process::id()));
    let mut overrides = Vec::new();
    if let Some(c) = args.concurrency {
        overrides.push(("concurrency", c.to_string()));
    }
    if let Some(i) = args.isolation {
        overrides.push(("isolation", i));
    }
    if let Some(m) = args.max_memory_per_task {
        overrides.push(("max_memory_per_task_mb", m.to_string()));
    }
    let settings = Settings::load(None, &overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Worker::new(settings, registry).run_on(runtime)?;
    Ok(())
}

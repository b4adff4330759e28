//! `warren-compare`: issue 14's side-by-side measurements, all in one run.
//!
//! Absolute figures do not carry from one machine (or day) to another, so
//! everything here is measured in the same invocation and quoted as ratios:
//!
//! - warren (2 workers, default settings) on an empty Redis: no-op
//!   `map(inc)` + `gather` through the Rust client and through the CLI's
//!   `warren map ... | warren gather -`, `submit(inc).result()` round trips,
//!   and a chain of dependent tasks;
//! - the same workloads on dask.distributed (2 single-threaded worker
//!   processes) and Celery (RabbitMQ + Redis, 2 prefork processes), where a
//!   Python with them is found (`--python`, default `.venv/bin/python3`);
//! - the warren rows again with 1,000,000 extra keys in Redis (half this
//!   namespace's retained results, half another namespace's keys);
//! - an idle stack's cost (CPU of the scheduler and workers, Redis commands
//!   per second) on the empty and on the full Redis;
//! - the broker's own hop time, the floor under the latency rows
//!   (`floor.rs`), right after the warren rows on the empty Redis.
//!
//! ```sh
//! bash scripts/bench-peers.sh          # the venv with dask and Celery, then this
//! target/release/warren-compare [--python .venv/bin/python3] [--tasks 20000]
//! ```
//!
//! `WARREN_BIN_DIR=DIR` runs another build's scheduler, workers and CLI
//! (an older commit's), so a commit can be measured against its parent.

mod fill;
mod floor;
mod idle;
mod peers;
mod report;
mod workloads;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use warren_integration_tests::Cluster;

/// Issue 14's comparisons, printed as a markdown table with ratios.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Tasks of the no-op maps.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Sequential round trips.
    #[arg(long, default_value_t = 1_000)]
    rounds: usize,
    /// Links of the dependent chain.
    #[arg(long, default_value_t = 1_000)]
    links: usize,
    /// Extra keys put into Redis for the "full Redis" rows.
    #[arg(long, default_value_t = 1_000_000)]
    extra_keys: usize,
    /// A Python with dask (and optionally Celery) installed.
    #[arg(long, default_value = ".venv/bin/python3")]
    python: PathBuf,
    /// Measure warren only (e.g. an older build's, with WARREN_BIN_DIR).
    #[arg(long)]
    skip_peers: bool,
    /// Seconds an idle stack is watched.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let mut report = report::Report::default();
    let peers_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers");

    if !args.skip_peers {
        eprintln!("== dask and Celery on the same workloads");
        report.dask = Some(peers::run(&args.python, &peers_dir.join("dask_bench.py"), &args).await);
        report.celery =
            Some(peers::run(&args.python, &peers_dir.join("celery_bench.py"), &args).await);
    }

    // Empty and full back to back, so the machine's drift stays out of the ratio.
    eprintln!("== warren on an empty Redis");
    let cluster = Cluster::start(2, 0).await;
    report.settled_empty = fill::settle(&cluster.settings).await?;
    report.warren_empty = Some(workloads::all(&cluster, &args).await?);
    report.floor = Some(floor::measure(&cluster.settings, args.rounds).await?);
    report.idle_empty = Some(idle::measure(&cluster, args.idle_secs).await?);

    eprintln!("== warren with {} extra keys in Redis", args.extra_keys);
    let filler = fill::Filler::new(&cluster.settings);
    filler.fill(args.extra_keys).await?;
    report.extra_keys = args.extra_keys;
    report.settled_full = fill::settle(&cluster.settings).await?;
    report.idle_full = Some(idle::measure(&cluster, args.idle_secs).await?);
    report.warren_full = Some(workloads::all(&cluster, &args).await?);
    filler.remove().await?;
    cluster.shutdown().await;

    println!("{}", report.render());
    Ok(())
}

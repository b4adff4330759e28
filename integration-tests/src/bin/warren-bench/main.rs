//! `warren-bench`: issue 5's benchmark harness. It measures and changes nothing.
//!
//! It brings up real clusters (one `warren-scheduler` and two `warren-worker`s
//! with default settings) on fresh namespaces of the local RabbitMQ and Redis
//! through the integration tests' [`Cluster`] harness, measures the issue's
//! rows, prints a table and writes it to `BENCHMARKS.md` at the repository root
//! with the machine, the date and the command.
//!
//! ```sh
//! cargo build --release --bins && target/release/warren-bench [--scale small]
//! ```
//!
//! Rows: 1 the broker's own ceiling (persistent, confirmed, acked messages
//! through one durable queue of the default type); 2 no-op `map(inc)` + `gather`
//! throughput (2b the same on quorum queues, `WARREN_QUEUE_TYPE=quorum`); 3 `submit(inc).result()` round trips; 4 a
//! chain of dependent tasks; 5 the notebook's map + `add_them` tree, scaled; 6 a
//! large map (scheduler RSS, Redis bytes per task); 7 a CPU-bound map against
//! its ideal wall time. Every wait is bounded, every namespace is cleaned up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use redis::aio::ConnectionManager;
use serde_json::Value;
use warren_client::{Client, SubmitOptions};
use warren_core::store::Store;
use warren_core::{Settings, amqp};
use warren_integration_tests::{Cluster, ClusterOptions};

mod ceiling;
mod cpu;
mod dag;
mod large;
mod latency;
mod noop;
mod procstat;
mod report;
mod table;
use ceiling::*;
use cpu::*;
use dag::*;
use large::*;
use latency::*;
use noop::*;
use procstat::*;
use report::*;
use table::*;

/// Workers per cluster, as in the notebook.
const WORKERS: usize = 2;

/// `--concurrency 0`: the default, one slot per CPU core (prefetch follows it).
const DEFAULT_CONCURRENCY: usize = 0;

/// Broker ceiling: messages published before awaiting their confirms.
const CONFIRM_WINDOW: usize = 256;

/// Broker ceiling: the consumer's prefetch.
const CEILING_PREFETCH: u16 = 256;

/// Sequential `submit(inc).result()` round trips.
const ROUND_TRIPS: usize = 1_000;

/// Tasks in the dependent chain.
const CHAIN_LENGTH: usize = 1_000;

/// Tasks of the CPU-bound map and the first argument.
const CPU_TASKS: usize = 16;

/// Keys per submit and per gather of the large map (bounds client memory).
const LARGE_CHUNK: usize = 10_000;

/// Records whose `MEMORY USAGE` is sampled to cross-check Redis bytes per task.
const MEMORY_SAMPLES: usize = 1_000;

/// Levels of the reduction tree at most (2^64 leaves).
const MAX_TREE_LEVELS: usize = 64;

/// Warm-up tasks before the first measurement (connections, script loading).
const WARM_UP_TASKS: i64 = 1_000;

/// Issue 5's benchmarks, against the local RabbitMQ and Redis.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// `full`: a ~100,000-task DAG and a 1,000,000-task map; `small`: ~10,000 and 100,000.
    #[arg(long, value_enum, default_value = "full")]
    scale: Scale,
    /// Tasks of the no-op map (row 2) and messages of the broker ceiling (row 1).
    #[arg(long, default_value_t = 20_000)]
    noop_tasks: i64,
    /// Do not write BENCHMARKS.md (print the table only).
    #[arg(long)]
    no_write: bool,
    /// Internal: run only a no-op map on a fresh cluster and print its rate
    /// (row 2b runs this in a child process with WARREN_QUEUE_TYPE=quorum).
    #[arg(long, hide = true)]
    noop_only: bool,
    /// With --noop-only: the namespace key that the cluster's scheduler,
    /// workers and client sign and check every message with
    /// (`scripts/bench-signing.sh` measures what that costs).
    #[arg(long, requires = "noop_only")]
    key_file: Option<String>,
}

/// How big the DAG and the large map are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scale {
    /// The issue's sizes.
    Full,
    /// A tenth, for a quick check.
    Small,
    /// Every row on a few hundred tasks: the test command's check that the
    /// benchmark still runs (its figures mean nothing).
    Smoke,
}

impl Scale {
    /// Leaves of the reduction DAG (tasks: 2 × leaves − 1).
    fn dag_width(self) -> i64 {
        match self {
            Scale::Full => 50_000,
            Scale::Small => 5_000,
            Scale::Smoke => 100,
        }
    }

    /// The first input of the CPU-bound map (row 7).
    fn cpu_base(self) -> i64 {
        match self {
            Scale::Full | Scale::Small => 1_500_000,
            Scale::Smoke => 50_000,
        }
    }

    /// Runs of the CPU-bound map; the row reports their median.
    fn cpu_runs(self) -> usize {
        match self {
            Scale::Full | Scale::Small => 3,
            Scale::Smoke => 1,
        }
    }

    /// Tasks of the large map.
    fn large_tasks(self) -> usize {
        match self {
            Scale::Full => 1_000_000,
            Scale::Small => 100_000,
            Scale::Smoke => 2_000,
        }
    }
}

/// Per-row time limits: generous, but a stuck run still ends.
mod limits {
    use std::time::Duration;
    pub const CEILING: Duration = Duration::from_secs(300);
    pub const NOOP: Duration = Duration::from_secs(600);
    pub const ROUND_TRIPS: Duration = Duration::from_secs(600);
    pub const CHAIN: Duration = Duration::from_secs(600);
    pub const DAG: Duration = Duration::from_secs(1_200);
    pub const LARGE: Duration = Duration::from_secs(3_600);
    pub const CPU: Duration = Duration::from_secs(900);
    /// One message of the broker ceiling.
    pub const DELIVERY: Duration = Duration::from_secs(30);
}

/// Re-executes first if the harness would not find the binaries (see
/// [`reexec_where_harness_finds_binaries`]), then runs on a tokio runtime.
fn main() -> Result<()> {
    let args = Args::parse();
    reexec_where_harness_finds_binaries()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    if args.noop_only {
        runtime.block_on(noop_only(args.noop_tasks, args.key_file))
    } else {
        runtime.block_on(run(args))
    }
}

/// The harness looks for `warren-scheduler` two levels above the running
/// executable (`target/<profile>/deps/<test>` → `target/<profile>`), which is
/// right for tests but not for a binary in `target/<profile>` itself. So when
/// started there, run a hard link (or copy) of this executable from
/// `target/<profile>/deps/warren-bench` instead, with the same arguments.
fn reexec_where_harness_finds_binaries() -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding warren-bench's own path")?;
    let dir = exe.parent().context("warren-bench has no directory")?;
    let harness_dir = dir
        .parent()
        .context("warren-bench's directory has no parent")?;
    if harness_dir.join("warren-scheduler").exists() {
        return Ok(());
    }
    if !dir.join("warren-scheduler").exists() {
        bail!(
            "warren-scheduler is not next to {} (run `cargo build --release --bins` first)",
            exe.display()
        );
    }
    let deps = dir.join("deps");
    std::fs::create_dir_all(&deps).with_context(|| format!("creating {}", deps.display()))?;
    let shim = deps.join("warren-bench");
    let _ = std::fs::remove_file(&shim);
    if std::fs::hard_link(&exe, &shim).is_err() {
        std::fs::copy(&exe, &shim)
            .with_context(|| format!("copying {} to {}", exe.display(), shim.display()))?;
    }
    let err = std::process::Command::new(&shim)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(err).with_context(|| format!("running {}", shim.display()))
}

/// The whole benchmark: every row, the table on stdout and in BENCHMARKS.md.
async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let whole_run = cpu_snapshot();
    let mut rows = Vec::new();

    eprintln!("== cluster 1: rows 1-5 and 7 (2 workers, default settings)");
    let cluster = Cluster::start(WORKERS, DEFAULT_CONCURRENCY).await;
    let ceiling = main_rows(&cluster, &args, &mut rows).await;
    cluster.shutdown().await;

    eprintln!("== cluster 2: row 6 (a fresh scheduler, so its peak RSS is this map's)");
    let cluster = Cluster::start(WORKERS, DEFAULT_CONCURRENCY).await;
    let section = Section::begin(&rows);
    let tasks = args.scale.large_tasks();
    let mut large_rate = None;
    match within(limits::LARGE, "the large map", large_map(&cluster, tasks)).await {
        Ok(m) => {
            large_rate = Some(m.tasks as f64 / m.wall.as_secs_f64());
            rows.extend(large_map_rows(&m));
        }
        Err(e) => rows.push(Row::failed(
            "6a",
            &format!("large map of {} tasks", thousands(tasks as u64)),
            "completes",
            &e,
        )),
    }
    section.end(&mut rows);
    cluster.shutdown().await;

    eprintln!("== cluster 3: row 2b (quorum queues, WARREN_QUEUE_TYPE=quorum, in a child process)");
    let section = Section::begin(&rows);
    rows.push(match noop_on_quorum_queues(args.noop_tasks).await {
        Ok((run, prefetch)) => {
            let setting = format!("quorum queues, prefetch {prefetch}");
            noop_row("2b", &setting, args.noop_tasks, run, ceiling)
        }
        Err(e) => Row::failed("2b", "no-op map, quorum queues", NOOP_TARGET, &e),
    });
    section.end(&mut rows);

    rows.sort_by_key(|r| r.id);
    let info = RunInfo {
        elapsed: started.elapsed(),
        others: others_cores(whole_run.as_ref(), cpu_snapshot().as_ref()),
        large_rate,
    };
    let table = render_table(&rows);
    println!("{table}");
    println!(
        "run took {:.0} s; other processes used {} cores on average",
        info.elapsed.as_secs_f64(),
        cores(info.others)
    );
    if !args.no_write {
        let path = write_report(&args, &table, &info).await?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Facts about the run for the report.
struct RunInfo {
    elapsed: Duration,
    /// Mean CPU cores used by other processes over the whole run.
    others: Option<f64>,
    /// Row 6a's tasks/s, to estimate the full scale from a small run.
    large_rate: Option<f64>,
}

/// Target of the no-op rows.
const NOOP_TARGET: &str = "≥ 5,000 tasks/s";

/// Rows 1-5 and 7 on one cluster; returns the broker ceiling (msg/s) if measured.
async fn main_rows(cluster: &Cluster, args: &Args, rows: &mut Vec<Row>) -> Option<f64> {
    let client = cluster.client().await;
    let prefetch = worker_prefetch(&cluster.settings).await;

    let section = Section::begin(rows);
    eprintln!("-- 1: broker ceiling");
    let n = usize::try_from(args.noop_tasks).unwrap_or(20_000);
    let ceiling = within(
        limits::CEILING,
        "the broker ceiling",
        broker_ceiling(&cluster.settings, n),
    )
    .await;
    let rate = ceiling.as_ref().ok().map(|c| c.combined);
    rows.push(match ceiling {
        Ok(c) => ceiling_row(n, &c, cluster.settings.queue_type),
        Err(e) => Row::failed("1", "broker ceiling", "(reference)", &e),
    });
    section.end(rows);

    let section = Section::begin(rows);
    eprintln!("-- 2: no-op throughput");
    let noop = async {
        noop_throughput(&client, WARM_UP_TASKS).await?;
        noop_throughput(&client, args.noop_tasks).await
    };
    let what = format!("default settings, prefetch {prefetch}");
    rows.push(match within(limits::NOOP, "the no-op map", noop).await {
        Ok(r) => noop_row("2", &what, args.noop_tasks, r, rate),
        Err(e) => Row::failed("2", "no-op map", NOOP_TARGET, &e),
    });
    section.end(rows);

    let section = Section::begin(rows);
    eprintln!("-- 3: round trips");
    let trips = within(limits::ROUND_TRIPS, "round trips", round_trips(&client)).await;
    rows.push(match trips {
        Ok(lat) => latency_row(&lat),
        Err(e) => Row::failed("3", "submit(inc).result() round trip", "p50 ≤ 2 ms", &e),
    });
    section.end(rows);

    let section = Section::begin(rows);
    eprintln!("-- 4: chain");
    rows.push(
        match within(limits::CHAIN, "the chain", chain(&client)).await {
            Ok(times) => chain_row(times),
            Err(e) => Row::failed("4", "chain of dependent inc", "≥ 1,000 tasks/s", &e),
        },
    );
    section.end(rows);

    let section = Section::begin(rows);
    eprintln!("-- 5: map + add_them tree");
    let width = args.scale.dag_width();
    let dag = within(limits::DAG, "the DAG", reduction_dag(&client, width)).await;
    rows.push(match dag {
        Ok((tasks, wall)) => dag_row(width, tasks, wall),
        Err(e) => Row::failed("5", "map(inc) + add_them tree", "(reference)", &e),
    });
    section.end(rows);

    let section = Section::begin(rows);
    eprintln!("-- 7: CPU-bound map");
    rows.push(
        match within(
            limits::CPU,
            "the CPU map",
            cpu_map(&client, args.scale.cpu_base(), args.scale.cpu_runs()),
        )
        .await
        {
            Ok(m) => cpu_row(&m),
            Err(e) => Row::failed("7", "count_primes_less_than map", CPU_TARGET, &e),
        },
    );
    section.end(rows);
    rate
}

/// Runs `fut`, failing if it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {} s", limit.as_secs()))?
}

/// Submit options that give every task a fresh key, so reruns are not deduplicated.
fn impure() -> SubmitOptions {
    SubmitOptions {
        pure: false,
        ..Default::default()
    }
}

/// One single-argument list per integer.
fn arg_lists(range: std::ops::Range<i64>) -> Vec<Vec<Value>> {
    range.map(|i| vec![Value::from(i)]).collect()
}

/// Checks that `values[i] == first + i + 1` (the results of `inc`).
fn check_incremented(values: &[Value], first: i64) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        let want = first + i as i64 + 1;
        ensure!(
            v.as_i64() == Some(want),
            "inc result {i} is {v}, expected {want}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.50), Duration::from_millis(500));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(990));
        assert_eq!(percentile(&samples[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn stat_lines_parse_with_spaces_in_the_name() {
        let p = parse_stat("42 (tokio worker) S 7 42 42 0 -1 0 1 2 3 4 100 50 5 5 20 0").unwrap();
        assert_eq!(
            (p.ppid, p.comm.as_str(), p.ticks),
            (7, "tokio worker", 160.0)
        );
    }

    #[test]
    fn this_process_counts_as_ours() {
        let snapshot = cpu_snapshot().unwrap();
        assert!(snapshot.machine > 0.0);
        let all = processes();
        assert!(descends_from(std::process::id(), std::process::id(), &all));
    }

    #[test]
    fn proc_status_reads_this_process() {
        assert!(proc_status_kib(std::process::id(), "VmRSS").unwrap() > 0);
        assert!(thread_cpu_time().is_ok());
    }
}

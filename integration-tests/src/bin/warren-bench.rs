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
use warren_integration_tests::Cluster;

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
const CPU_BASE: i64 = 1_500_000;
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
}

/// How big the DAG and the large map are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scale {
    /// The issue's sizes.
    Full,
    /// A tenth, for a quick check.
    Small,
}

impl Scale {
    /// Leaves of the reduction DAG (tasks: 2 × leaves − 1).
    fn dag_width(self) -> i64 {
        match self {
            Scale::Full => 50_000,
            Scale::Small => 5_000,
        }
    }

    /// Tasks of the large map.
    fn large_tasks(self) -> usize {
        match self {
            Scale::Full => 1_000_000,
            Scale::Small => 100_000,
        }
    }
}

/// Whether a row met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    /// A reference number with no target.
    Info,
}

/// One line of the table.
#[derive(Debug, Clone)]
struct Row {
    id: &'static str,
    what: String,
    value: String,
    target: String,
    verdict: Verdict,
    /// Mean CPU cores used by other processes while this row ran (see [`Section`]).
    others: Option<f64>,
}

impl Row {
    /// A row whose verdict is `met`.
    fn judged(id: &'static str, what: String, value: String, target: &str, met: bool) -> Row {
        Row {
            id,
            what,
            value,
            target: target.to_string(),
            verdict: if met { Verdict::Met } else { Verdict::NotMet },
            others: None,
        }
    }

    /// A row for a measurement that failed.
    fn failed(id: &'static str, what: &str, target: &str, error: &anyhow::Error) -> Row {
        let message = format!("{error:#}").replace('|', "/").replace('\n', " ");
        Row::judged(
            id,
            what.to_string(),
            format!("failed: {message}"),
            target,
            false,
        )
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
        runtime.block_on(noop_only(args.noop_tasks))
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
        match within(limits::CPU, "the CPU map", cpu_map(&client)).await {
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

// ---------------------------------------------------------------- row 1

/// The broker's ceiling through one durable queue of the configured type.
struct Ceiling {
    /// Published with confirms (windowed), msg/s.
    publish: f64,
    /// Consumed with one manual ack each, msg/s.
    consume: f64,
    /// Messages / (publish time + consume time): each message published and consumed.
    combined: f64,
}

/// Declares `<ns>.bench-ceiling`, measures it, and deletes it whatever happened.
async fn broker_ceiling(settings: &Settings, n: usize) -> Result<Ceiling> {
    let conn = amqp::connect(settings, "warren-bench ceiling")
        .await
        .context("connecting to RabbitMQ")?;
    let queue = format!("{}.bench-ceiling", settings.namespace);
    let ch = conn
        .create_channel()
        .await
        .context("opening a channel for the ceiling queue")?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString(LongString::from(settings.queue_type.as_str())),
    );
    let declare_options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str().into(), declare_options, arguments)
        .await
        .with_context(|| format!("declaring the queue {queue}"))?;
    let measured = measure_ceiling(&conn, &queue, n).await;
    let deleted = ch
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "bench done".into()).await;
    let ceiling = measured?;
    deleted.with_context(|| format!("deleting the queue {queue}"))?;
    Ok(ceiling)
}

/// Publishes `n` persistent messages in confirmed windows, then consumes them.
async fn measure_ceiling(conn: &lapin::Connection, queue: &str, n: usize) -> Result<Ceiling> {
    // About the size of a work message for `inc`.
    let body = br#"{"v":1,"key":"inc-0123456789abcdef0123456789abcdef","func":"inc","args":[12345],"epoch":0,"pad":"................................................................"}"#;
    let publish_ch = amqp::confirm_channel(conn)
        .await
        .context("opening a confirm channel")?;
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        let window = CONFIRM_WINDOW.min(n - sent);
        let mut confirms = Vec::with_capacity(window);
        for _ in 0..window {
            let props = amqp::json_properties(&[]);
            confirms.push(amqp::publish(&publish_ch, "", queue, body, props).await?);
        }
        amqp::confirmed(confirms, queue)
            .await
            .context("awaiting publisher confirms")?;
        sent += window;
    }
    let publish_time = t.elapsed();
    let consume_time = consume_all(conn, queue, n).await?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    Ok(Ceiling {
        publish: rate(publish_time),
        consume: rate(consume_time),
        combined: rate(publish_time + consume_time),
    })
}

/// Consumes `n` messages from `queue`, acking each; returns the time taken.
async fn consume_all(conn: &lapin::Connection, queue: &str, n: usize) -> Result<Duration> {
    let ch = conn
        .create_channel()
        .await
        .context("opening a consume channel")?;
    ch.basic_qos(CEILING_PREFETCH, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;
    let t = Instant::now();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "warren-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("consuming {queue}"))?;
    for i in 0..n {
        let delivery = tokio::time::timeout(limits::DELIVERY, consumer.next())
            .await
            .with_context(|| format!("message {i} of {n} did not arrive"))?
            .context("the consumer ended")?
            .context("receiving a message")?;
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .context("acking")?;
    }
    let took = t.elapsed();
    let _ = ch.close(200, "done".into()).await;
    Ok(took)
}

/// Row 1.
fn ceiling_row(n: usize, c: &Ceiling, queue_type: warren_core::topology::QueueType) -> Row {
    Row {
        id: "1",
        what: format!(
            "broker ceiling: {} persistent msgs through one durable {queue_type} queue, confirms per {CONFIRM_WINDOW}, manual acks",
            thousands(n as u64)
        ),
        value: format!(
            "{} msg/s published+consumed (publish {}/s, consume {}/s)",
            thousands(c.combined as u64),
            thousands(c.publish as u64),
            thousands(c.consume as u64)
        ),
        target: "(reference)".into(),
        verdict: Verdict::Info,
        others: None,
    }
}

// ---------------------------------------------------------------- rows 2, 2b

/// One no-op map's numbers.
#[derive(Debug, Clone, Copy)]
struct NoopRun {
    /// Tasks per second, from the first submit to the last value.
    rate: f64,
    /// Seconds until `map_with` returned (every batch handed to the connection;
    /// `gather` then waits for the scheduler to record them).
    submit_secs: f64,
}

/// `map(inc, range(n))` + `gather`.
async fn noop_throughput(client: &Client, n: i64) -> Result<NoopRun> {
    let t = Instant::now();
    let futures = client
        .map_with("inc", arg_lists(0..n), &impure())
        .await
        .context("submitting map(inc)")?;
    let submit_secs = t.elapsed().as_secs_f64();
    let values = client
        .gather(&futures)
        .await
        .context("gathering map(inc)")?;
    check_incremented(&values, 0)?;
    Ok(NoopRun {
        rate: n as f64 / t.elapsed().as_secs_f64(),
        submit_secs,
    })
}

/// Rows 2 and 2b, with the ratio to the broker ceiling.
fn noop_row(id: &'static str, setting: &str, n: i64, run: NoopRun, ceiling: Option<f64>) -> Row {
    let rate = run.rate;
    let ratio = ceiling.map_or_else(
        || "ceiling not measured".to_string(),
        |c| format!("{:.0}% of the ceiling", 100.0 * rate / c),
    );
    Row::judged(
        id,
        format!(
            "no-op map(inc, range({})) + gather ({setting})",
            thousands(n as u64)
        ),
        format!(
            "{} tasks/s ({ratio}; submit took {:.2} s of {:.2} s)",
            thousands(rate as u64),
            run.submit_secs,
            n as f64 / rate
        ),
        NOOP_TARGET,
        rate >= 5_000.0,
    )
}

/// The `--noop-only` child: a fresh cluster, a warm-up, one no-op map, its rate.
/// It prints `name=value` lines: `rate`, `submit_secs` and `prefetch`.
async fn noop_only(n: i64) -> Result<()> {
    let cluster = Cluster::start(WORKERS, DEFAULT_CONCURRENCY).await;
    let prefetch = worker_prefetch(&cluster.settings).await;
    let client = cluster.client().await;
    let measured = within(limits::NOOP, "the no-op map", async {
        noop_throughput(&client, WARM_UP_TASKS).await?;
        noop_throughput(&client, n).await
    })
    .await;
    cluster.shutdown().await;
    let run = measured?;
    println!("rate={}", run.rate);
    println!("submit_secs={}", run.submit_secs);
    println!("prefetch={prefetch}");
    Ok(())
}

/// Row 2b: runs this binary with `--noop-only` and `WARREN_QUEUE_TYPE=quorum`
/// in its environment, which the cluster's scheduler and workers inherit (no
/// environment change in this process, so no other measurement sees it).
/// Returns the run and the workers' prefetch as RabbitMQ saw it.
async fn noop_on_quorum_queues(n: i64) -> Result<(NoopRun, String)> {
    let exe = std::env::current_exe().context("finding warren-bench's own path")?;
    let child = tokio::process::Command::new(exe)
        .args(["--noop-only", "--noop-tasks", &n.to_string()])
        .env("WARREN_QUEUE_TYPE", "quorum")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limits::NOOP + Duration::from_secs(120), child)
        .await
        .context("the quorum-queue run did not finish in time")?
        .context("running warren-bench --noop-only")?;
    // `output()` captures stderr too: pass the child's messages on.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(
        out.status.success(),
        "warren-bench --noop-only failed ({})",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let number = |name| -> Result<f64> {
        let value = printed(&stdout, name)?;
        value
            .parse()
            .with_context(|| format!("parsing {name}={value}"))
    };
    let run = NoopRun {
        rate: number("rate")?,
        submit_secs: number("submit_secs")?,
    };
    Ok((run, printed(&stdout, "prefetch")?.to_string()))
}

/// The value of a `name=value` line the `--noop-only` child printed.
fn printed<'a>(stdout: &'a str, name: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .with_context(|| format!("warren-bench --noop-only printed no {name}"))
}

/// The prefetch of each worker consumer of the cluster's default work queue, as
/// RabbitMQ reports it (`rabbitmqctl list_consumers`), e.g. "2, 2".
async fn worker_prefetch(settings: &Settings) -> String {
    let queue = format!("{}.work.default", settings.namespace);
    let out = tokio::process::Command::new("rabbitmqctl")
        .args([
            "list_consumers",
            "--quiet",
            "--no-table-headers",
            "queue_name",
            "prefetch_count",
        ])
        .stdin(Stdio::null())
        .output();
    let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(30), out).await else {
        return "unknown".into();
    };
    let counts: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(q, _)| *q == queue)
        .map(|(_, p)| p.trim())
        .collect();
    if counts.is_empty() {
        "unknown".into()
    } else {
        counts.join(", ")
    }
}

// ---------------------------------------------------------------- row 3

/// `ROUND_TRIPS` sequential `submit(inc).result()`, each timed; sorted.
async fn round_trips(client: &Client) -> Result<Vec<Duration>> {
    let opts = impure();
    let mut latencies = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS as i64 {
        let t = Instant::now();
        let f = client
            .submit_with("inc", (i,), &opts)
            .await
            .context("submitting inc")?;
        let v = f.result().await.context("awaiting inc")?;
        latencies.push(t.elapsed());
        ensure!(v.as_i64() == Some(i + 1), "inc({i}) returned {v}");
    }
    latencies.sort();
    Ok(latencies)
}

/// The `q` quantile (0..=1) of sorted samples, nearest rank.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Row 3.
fn latency_row(sorted: &[Duration]) -> Row {
    let p50 = percentile(sorted, 0.50);
    let p99 = percentile(sorted, 0.99);
    Row::judged(
        "3",
        format!(
            "submit(inc).result() round trip, {} sequential",
            thousands(sorted.len() as u64)
        ),
        format!("p50 {:.2} ms, p99 {:.2} ms", ms(p50), ms(p99)),
        "p50 ≤ 2 ms",
        p50 <= Duration::from_millis(2),
    )
}

/// Milliseconds as a float.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------- row 4

/// `CHAIN_LENGTH` tasks, each `inc` of the previous future: time from the
/// first submit to the last result.
async fn chain(client: &Client) -> Result<(Duration, Duration)> {
    let opts = impure();
    let t = Instant::now();
    let mut f = client
        .submit_with("inc", (0,), &opts)
        .await
        .context("submitting the chain's first inc")?;
    for _ in 1..CHAIN_LENGTH {
        f = client
            .submit_with("inc", (&f,), &opts)
            .await
            .context("submitting a chained inc")?;
    }
    let submitted = t.elapsed();
    let v = f.result().await.context("awaiting the chain's end")?;
    let wall = t.elapsed();
    ensure!(
        v.as_i64() == Some(CHAIN_LENGTH as i64),
        "the chain ended with {v}"
    );
    Ok((wall, submitted))
}

/// Row 4.
fn chain_row((wall, submitted): (Duration, Duration)) -> Row {
    let rate = CHAIN_LENGTH as f64 / wall.as_secs_f64();
    Row::judged(
        "4",
        format!(
            "chain of {} dependent inc (first submit → final result)",
            thousands(CHAIN_LENGTH as u64)
        ),
        format!(
            "{} tasks/s ({:.2} s, of which {:.2} s until the last submit returned)",
            thousands(rate as u64),
            wall.as_secs_f64(),
            submitted.as_secs_f64()
        ),
        "≥ 1,000 tasks/s",
        rate >= 1_000.0,
    )
}

// ---------------------------------------------------------------- row 5

/// The notebook's shape, scaled: `inc` over `width` items, then a binary tree
/// of `add_them` (one `map_with` per level). Returns tasks and wall time.
async fn reduction_dag(client: &Client, width: i64) -> Result<(usize, Duration)> {
    let t = Instant::now();
    let mut level = client
        .map_with("inc", arg_lists(0..width), &impure())
        .await
        .context("submitting the DAG's map")?;
    let mut tasks = level.len();
    for _ in 0..MAX_TREE_LEVELS {
        if level.len() <= 1 {
            break;
        }
        let (next, added) = reduce_level(client, &level).await?;
        level = next;
        tasks += added;
    }
    ensure!(level.len() == 1, "the tree did not reduce to one future");
    let total = level[0].result().await.context("awaiting the DAG's root")?;
    let wall = t.elapsed();
    let want = width * (width + 1) / 2;
    ensure!(
        total.as_i64() == Some(want),
        "the DAG summed to {total}, expected {want}"
    );
    Ok((tasks, wall))
}

/// One tree level: `add_them` of each pair; an odd last future is carried up.
/// Returns the next level and the tasks submitted.
async fn reduce_level(
    client: &Client,
    level: &[warren_client::Future],
) -> Result<(Vec<warren_client::Future>, usize)> {
    let mut pairs = level.chunks_exact(2);
    let arg_lists = pairs
        .by_ref()
        .map(|p| {
            Ok(vec![
                serde_json::to_value(&p[0])?,
                serde_json::to_value(&p[1])?,
            ])
        })
        .collect::<Result<Vec<_>>>()?;
    let carried = pairs.remainder().to_vec();
    let submitted = arg_lists.len();
    let mut next = client
        .map_with("add_them", arg_lists, &impure())
        .await
        .context("submitting a tree level")?;
    next.extend(carried);
    Ok((next, submitted))
}

/// Row 5.
fn dag_row(width: i64, tasks: usize, wall: Duration) -> Row {
    Row {
        id: "5",
        what: format!(
            "notebook DAG scaled: map(inc) over {} + add_them tree = {} tasks",
            thousands(width as u64),
            thousands(tasks as u64)
        ),
        value: format!(
            "{:.1} s wall ({} tasks/s)",
            wall.as_secs_f64(),
            thousands((tasks as f64 / wall.as_secs_f64()) as u64)
        ),
        target: "(reference)".into(),
        verdict: Verdict::Info,
        others: None,
    }
}

// ---------------------------------------------------------------- row 6

/// What the large map measured.
struct LargeMap {
    tasks: usize,
    wall: Duration,
    /// Scheduler VmRSS (KiB) before submitting, after 10% was gathered, at the end.
    rss_start: u64,
    rss_tenth: u64,
    rss_end: u64,
    /// Scheduler VmHWM (KiB) at the end: its peak over its whole life.
    hwm: u64,
    /// (used_memory after − before) / tasks.
    redis_bytes_per_task: f64,
    /// Mean `MEMORY USAGE` of sampled task records.
    sampled_record_bytes: f64,
    /// This process's VmHWM (KiB): the client's memory.
    client_hwm: u64,
}

/// Submits `tasks` no-op tasks in chunks, gathers them in chunks, and reads the
/// scheduler's memory and Redis's along the way.
async fn large_map(cluster: &Cluster, tasks: usize) -> Result<LargeMap> {
    let pid = cluster
        .scheduler_pid()
        .context("the cluster has no scheduler")?;
    let client = cluster.client().await;
    let store = Store::connect(&cluster.settings)
        .await
        .context("connecting to Redis")?;
    let mut redis = store.connection();
    let memory_before = used_memory(&mut redis).await?;
    let rss_start = proc_status_kib(pid, "VmRSS")?;
    let t = Instant::now();
    let keys = submit_in_chunks(&client, tasks).await?;
    eprintln!(
        "   submitted {} tasks in {:.1} s",
        thousands(tasks as u64),
        t.elapsed().as_secs_f64()
    );
    let mut rss_tenth = None;
    for (i, chunk) in keys.chunks(LARGE_CHUNK).enumerate() {
        let values = client
            .gather_keys(chunk)
            .await
            .with_context(|| format!("gathering chunk {i}"))?;
        check_incremented(&values, (i * LARGE_CHUNK) as i64)?;
        if rss_tenth.is_none() && (i + 1) * LARGE_CHUNK >= tasks / 10 {
            rss_tenth = Some(proc_status_kib(pid, "VmRSS")?);
        }
    }
    let wall = t.elapsed();
    let memory_after = used_memory(&mut redis).await?;
    Ok(LargeMap {
        tasks,
        wall,
        rss_start,
        rss_tenth: rss_tenth.unwrap_or(rss_start),
        rss_end: proc_status_kib(pid, "VmRSS")?,
        hwm: proc_status_kib(pid, "VmHWM")?,
        redis_bytes_per_task: memory_after.saturating_sub(memory_before) as f64 / tasks as f64,
        sampled_record_bytes: sampled_record_bytes(&mut redis, store.prefix(), &keys).await?,
        client_hwm: proc_status_kib(std::process::id(), "VmHWM")?,
    })
}

/// `map_with(inc)` in chunks of `LARGE_CHUNK` (so no million specs at once);
/// returns the keys in order.
async fn submit_in_chunks(client: &Client, tasks: usize) -> Result<Vec<String>> {
    let mut keys = Vec::with_capacity(tasks);
    let opts = impure();
    for start in (0..tasks).step_by(LARGE_CHUNK) {
        let end = (start + LARGE_CHUNK).min(tasks);
        let futures = client
            .map_with("inc", arg_lists(start as i64..end as i64), &opts)
            .await
            .with_context(|| format!("submitting tasks {start}..{end}"))?;
        keys.extend(futures.iter().map(|f| f.key().to_string()));
    }
    Ok(keys)
}

/// A `VmRSS`/`VmHWM`-style field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// Redis's `used_memory` (bytes), from `INFO memory`.
async fn used_memory(redis: &mut ConnectionManager) -> Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(redis)
        .await
        .context("INFO memory")?;
    info_field(&info, "used_memory")?
        .parse()
        .context("parsing used_memory")
}

/// A `name:value` field of an `INFO` answer.
fn info_field<'a>(info: &'a str, name: &str) -> Result<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .with_context(|| format!("no {name} in INFO"))
}

/// The mean `MEMORY USAGE` of `MEMORY_SAMPLES` evenly spaced task records: a
/// cross-check of the `used_memory` difference, which other users of the same
/// Redis can disturb.
async fn sampled_record_bytes(
    redis: &mut ConnectionManager,
    prefix: &str,
    keys: &[String],
) -> Result<f64> {
    let step = (keys.len() / MEMORY_SAMPLES).max(1);
    let mut total = 0u64;
    let mut count = 0u64;
    for key in keys.iter().step_by(step).take(MEMORY_SAMPLES) {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(format!("{prefix}t:{key}"))
            .arg("SAMPLES")
            .arg(0)
            .query_async(redis)
            .await
            .context("MEMORY USAGE")?;
        total += bytes.with_context(|| format!("the record of {key} is missing"))?;
        count += 1;
    }
    ensure!(count > 0, "no records to sample");
    Ok(total as f64 / count as f64)
}

/// Rows 6a-6c.
fn large_map_rows(m: &LargeMap) -> Vec<Row> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    // A leak grows with the tasks done: compare 10% done with the end.
    let flat = m.rss_end as f64 <= m.rss_tenth as f64 * 1.10 + 4096.0;
    vec![
        Row::judged(
            "6a",
            format!(
                "large map: {} no-op tasks, gathered {} keys at a time",
                thousands(m.tasks as u64),
                thousands(LARGE_CHUNK as u64)
            ),
            format!(
                "completed in {:.1} s ({} tasks/s); client peak RSS {:.0} MiB",
                m.wall.as_secs_f64(),
                thousands((m.tasks as f64 / m.wall.as_secs_f64()) as u64),
                mib(m.client_hwm)
            ),
            "completes",
            true,
        ),
        Row::judged(
            "6b",
            "large map: scheduler RSS (VmRSS start → 10% done → end; VmHWM)".into(),
            format!(
                "{:.1} → {:.1} → {:.1} MiB; peak {:.1} MiB",
                mib(m.rss_start),
                mib(m.rss_tenth),
                mib(m.rss_end),
                mib(m.hwm)
            ),
            "flat (end ≤ 10%-done + 10% + 4 MiB)",
            flat,
        ),
        Row::judged(
            "6c",
            "large map: Redis memory per finished task (Δ used_memory / tasks)".into(),
            format!(
                "{:.0} B/task (sampled MEMORY USAGE of a record: {:.0} B)",
                m.redis_bytes_per_task, m.sampled_record_bytes
            ),
            "≤ 1 KiB/task",
            m.redis_bytes_per_task <= 1024.0,
        ),
    ]
}

// ---------------------------------------------------------------- row 7

/// Runs of the CPU-bound map; the row reports their median.
const CPU_RUNS: usize = 3;

/// What the CPU-bound map measured, per run.
struct CpuMap {
    runs: Vec<CpuRun>,
    cores: usize,
}

/// One run: the map's wall time between two serial runs of the same work.
struct CpuRun {
    wall: Duration,
    /// Sum of the tasks' CPU times run serially here, before and after the
    /// map: the machine's speed drifts (shared hosts), and their mean is the
    /// reference nearest in time to the map.
    serial_before: Duration,
    serial_after: Duration,
}

impl CpuRun {
    fn ideal(&self, cores: usize) -> f64 {
        (self.serial_before + self.serial_after).as_secs_f64() / 2.0 / cores as f64
    }

    fn overhead(&self, cores: usize) -> f64 {
        self.wall.as_secs_f64() / self.ideal(cores) - 1.0
    }

    /// How much the machine's speed moved during the run.
    fn drift(&self) -> f64 {
        self.serial_after.as_secs_f64() / self.serial_before.as_secs_f64() - 1.0
    }
}

/// `count_primes_less_than` over `CPU_TASKS` inputs, [`CPU_RUNS`] times:
/// serially here (CPU time per task), as a map on the cluster (wall time),
/// and serially again.
async fn cpu_map(client: &Client) -> Result<CpuMap> {
    let inputs: Vec<i64> = (0..CPU_TASKS as i64).map(|i| CPU_BASE + i).collect();
    let serial = |inputs: Vec<i64>| async move {
        tokio::task::spawn_blocking(move || serial_cpu(&inputs))
            .await
            .context("the serial run panicked")?
    };
    let mut runs = Vec::with_capacity(CPU_RUNS);
    for _ in 0..CPU_RUNS {
        let (serial_before, expected) = serial(inputs.clone()).await?;
        let t = Instant::now();
        let futures = client
            .map_with(
                "count_primes_less_than",
                inputs.iter().map(|&m| vec![Value::from(m)]).collect(),
                &impure(),
            )
            .await
            .context("submitting count_primes_less_than")?;
        let values = client
            .gather(&futures)
            .await
            .context("gathering count_primes_less_than")?;
        let wall = t.elapsed();
        let got: Vec<Option<i64>> = values.iter().map(Value::as_i64).collect();
        let want: Vec<Option<i64>> = expected.iter().copied().map(Some).collect();
        ensure!(got == want, "workers counted {got:?}, serially {want:?}");
        let (serial_after, _) = serial(inputs.clone()).await?;
        runs.push(CpuRun {
            wall,
            serial_before,
            serial_after,
        });
    }
    Ok(CpuMap {
        runs,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// Runs each input serially on this thread; returns the summed CPU time and the results.
fn serial_cpu(inputs: &[i64]) -> Result<(Duration, Vec<i64>)> {
    let mut total = Duration::ZERO;
    let mut results = Vec::with_capacity(inputs.len());
    for &m in inputs {
        let before = thread_cpu_time()?;
        results.push(warren_worker::stock::count_primes_less_than(m));
        total += thread_cpu_time()?.saturating_sub(before);
    }
    Ok((total, results))
}

/// This thread's CPU time so far (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_time() -> Result<Duration> {
    let path = "/proc/thread-self/schedstat";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("parsing {path}: {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}

/// Row 7: the median run's overhead over its ideal, with every run shown.
fn cpu_row(m: &CpuMap) -> Row {
    let mut order: Vec<&CpuRun> = m.runs.iter().collect();
    order.sort_by(|a, b| a.overhead(m.cores).total_cmp(&b.overhead(m.cores)));
    let Some(median) = order.get(order.len() / 2) else {
        return Row::judged(
            "7",
            "CPU-bound map".into(),
            "no run".into(),
            CPU_TARGET,
            false,
        );
    };
    let each: Vec<String> = m
        .runs
        .iter()
        .map(|r| {
            format!(
                "{:+.1}% (machine drift {:+.1}%)",
                100.0 * r.overhead(m.cores),
                100.0 * r.drift()
            )
        })
        .collect();
    Row::judged(
        "7",
        format!(
            "CPU-bound map: {CPU_TASKS} × count_primes_less_than({}..), ideal = serial CPU (mean of the serial runs just before and after) / {} cores, median of {CPU_RUNS} runs",
            thousands(CPU_BASE as u64),
            m.cores
        ),
        format!(
            "{:.2} s wall vs {:.2} s ideal ({:+.1}%); runs: {}",
            median.wall.as_secs_f64(),
            median.ideal(m.cores),
            100.0 * median.overhead(m.cores),
            each.join(", ")
        ),
        CPU_TARGET,
        median.overhead(m.cores) <= 0.05,
    )
}

/// Row 7's target (issue 14).
const CPU_TARGET: &str = "within 5% of ideal (median of 3)";

// ---------------------------------------------------------------- other load

/// Service processes whose CPU is part of what is measured (RabbitMQ, Redis).
const SERVICES: &[&str] = &[
    "beam.smp",
    "erl_child_setup",
    "epmd",
    "inet_gethost",
    "redis-server",
];
/// Linux reports CPU times in USER_HZ ticks, 100 per second.
const TICKS_PER_SEC: f64 = 100.0;

/// Cumulative CPU seconds at one moment.
struct CpuSnapshot {
    at: Instant,
    /// Busy time of every core of the machine.
    machine: f64,
    /// This process and its descendants (the clusters, the 2b child).
    ours: f64,
    /// RabbitMQ and Redis.
    services: f64,
}

/// Marks where a measurement starts, to stamp its rows with the CPU other
/// processes used meanwhile: the machine may be shared, and a busy neighbour
/// shows in the numbers.
struct Section {
    first_row: usize,
    start: Option<CpuSnapshot>,
}

impl Section {
    /// A section whose rows will follow `rows`.
    fn begin(rows: &[Row]) -> Section {
        Section {
            first_row: rows.len(),
            start: cpu_snapshot(),
        }
    }

    /// Stamps the rows added since [`Section::begin`].
    fn end(self, rows: &mut [Row]) {
        let others = others_cores(self.start.as_ref(), cpu_snapshot().as_ref());
        for row in &mut rows[self.first_row..] {
            row.others = others;
        }
    }
}

/// Mean cores used between two snapshots by processes that are neither ours
/// nor the services.
fn others_cores(from: Option<&CpuSnapshot>, to: Option<&CpuSnapshot>) -> Option<f64> {
    let (from, to) = (from?, to?);
    let wall = to.at.duration_since(from.at).as_secs_f64();
    let others =
        (to.machine - from.machine) - (to.ours - from.ours) - (to.services - from.services);
    (wall > 0.0).then(|| (others / wall).max(0.0))
}

/// "0.03", or "?" when not measured.
fn cores(others: Option<f64>) -> String {
    others.map_or_else(|| "?".into(), |c| format!("{c:.2}"))
}

/// Reads `/proc/stat` and every `/proc/<pid>/stat`.
fn cpu_snapshot() -> Option<CpuSnapshot> {
    let at = Instant::now();
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    let processes = processes();
    let me = std::process::id();
    let (mut ours, mut services) = (0.0, 0.0);
    for (pid, p) in &processes {
        if descends_from(*pid, me, &processes) {
            ours += p.ticks;
        } else if SERVICES.contains(&p.comm.as_str()) {
            services += p.ticks;
        }
    }
    Some(CpuSnapshot {
        at,
        machine: busy / TICKS_PER_SEC,
        ours: ours / TICKS_PER_SEC,
        services: services / TICKS_PER_SEC,
    })
}

/// One process's parent, name and CPU ticks (its own and its reaped children's).
struct Process {
    ppid: u32,
    comm: String,
    ticks: f64,
}

/// Every process now running (those that vanish while being read are skipped).
fn processes() -> std::collections::HashMap<u32, Process> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(p) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            out.insert(pid, p);
        }
    }
    out
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ... utime stime cutime cstime ...`.
fn parse_stat(stat: &str) -> Option<Process> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let ticks = number(11)? + number(12)? + number(13)? + number(14)?;
    Some(Process {
        ppid: fields.get(1)?.parse().ok()?,
        comm,
        ticks,
    })
}

/// Whether `pid` is `ancestor` or one of its descendants.
fn descends_from(
    mut pid: u32,
    ancestor: u32,
    processes: &std::collections::HashMap<u32, Process>,
) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match processes.get(&pid) {
            Some(p) if p.ppid != pid => pid = p.ppid,
            _ => return false,
        }
    }
    false
}

// ---------------------------------------------------------------- report

/// `12345678` → `12,345,678`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows as a Markdown table.
fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| # | what | value | target | met | others' CPU |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let verdict = match r.verdict {
            Verdict::Met => "met",
            Verdict::NotMet => "**not met**",
            Verdict::Info => "—",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.id,
            r.what,
            r.value,
            r.target,
            verdict,
            cores(r.others)
        ));
    }
    out
}

/// Writes BENCHMARKS.md at the repository root; returns its path.
async fn write_report(args: &Args, table: &str, info: &RunInfo) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .context("finding the repository root")?;
    let path = root.join("BENCHMARKS.md");
    let text = report(
        args,
        table,
        info,
        &machine().await,
        &code_version(&root).await,
    )
    .await;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The report's text.
async fn report(args: &Args, table: &str, info: &RunInfo, machine: &str, version: &str) -> String {
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    format!(
        "# warren benchmarks (issue 5)\n\n\
         Measured {date} on {version}, {scale_note}. The run took {secs:.0} s, during which \
         processes other than the benchmark's, RabbitMQ and Redis used {others} CPU cores on \
         average.\n\n\
         ```sh\ncargo build --release --bins && target/release/warren-bench {command}\n```\n\n\
         {table}\n\
         ## Machine\n\n{machine}\n\
         ## How it is measured\n\n\
         - The stack is real: the integration tests' `Cluster` harness starts one `warren-scheduler` \
         and {WORKERS} `warren-worker`s (default settings: concurrency = one slot per core, prefetch = \
         16 per slot, at least 32) on a fresh namespace of the local RabbitMQ and Redis, and deletes the namespace \
         afterwards. Rows 1-5 and 7 share one cluster; row 6 has its own (so the scheduler's peak RSS \
         is that map's); row 2b runs in a child process whose environment has \
         `WARREN_QUEUE_TYPE=quorum`, which its scheduler and workers inherit.\n\
         - Every task is submitted with `pure: false` (fresh keys, nothing deduplicated) and every \
         result is checked. Rows 2 and 2b follow a {warm} task warm-up.\n\
         - Row 1 is the broker alone: persistent messages published to one durable queue of the default type with \
         confirms awaited per window of {CONFIRM_WINDOW}, then consumed (prefetch {CEILING_PREFETCH}) \
         with one manual ack each. Its rate is messages / (publish time + consume time). A warren task \
         costs a share of such messages (work messages carry packs of up to 8 tasks when queues are \
         busy, submits and reports are batched) plus Redis scripts on the same cores, so a task rate \
         near or above this message rate is possible.\n\
         - Row 3 times {trips} sequential `submit(inc).result()`; row 4 runs from the first submit of \
         a {chain}-task chain to its final result.\n\
         - Row 6 submits and gathers in chunks of {chunk} keys. Scheduler RSS is `/proc/<pid>/status`; \
         Redis bytes per task is the growth of `INFO memory` `used_memory` over the run divided by the \
         tasks (finished records are kept for `result_ttl_secs`), cross-checked with `MEMORY USAGE` of \
         sampled task records because the Redis may be shared.\n\
         - Row 7's ideal is the tasks' summed CPU time, measured by running the same function \
         (`warren_worker::stock::count_primes_less_than`) serially in the bench process just before \
         and just after each map (their mean), divided by the cores; the row is the median of three \
         runs, and each run shows how far the machine's speed drifted between its two serial runs.\n\
         - \"others' CPU\" is the mean number of cores used during that row by processes that are \
         neither the benchmark's own (it, its clusters, its child) nor RabbitMQ or Redis, from \
         `/proc/stat` and `/proc/<pid>/stat`: on a shared machine, a row with more than about 0.1 was \
         disturbed.\n",
        date = now_utc().await,
        scale_note = scale_note(args.scale, info.large_rate),
        secs = info.elapsed.as_secs_f64(),
        others = cores(info.others),
        warm = thousands(WARM_UP_TASKS as u64),
        trips = thousands(ROUND_TRIPS as u64),
        chain = thousands(CHAIN_LENGTH as u64),
        chunk = thousands(LARGE_CHUNK as u64),
    )
}

/// Which sizes ran; for a small run, what the full one would take at row 6a's rate.
fn scale_note(scale: Scale, large_rate: Option<f64>) -> String {
    if scale == Scale::Full {
        return "at full scale (the issue's sizes)".into();
    }
    let full_tasks = Scale::Full.large_tasks();
    let estimate = large_rate.map_or_else(String::new, |rate| {
        format!(
            "; at row 6a's rate the full {}-task map alone would take about {:.0} min",
            thousands(full_tasks as u64),
            full_tasks as f64 / rate / 60.0
        )
    });
    format!(
        "at **small scale** (`--scale small`: a {}-task DAG and a {}-task large map, a tenth of \
         the issue's sizes{estimate})",
        thousands((2 * Scale::Small.dag_width() - 1) as u64),
        thousands(Scale::Small.large_tasks() as u64)
    )
}

/// The commit measured, e.g. "commit 1a2b3c4" or "commit 1a2b3c4 plus
/// uncommitted changes to 5 files".
async fn code_version(root: &Path) -> String {
    let root = root.to_string_lossy();
    let commit = command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"]).await;
    if commit.trim().is_empty() {
        return "an unknown commit".into();
    }
    let status = command_output(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    )
    .await;
    match status.lines().count() {
        0 => format!("commit {}", commit.trim()),
        n => format!(
            "commit {} plus uncommitted changes to {n} files",
            commit.trim()
        ),
    }
}

/// The machine and service versions, as Markdown list items.
async fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = info_field(&meminfo, "MemTotal")
        .ok()
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rabbitmq = command_output("rabbitmqctl", &["version"]).await;
    let redis = command_output("redis-cli", &["INFO", "server"]).await;
    let redis = info_field(&redis, "redis_version").unwrap_or("unknown");
    format!(
        "- CPU: {cores} cores (`nproc`), {cpu}\n- memory: {memory}\n- kernel: Linux {}\n\
         - RabbitMQ {} (`rabbitmqctl version`), Redis {redis} (`redis-cli INFO server`)\n",
        kernel.trim(),
        rabbitmq.lines().last().unwrap_or("unknown").trim(),
    )
}

/// A command's stdout, or "" if it failed (bounded to 30 s).
async fn command_output(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(30), out).await {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => String::new(),
    }
}

/// The current date and time in UTC, as `date -u` prints it.
async fn now_utc() -> String {
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).await;
    if date.trim().is_empty() {
        "unknown date".into()
    } else {
        date.trim().to_string()
    }
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

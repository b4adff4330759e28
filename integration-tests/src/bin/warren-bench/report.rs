//! Writing BENCHMARKS.md: the table with the machine, the date, the version and the command.

use super::*;

/// Writes BENCHMARKS.md at the repository root; returns its path.
pub(crate) async fn write_report(args: &Args, table: &str, info: &RunInfo) -> Result<PathBuf> {
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
    // Everything from the marker on was written by hand (other scripts'
    // tables, same-run comparisons): a new run replaces only its own part.
    let kept = std::fs::read_to_string(&path)
        .ok()
        .and_then(|old| old.find(HAND_WRITTEN).map(|i| old[i..].to_string()))
        .unwrap_or_default();
    std::fs::write(&path, format!("{text}\n{kept}"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The line after which BENCHMARKS.md is written by hand, and kept.
pub(crate) const HAND_WRITTEN: &str = "<!-- written by hand below: warren-bench keeps it -->";

/// The report's text.
pub(crate) async fn report(
    args: &Args,
    table: &str,
    info: &RunInfo,
    machine: &str,
    version: &str,
) -> String {
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
pub(crate) fn scale_note(scale: Scale, large_rate: Option<f64>) -> String {
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
pub(crate) async fn code_version(root: &Path) -> String {
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
pub(crate) async fn machine() -> String {
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
pub(crate) async fn command_output(program: &str, args: &[&str]) -> String {
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
pub(crate) async fn now_utc() -> String {
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).await;
    if date.trim().is_empty() {
        "unknown date".into()
    } else {
        date.trim().to_string()
    }
}

//! Rows 2 and 2b: no-op map + gather throughput, on classic and quorum queues.

use super::*;

/// One no-op map's numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoopRun {
    /// Tasks per second, from the first submit to the last value.
    pub(crate) rate: f64,
    /// Seconds until `map_with` returned (every batch handed to the connection;
    /// `gather` then waits for the scheduler to record them).
    pub(crate) submit_secs: f64,
}

/// `map(inc, range(n))` + `gather`.
pub(crate) async fn noop_throughput(client: &Client, n: i64) -> Result<NoopRun> {
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
pub(crate) fn noop_row(
    id: &'static str,
    setting: &str,
    n: i64,
    run: NoopRun,
    ceiling: Option<f64>,
) -> Row {
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
pub(crate) async fn noop_only(n: i64, key_file: Option<String>) -> Result<()> {
    let env = key_file
        .map(|k| vec![("WARREN_KEY_FILE".to_string(), k)])
        .unwrap_or_default();
    let cluster = Cluster::start_with(ClusterOptions {
        workers: WORKERS,
        concurrency: DEFAULT_CONCURRENCY,
        env,
        ..Default::default()
    })
    .await;
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
pub(crate) async fn noop_on_quorum_queues(n: i64) -> Result<(NoopRun, String)> {
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
pub(crate) fn printed<'a>(stdout: &'a str, name: &str) -> Result<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .with_context(|| format!("warren-bench --noop-only printed no {name}"))
}

/// The prefetch of each worker consumer of the cluster's default work queue, as
/// RabbitMQ reports it (`rabbitmqctl list_consumers`), e.g. "2, 2".
pub(crate) async fn worker_prefetch(settings: &Settings) -> String {
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

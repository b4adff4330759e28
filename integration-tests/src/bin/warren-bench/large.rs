//! Row 6: a large map: scheduler memory and Redis bytes per task.

use super::*;

/// What the large map measured.
pub(crate) struct LargeMap {
    pub(crate) tasks: usize,
    pub(crate) wall: Duration,
    /// Scheduler VmRSS (KiB) before submitting, after 10% was gathered, at the end.
    pub(crate) rss_start: u64,
    pub(crate) rss_tenth: u64,
    pub(crate) rss_end: u64,
    /// Scheduler VmHWM (KiB) at the end: its peak over its whole life.
    pub(crate) hwm: u64,
    /// (used_memory after − before) / tasks.
    pub(crate) redis_bytes_per_task: f64,
    /// Mean `MEMORY USAGE` of sampled task records.
    pub(crate) sampled_record_bytes: f64,
    /// This process's VmHWM (KiB): the client's memory.
    pub(crate) client_hwm: u64,
}

/// Submits `tasks` no-op tasks in chunks, gathers them in chunks, and reads the
/// scheduler's memory and Redis's along the way.
pub(crate) async fn large_map(cluster: &Cluster, tasks: usize) -> Result<LargeMap> {
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
pub(crate) async fn submit_in_chunks(client: &Client, tasks: usize) -> Result<Vec<String>> {
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
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// Redis's `used_memory` (bytes), from `INFO memory`.
pub(crate) async fn used_memory(redis: &mut ConnectionManager) -> Result<u64> {
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
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Result<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .with_context(|| format!("no {name} in INFO"))
}

/// The mean `MEMORY USAGE` of `MEMORY_SAMPLES` evenly spaced task records: a
/// cross-check of the `used_memory` difference, which other users of the same
/// Redis can disturb.
pub(crate) async fn sampled_record_bytes(
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
pub(crate) fn large_map_rows(m: &LargeMap) -> Vec<Row> {
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

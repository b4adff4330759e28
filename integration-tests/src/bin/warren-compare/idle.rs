//! What an idle stack costs: the scheduler's and workers' CPU, and the
//! commands per second Redis serves, over a quiet window.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use redis::aio::ConnectionManager;
use warren_core::store::Store;
use warren_integration_tests::Cluster;

/// An idle window's cost.
#[derive(Debug, Clone, Copy)]
pub struct IdleFigures {
    /// Cores used by the scheduler and the workers together.
    pub cores: f64,
    /// Commands Redis served per second (all clients; nothing else runs).
    pub redis_per_s: f64,
    /// SCAN calls per second among them.
    pub scans_per_s: f64,
}

/// Watches `cluster` doing nothing for `secs` seconds (after 2 s to settle).
pub async fn measure(cluster: &Cluster, secs: u64) -> Result<IdleFigures> {
    let mut redis = Store::connect(&cluster.settings).await?.connection();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = cluster.pids();
    let (ticks0, redis0, t0) = (ticks(&pids), counters(&mut redis).await?, Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (ticks1, redis1) = (ticks(&pids), counters(&mut redis).await?);
    let wall = t0.elapsed().as_secs_f64();
    Ok(IdleFigures {
        cores: (ticks1 - ticks0) / 100.0 / wall,
        // Our own INFO calls are two of them.
        redis_per_s: (redis1.0 - redis0.0 - 2.0).max(0.0) / wall,
        scans_per_s: (redis1.1 - redis0.1) / wall,
    })
}

/// utime + stime of `pids`, in clock ticks (100 a second on Linux).
fn ticks(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14 and 15 of stat; `rest` starts at field 3.
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .sum()
}

/// Redis's total commands and SCAN calls so far.
async fn counters(redis: &mut ConnectionManager) -> Result<(f64, f64)> {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(redis)
        .await
        .context("INFO")?;
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok((
        field("total_commands_processed:"),
        field("cmdstat_scan:calls="),
    ))
}

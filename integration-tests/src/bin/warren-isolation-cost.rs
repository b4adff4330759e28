//! `warren-isolation-cost`: what `--isolation process` costs per task,
//! against in-thread runs, in the same run (issue 17). It measures and
//! changes nothing.
//!
//! ```sh
//! cargo build --release --bins && target/release/warren-isolation-cost
//! ```
//!
//! For each isolation it starts a fresh cluster (one scheduler, one worker
//! with 2 slots) and times 200 sequential `submit(inc).result()` round trips
//! and a 1,000-task no-op `map` + `gather`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use warren_client::SubmitOptions;
use warren_integration_tests::{Cluster, ClusterOptions};

const ROUND_TRIPS: usize = 200;
const MAP: i64 = 1_000;

/// Median round trip and map throughput with `isolation`.
async fn measure(isolation: &str) -> Result<(Duration, f64)> {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        test_worker: true,
        ..Default::default()
    })
    .await;
    c.start_worker_with(2, &["--isolation", isolation]);
    c.wait_for_workers(1).await;
    let client = c.client().await;
    let opts = SubmitOptions {
        pure: false,
        ..Default::default()
    };
    let mut trips = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS as i64 {
        let t = Instant::now();
        let v = client
            .submit_with("inc", (i,), &opts)
            .await?
            .result()
            .await?;
        ensure!(v == json!(i + 1), "inc({i}) gave {v}");
        trips.push(t.elapsed());
    }
    trips.sort();
    let started = Instant::now();
    let args: Vec<Vec<Value>> = (0..MAP).map(|i| vec![json!(i)]).collect();
    let futures = client.map_with("inc", args, &opts).await?;
    let values = client.gather(&futures).await.context("gather")?;
    ensure!(values.len() == MAP as usize, "gathered {}", values.len());
    let rate = MAP as f64 / started.elapsed().as_secs_f64();
    c.shutdown().await;
    Ok((trips[trips.len() / 2], rate))
}

#[tokio::main]
async fn main() -> Result<()> {
    let (thread_trip, thread_rate) = measure("thread").await?;
    let (process_trip, process_rate) = measure("process").await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| isolation | submit→result p50 | no-op map + gather |");
    println!("|---|---|---|");
    println!(
        "| thread | {:.2} ms | {thread_rate:.0} tasks/s |",
        ms(thread_trip)
    );
    println!(
        "| process | {:.2} ms | {process_rate:.0} tasks/s |",
        ms(process_trip)
    );
    println!(
        "process costs {:.2} ms more per round trip ({:.1}x) and runs {:.2}x the map's rate",
        ms(process_trip) - ms(thread_trip),
        ms(process_trip) / ms(thread_trip),
        process_rate / thread_rate
    );
    Ok(())
}

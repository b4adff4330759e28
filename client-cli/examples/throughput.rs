//! No-op throughput and round-trip latency through the full path
//! (client → RabbitMQ → scheduler/Redis → workers → back), printed as numbers.
//!
//! `cargo run --release -p warren-client --example throughput -- [TASKS]`
//! against a running scheduler and workers (scripts/notebook.sh shows how).

use std::time::{Duration, Instant};

use warren_client::{Client, SubmitOptions};
use warren_core::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let client = Client::connect(Settings::load(None, &[])?).await?;
    let opts = SubmitOptions {
        pure: false,
        ..Default::default()
    };

    let t = Instant::now();
    let futures = client
        .map_with("inc", (0..n).map(|i| vec![i.into()]).collect(), &opts)
        .await?;
    let submitted = t.elapsed();
    let values = client.gather(&futures).await?;
    let total = t.elapsed();
    anyhow::ensure!(values.len() == n as usize && values[0] == 1 && values[n as usize - 1] == n);
    println!(
        "map(inc, range({n})) + gather: {:.0} tasks/s ({total:.2?} total, submit {submitted:.2?})",
        n as f64 / total.as_secs_f64()
    );

    let rounds = 200;
    let mut lat: Vec<Duration> = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        let f = client.submit_with("inc", (i,), &opts).await?;
        f.result().await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "submit(inc).result() round trip over {rounds}: p50 {:.2?}, p99 {:.2?}",
        lat[rounds / 2],
        lat[rounds * 99 / 100]
    );

    let links = 1_000;
    let t = Instant::now();
    let mut f = client.submit_with("inc", (0,), &opts).await?;
    for _ in 1..links {
        f = client.submit_with("inc", (&f,), &opts).await?;
    }
    let submitted = t.elapsed();
    let end = f.result().await?;
    let total = t.elapsed();
    anyhow::ensure!(end == links, "the chain ended with {end}");
    println!(
        "chain of {links} dependent inc: {:.0} tasks/s ({total:.2?} total, submit {submitted:.2?})",
        f64::from(links) / total.as_secs_f64()
    );
    Ok(())
}

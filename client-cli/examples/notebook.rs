//! The dask futures notebook, cell by cell, in Rust.
//!
//! Run it against a running scheduler and workers (scripts/notebook.sh starts
//! everything): `cargo run --release -p warren-client --example notebook`.

use std::time::Instant;

use warren_client::{Client, Error};
use warren_core::Settings;

fn cell(title: &str) {
    println!("\n## {title}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let all = Instant::now();

    cell("client = Client(...)");
    let settings = Settings::load(None, &[])?;
    let client = Client::connect(settings).await?;
    let workers = client.worker_count().await?;
    println!(
        "connected to namespace {:?}: {workers} workers",
        client.settings().namespace
    );

    cell("N = client.submit(count_primes_less_than, 5000000); N");
    let n = client
        .submit("count_primes_less_than", (5_000_000,))
        .await?;
    println!("<Future: {}, key: {}>", n.status().await?, n.key());

    cell("N.result()");
    let t = Instant::now();
    println!("{}    ({:.2?})", n.result().await?, t.elapsed());
    println!("<Future: {}, key: {}>", n.status().await?, n.key());

    cell("M = client.submit(count_primes_less_than, 5000001); print(M.result())");
    let m = client
        .submit("count_primes_less_than", (5_000_001,))
        .await?;
    println!("{}", m.result().await?);

    cell("futures = client.map(count_primes_less_than, range(3000001, 3000010)); futures");
    let futures = client
        .map("count_primes_less_than", 3_000_001..3_000_010)
        .await?;
    for f in &futures {
        println!("<Future: {}, key: {}>", f.status().await?, f.key());
    }
    client.gather(&futures).await?;
    cell("futures (later)");
    for f in &futures {
        println!("<Future: {}, key: {}>", f.status().await?, f.key());
    }

    cell("%%time distributed_test()");
    let t = Instant::now();
    let futures = client
        .map("count_primes_less_than", (0..9).map(|i| 1_500_000 + i))
        .await?;
    println!("{futures:?}");
    for r in client.gather(&futures).await? {
        println!("{r}");
    }
    println!("Wall time: {:.2?}", t.elapsed());

    cell("Msum = client.submit(add_them, M1, M2); Msum.result()");
    let m1 = client
        .submit("count_primes_less_than", (4_000_000,))
        .await?;
    let m2 = client
        .submit("count_primes_less_than", (4_500_000,))
        .await?;
    let msum = client.submit("add_them", (&m1, &m2)).await?;
    println!("<Future: {}, key: {}>", msum.status().await?, msum.key());
    println!("{}", msum.result().await?);

    cell("The DAG: M3..M8, Msum1..Msum6; K = Msum5.result(); print(K)");
    let mut ms = Vec::new();
    for arg in [
        4_000_003, 4_500_004, 4_000_005, 4_500_006, 4_000_007, 4_500_008,
    ] {
        ms.push(client.submit("count_primes_less_than", (arg,)).await?);
    }
    let msum1 = client.submit("add_them", (&ms[0], &ms[1])).await?;
    let msum2 = client.submit("add_them", (&ms[2], &ms[3])).await?;
    let msum3 = client.submit("add_them", (&ms[4], &ms[5])).await?;
    let msum4 = client.submit("add_them", (&msum1, &msum2)).await?;
    let msum5 = client.submit("add_them", (&msum4, &msum3)).await?;
    let _msum6 = client.submit("add_them", (&ms[0], &msum3)).await?;
    let k = msum5.result().await?;
    println!("{k}");

    cell("N = client.submit(goes_wrong); N");
    let n = client.submit("goes_wrong", ()).await?;
    let _ = n.outcome().await?;
    println!("<Future: {}, key: {}>", n.status().await?, n.key());

    cell("N.result()");
    match n.result().await {
        Err(Error::Task { failure, .. }) => println!("{}", failure.traceback),
        other => anyhow::bail!("goes_wrong should fail, got {other:?}"),
    }

    cell("client.restart()");
    let report = client.restart().await?;
    println!(
        "every future cancelled; {}/{} workers ready (epoch {})",
        report.workers_ready.len(),
        report.workers_expected,
        report.epoch
    );
    println!("<Future: {}, key: {}>", msum5.status().await?, msum5.key());

    println!("\nnotebook finished in {:.2?}", all.elapsed());
    Ok(())
}

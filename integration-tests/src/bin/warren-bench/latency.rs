//! Rows 3 and 4: submit → result round trips, and a chain of dependent tasks.

use super::*;

/// `ROUND_TRIPS` sequential `submit(inc).result()`, each timed; sorted.
pub(crate) async fn round_trips(client: &Client) -> Result<Vec<Duration>> {
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
pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Row 3.
pub(crate) fn latency_row(sorted: &[Duration]) -> Row {
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
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `CHAIN_LENGTH` tasks, each `inc` of the previous future: time from the
/// first submit to the last result.
pub(crate) async fn chain(client: &Client) -> Result<(Duration, Duration)> {
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
pub(crate) fn chain_row((wall, submitted): (Duration, Duration)) -> Row {
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

//! warren's side of the comparison: the same four workloads as the peers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use warren_client::{Client, SubmitOptions};
use warren_integration_tests::{Cluster, NO_KEY, bin};

use crate::Args;

/// What one pass over the workloads measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// No-op map + gather through the Rust client.
    pub noop_per_s: f64,
    /// The same through `warren map ... | warren gather -`.
    pub cli_per_s: f64,
    /// `submit(inc).result()` round trips.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// A chain of dependent `inc`.
    pub chain_per_s: f64,
}

fn impure() -> SubmitOptions {
    SubmitOptions {
        pure: false,
        ..Default::default()
    }
}

/// How many times the library's and the CLI's no-op runs alternate; each
/// rate is the median. One pass of each, in one stack a minute apart, put
/// the CLI at anything from 0.87 to 0.99 of the library: a single pair says
/// more about the moment than about the CLI.
const NOOP_PASSES: usize = 3;

/// Runs every workload on `cluster`: the no-op pair [`NOOP_PASSES`] times,
/// the rest once.
pub async fn all(cluster: &Cluster, args: &Args) -> Result<Figures> {
    let client = cluster.client().await;
    noop(&client, 1_000).await.context("warm-up")?;
    let (mut library, mut cli) = (Vec::new(), Vec::new());
    for _ in 0..NOOP_PASSES {
        library.push(noop(&client, args.tasks).await.context("no-op map")?);
        cli.push(cli_noop(cluster, args.tasks).context("CLI no-op map")?);
    }
    let (noop_per_s, cli_per_s) = (median(library), median(cli));
    let (p50_ms, p99_ms) = round_trips(&client, args.rounds).await?;
    let chain_per_s = chain(&client, args.links).await?;
    Ok(Figures {
        noop_per_s,
        cli_per_s,
        p50_ms,
        p99_ms,
        chain_per_s,
    })
}

/// The middle value (the upper middle of an even number); NaN, which the
/// report prints as such, for none. The one median of every figure here.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn noop(client: &Client, n: usize) -> Result<f64> {
    let t = Instant::now();
    let futures = client
        .map_with(
            "inc",
            (0..n as i64).map(|i| vec![Value::from(i)]).collect(),
            &impure(),
        )
        .await?;
    let values = client.gather(&futures).await?;
    let wall = t.elapsed();
    ensure!(
        values.last() == Some(&Value::from(n as i64)),
        "wrong values"
    );
    Ok(n as f64 / wall.as_secs_f64())
}

/// `warren map --no-pure inc 0 .. n-1 | warren gather -`, timed as a whole.
fn cli_noop(cluster: &Cluster, n: usize) -> Result<f64> {
    let warren = bin("warren");
    let args: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let t = Instant::now();
    let mut map = std::process::Command::new(&warren)
        .args(["map", "--no-pure", "inc"])
        .args(&args)
        // As every process of the cluster: a key in the machine's default
        // place (a Python LocalCluster makes one) must not make this CLI
        // sign, and refuse the cluster's unsigned replies.
        .env("WARREN_KEY_FILE", NO_KEY)
        .env("WARREN_NAMESPACE", &cluster.settings.namespace)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("warren map")?;
    let keys = map.stdout.take().context("map's stdout")?;
    let gather = std::process::Command::new(&warren)
        .args(["gather", "-"])
        .env("WARREN_KEY_FILE", NO_KEY)
        .env("WARREN_NAMESPACE", &cluster.settings.namespace)
        .stdin(keys)
        .output()
        .context("warren gather")?;
    let wall = t.elapsed();
    ensure!(map.wait()?.success(), "warren map failed");
    ensure!(
        gather.status.success(),
        "warren gather failed: {}",
        String::from_utf8_lossy(&gather.stderr)
    );
    let lines = String::from_utf8_lossy(&gather.stdout).lines().count();
    ensure!(lines == n, "gather printed {lines} values for {n} tasks");
    Ok(n as f64 / wall.as_secs_f64())
}

async fn round_trips(client: &Client, rounds: usize) -> Result<(f64, f64)> {
    let mut lat: Vec<Duration> = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        client
            .submit_with("inc", (i,), &impure())
            .await?
            .result()
            .await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Ok((ms(at(0.5)), ms(at(0.99))))
}

async fn chain(client: &Client, links: usize) -> Result<f64> {
    let t = Instant::now();
    let mut f = client.submit_with("inc", (0,), &impure()).await?;
    for _ in 1..links {
        f = client.submit_with("inc", (&f,), &impure()).await?;
    }
    let end = f.result().await?;
    ensure!(end == links as i64, "the chain ended with {end}");
    Ok(links as f64 / t.elapsed().as_secs_f64())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_and_none_is_nan() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(Vec::new()).is_nan());
    }
}

//! dask and Celery on the same workloads, each in a Python child process
//! (`integration-tests/peers/*.py`) that prints one JSON object.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::Args;

/// A peer's figures, or why there are none.
pub type Outcome = Result<PeerFigures, String>;

/// What a peer script measured.
#[derive(Debug, Clone)]
pub struct PeerFigures {
    pub noop_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub chain_per_s: f64,
}

/// Runs `script` with `python`, bounded by 20 minutes.
pub async fn run(python: &Path, script: &Path, args: &Args) -> Outcome {
    if !python.exists() {
        return Err(format!(
            "no {} (bash scripts/bench-peers.sh makes it)",
            python.display()
        ));
    }
    let child = tokio::process::Command::new(python)
        .arg(script)
        .args([
            args.tasks.to_string(),
            args.rounds.to_string(),
            args.links.to_string(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(1200), child)
        .await
        .map_err(|_| format!("{} took over 20 minutes", script.display()))?
        .map_err(|e| format!("running {}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("{} failed: {last}", script.display()));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(stdout: &str) -> Outcome {
    let line = stdout.lines().last().ok_or("no output")?;
    let v: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let get = |k: &str| v[k].as_f64().ok_or(format!("no {k} in {line}"));
    Ok(PeerFigures {
        noop_per_s: get("noop_tasks_per_s")?,
        p50_ms: get("p50_ms")?,
        p99_ms: get("p99_ms")?,
        chain_per_s: get("chain_tasks_per_s")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_last_json_line() {
        let f = super::parse("noise\n{\"noop_tasks_per_s\": 392.0, \"p50_ms\": 19.7, \"p99_ms\": 30.1, \"chain_tasks_per_s\": 158}\n").unwrap();
        assert_eq!((f.noop_per_s, f.chain_per_s), (392.0, 158.0));
        assert!(super::parse("").is_err());
    }
}

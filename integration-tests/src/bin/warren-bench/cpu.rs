//! Row 7: a CPU-bound map against its ideal wall time.

use super::*;

/// What the CPU-bound map measured, per run.
pub(crate) struct CpuMap {
    pub(crate) runs: Vec<CpuRun>,
    pub(crate) cores: usize,
    /// The first input (`count_primes_less_than(base + i)`).
    pub(crate) base: i64,
}

/// One run: the map's wall time between two serial runs of the same work.
pub(crate) struct CpuRun {
    pub(crate) wall: Duration,
    /// Sum of the tasks' CPU times run serially here, before and after the
    /// map: the machine's speed drifts (shared hosts), and their mean is the
    /// reference nearest in time to the map.
    pub(crate) serial_before: Duration,
    pub(crate) serial_after: Duration,
}

impl CpuRun {
    pub(crate) fn ideal(&self, cores: usize) -> f64 {
        (self.serial_before + self.serial_after).as_secs_f64() / 2.0 / cores as f64
    }

    pub(crate) fn overhead(&self, cores: usize) -> f64 {
        self.wall.as_secs_f64() / self.ideal(cores) - 1.0
    }

    /// How much the machine's speed moved during the run.
    pub(crate) fn drift(&self) -> f64 {
        self.serial_after.as_secs_f64() / self.serial_before.as_secs_f64() - 1.0
    }
}

/// `count_primes_less_than` over `CPU_TASKS` inputs from `base`, `times`
/// times: serially here (CPU time per task), as a map on the cluster (wall
/// time), and serially again.
pub(crate) async fn cpu_map(client: &Client, base: i64, times: usize) -> Result<CpuMap> {
    let inputs: Vec<i64> = (0..CPU_TASKS as i64).map(|i| base + i).collect();
    let serial = |inputs: Vec<i64>| async move {
        tokio::task::spawn_blocking(move || serial_cpu(&inputs))
            .await
            .context("the serial run panicked")?
    };
    let mut runs = Vec::with_capacity(times);
    for _ in 0..times {
        let (serial_before, expected) = serial(inputs.clone()).await?;
        let t = Instant::now();
        let futures = client
            .map_with(
                "count_primes_less_than",
                inputs.iter().map(|&m| vec![Value::from(m)]).collect(),
                &impure(),
            )
            .await
            .context("submitting count_primes_less_than")?;
        let values = client
            .gather(&futures)
            .await
            .context("gathering count_primes_less_than")?;
        let wall = t.elapsed();
        let got: Vec<Option<i64>> = values.iter().map(Value::as_i64).collect();
        let want: Vec<Option<i64>> = expected.iter().copied().map(Some).collect();
        ensure!(got == want, "workers counted {got:?}, serially {want:?}");
        let (serial_after, _) = serial(inputs.clone()).await?;
        runs.push(CpuRun {
            wall,
            serial_before,
            serial_after,
        });
    }
    Ok(CpuMap {
        runs,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        base,
    })
}

/// Runs each input serially on this thread; returns the summed CPU time and the results.
pub(crate) fn serial_cpu(inputs: &[i64]) -> Result<(Duration, Vec<i64>)> {
    let mut total = Duration::ZERO;
    let mut results = Vec::with_capacity(inputs.len());
    for &m in inputs {
        let before = thread_cpu_time()?;
        results.push(warren_worker::stock::count_primes_less_than(m));
        total += thread_cpu_time()?.saturating_sub(before);
    }
    Ok((total, results))
}

/// This thread's CPU time so far (`/proc/thread-self/schedstat`, nanoseconds).
pub(crate) fn thread_cpu_time() -> Result<Duration> {
    let path = "/proc/thread-self/schedstat";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("parsing {path}: {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}

/// Row 7: the median run's overhead over its ideal, with every run shown.
pub(crate) fn cpu_row(m: &CpuMap) -> Row {
    let mut order: Vec<&CpuRun> = m.runs.iter().collect();
    order.sort_by(|a, b| a.overhead(m.cores).total_cmp(&b.overhead(m.cores)));
    let Some(median) = order.get(order.len() / 2) else {
        return Row::judged(
            "7",
            "CPU-bound map".into(),
            "no run".into(),
            CPU_TARGET,
            false,
        );
    };
    let each: Vec<String> = m
        .runs
        .iter()
        .map(|r| {
            format!(
                "{:+.1}% (machine drift {:+.1}%)",
                100.0 * r.overhead(m.cores),
                100.0 * r.drift()
            )
        })
        .collect();
    Row::judged(
        "7",
        format!(
            "CPU-bound map: {CPU_TASKS} × count_primes_less_than({}..), ideal = serial CPU (mean of the serial runs just before and after) / {} cores, median of {} runs",
            thousands(m.base as u64),
            m.cores,
            m.runs.len()
        ),
        format!(
            "{:.2} s wall vs {:.2} s ideal ({:+.1}%); runs: {}",
            median.wall.as_secs_f64(),
            median.ideal(m.cores),
            100.0 * median.overhead(m.cores),
            each.join(", ")
        ),
        CPU_TARGET,
        median.overhead(m.cores) <= 0.05,
    )
}

/// Row 7's target (issue 14).
pub(crate) const CPU_TARGET: &str = "within 5% of ideal (median of 3)";

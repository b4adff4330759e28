//! Prometheus metrics: counters, gauges and histograms, served at `/metrics`.
//!
//! A handful of atomics and a text renderer are all warren needs; the
//! exposition format is simple enough that a metrics framework would add more
//! surface than it saves. Each process owns one [`Metrics`] and, when given an
//! address (`--metrics-addr` / `WARREN_METRICS_ADDR`), serves it over HTTP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{info, warn};

/// Upper bounds (seconds) of the histogram buckets: 1 ms to 10 min.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 600.0,
];

/// A histogram of durations in seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds, to stay an integer.
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((secs.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
}

/// One process's metrics, by name and label set.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<(String, String), Arc<AtomicI64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Histogram>>>,
    help: Mutex<BTreeMap<String, &'static str>>,
}

impl Metrics {
    /// An empty set, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counter `name{labels}` (labels as Prometheus text, e.g. `state="error"`).
    pub fn counter(&self, name: &str, labels: &str, help: &'static str) -> Arc<AtomicU64> {
        self.help
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), help);
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((name.into(), labels.into()))
            .or_default()
            .clone()
    }

    /// The gauge `name{labels}`.
    pub fn gauge(&self, name: &str, labels: &str, help: &'static str) -> Arc<AtomicI64> {
        self.help
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), help);
        self.gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((name.into(), labels.into()))
            .or_default()
            .clone()
    }

    /// The histogram `name` (seconds).
    pub fn histogram(&self, name: &str, help: &'static str) -> Arc<Histogram> {
        self.help
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), help);
        self.histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.into())
            .or_default()
            .clone()
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let help = self.help.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str| {
            if let Some(h) = help.get(name) {
                let _ = writeln!(out, "# HELP {name} {h}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let series = |name: &str, labels: &str| {
            if labels.is_empty() {
                name.to_string()
            } else {
                format!("{name}{{{labels}}}")
            }
        };
        let mut last = String::new();
        for ((name, labels), v) in self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if *name != last {
                header(&mut out, name, "counter");
                last = name.clone();
            }
            let _ = writeln!(
                out,
                "{} {}",
                series(name, labels),
                v.load(Ordering::Relaxed)
            );
        }
        for ((name, labels), v) in self.gauges.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if *name != last {
                header(&mut out, name, "gauge");
                last = name.clone();
            }
            let _ = writeln!(
                out,
                "{} {}",
                series(name, labels),
                v.load(Ordering::Relaxed)
            );
        }
        for (name, h) in self
            .histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            header(&mut out, name, "histogram");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{le=\"{b}\"}} {}",
                    h.counts[i].load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
            let _ = writeln!(
                out,
                "{name}_sum {}",
                h.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(out, "{name}_count {count}");
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` until the process ends. An empty address
/// serves nothing.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> std::io::Result<()> {
    if addr.is_empty() {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = match sock.read(&mut buf).await {
                    Ok(n) => n,
                    Err(_) => return,
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if request.starts_with("GET /metrics") {
                    ("200 OK", metrics.render())
                } else {
                    ("404 Not Found", "try GET /metrics\n".to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(e) = sock.write_all(response.as_bytes()).await {
                    warn!(error = %e, "writing a metrics response");
                }
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let m = Metrics::new();
        m.counter("warren_tasks_total", "outcome=\"finished\"", "Tasks run.")
            .fetch_add(3, Ordering::Relaxed);
        m.gauge("warren_running", "", "Tasks running.")
            .store(2, Ordering::Relaxed);
        let h = m.histogram("warren_task_duration_seconds", "Task run time.");
        h.observe(0.003);
        h.observe(2.0);
        let text = m.render();
        assert!(text.contains("# TYPE warren_tasks_total counter"), "{text}");
        assert!(
            text.contains("warren_tasks_total{outcome=\"finished\"} 3"),
            "{text}"
        );
        assert!(text.contains("warren_running 2"), "{text}");
        assert!(
            text.contains("warren_task_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("warren_task_duration_seconds_bucket{le=\"5\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("warren_task_duration_seconds_count 2"),
            "{text}"
        );
    }
}

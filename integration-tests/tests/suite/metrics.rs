//! Prometheus metrics, scraped over HTTP from a real scheduler and worker.

use std::io::{Read, Write};
use std::time::Duration;

use warren_integration_tests::{Cluster, ClusterOptions, ok_stdout};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scrape(port: u16) -> String {
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing serves metrics on port {port}");
}

/// The value of the series `line_start` (name with labels) in a scrape.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_and_worker_serve_prometheus_metrics() {
    let (sched_port, worker_port) = (free_port(), free_port());
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        scheduler_args: vec!["--metrics-addr".into(), format!("127.0.0.1:{sched_port}")],
        ..Default::default()
    })
    .await;
    c.start_worker_with(2, &["--metrics-addr", &format!("127.0.0.1:{worker_port}")]);
    c.wait_for_workers(1).await;

    let keys = ok_stdout(&c.warren(&["map", "--no-pure", "inc", "1", "2", "3"]));
    ok_stdout(&c.warren_with_stdin(&["gather", "-"], &keys));
    let bad = ok_stdout(&c.warren(&["submit", "goes_wrong"]));
    let _ = c.warren(&["result", bad.trim()]);
    tokio::time::sleep(Duration::from_millis(2500)).await; // state gauges refresh every 2 s

    let w = scrape(worker_port);
    assert!(w.starts_with("HTTP/1.1 200 OK"), "{w}");
    assert_eq!(
        value(&w, "warren_worker_tasks_total{outcome=\"finished\"}"),
        3.0
    );
    assert_eq!(
        value(&w, "warren_worker_tasks_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(value(&w, "warren_worker_task_duration_seconds_count"), 4.0);
    assert_eq!(value(&w, "warren_worker_queue_latency_seconds_count"), 4.0);
    assert_eq!(value(&w, "warren_worker_running_tasks"), 0.0);
    assert!(
        w.contains("# TYPE warren_worker_task_duration_seconds histogram"),
        "{w}"
    );

    let s = scrape(sched_port);
    assert_eq!(value(&s, "warren_scheduler_dispatched_total"), 4.0);
    assert_eq!(
        value(&s, "warren_scheduler_reports_total{kind=\"outcome\"}"),
        4.0
    );
    assert_eq!(value(&s, "warren_scheduler_tasks_submitted_total"), 4.0);
    assert_eq!(value(&s, "warren_tasks{state=\"finished\"}"), 3.0);
    assert_eq!(value(&s, "warren_tasks{state=\"error\"}"), 1.0);
    assert_eq!(value(&s, "warren_tasks{state=\"pending\"}"), 0.0);
    c.shutdown().await;
}

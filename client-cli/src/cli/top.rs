//! `warren top`: the task-level view the broker UI cannot give.
//!
//! RabbitMQ's management UI shows messages and consumers; it cannot say which
//! tasks run where, how fast futures finish, or what failed. `top` redraws,
//! every second, the futures per state with their finishing rate, the queues,
//! every live worker with the tasks it runs, and the latest errors.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use warren_client::{Client, Error};

/// One screen of `top`, as text.
pub async fn frame(client: &Client, rate: Option<f64>) -> Result<String, Error> {
    let info = client.info().await?;
    let workers = client.workers().await?;
    let errors = client.recent_errors(5).await?;
    let get = |k: &str| info.stats.get(k).copied().unwrap_or(0);
    let ended = get("finished") + get("error") + get("cancelled");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "warren top — namespace {}   (Ctrl-C to quit)",
        client.settings().namespace
    );
    let _ = writeln!(
        s,
        "futures  {} pending  {} finished  {} error  {} cancelled  {} retried   rate {}",
        get("submitted").saturating_sub(ended),
        get("finished"),
        get("error"),
        get("cancelled"),
        get("retried"),
        rate.map_or("-".to_string(), |r| format!("{r:.1}/s"))
    );
    let _ = writeln!(s, "\n{:<40} {:>9} {:>9}", "QUEUE", "READY", "CONSUMERS");
    for (name, messages, consumers) in &info.queues {
        let _ = writeln!(s, "{name:<40} {messages:>9} {consumers:>9}");
    }
    let _ = writeln!(
        s,
        "\n{:<28} {:>5} {:<14} {:>9}  RUNNING",
        "WORKER", "SLOTS", "QUEUES", "COMPLETED"
    );
    for w in &workers {
        let running = if w.running.is_empty() {
            "-".to_string()
        } else {
            w.running.join(" ")
        };
        let _ = writeln!(
            s,
            "{:<28} {:>2}/{:<2} {:<14} {:>9}  {running}",
            w.worker,
            w.running.len(),
            w.concurrency,
            w.queues.join(","),
            w.completed
        );
    }
    if workers.is_empty() {
        let _ = writeln!(s, "(no live workers)");
    }
    let _ = writeln!(s, "\nRECENT ERRORS");
    for e in &errors {
        let _ = writeln!(
            s,
            "{}  {}: {}",
            e["key"].as_str().unwrap_or("?"),
            e["type"].as_str().unwrap_or("?"),
            e["message"].as_str().unwrap_or("")
        );
    }
    if errors.is_empty() {
        let _ = writeln!(s, "(none)");
    }
    Ok(s)
}

/// Redraws every `every` until interrupted (or once).
pub async fn run(client: &Client, every: Duration, once: bool) -> Result<(), Error> {
    if once {
        print!("{}", frame(client, None).await?);
        return Ok(());
    }
    let mut last: Option<(Instant, u64)> = None;
    loop {
        let stats = client.info().await?.stats;
        let done = ["finished", "error", "cancelled"]
            .iter()
            .map(|k| stats.get(*k).copied().unwrap_or(0))
            .sum::<u64>();
        let now = Instant::now();
        let rate =
            last.map(|(t, d)| done.saturating_sub(d) as f64 / now.duration_since(t).as_secs_f64());
        last = Some((now, done));
        let screen = frame(client, rate).await?;
        // Clear the screen and draw from the top left.
        print!("\x1b[2J\x1b[H{screen}");
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

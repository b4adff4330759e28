//! `warren top`: the task-level view the broker UI cannot give.
//!
//! RabbitMQ's management UI shows messages and consumers; it cannot say which
//! tasks run where, how fast futures finish, or what failed. `top` redraws,
//! every second, the futures per state with their finishing rate, the queues,
//! every live worker with the tasks it runs, and the latest errors.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use warren_client::{Client, Error};

use super::output::queue_table;

/// One screen of `top`, as text.
pub async fn frame(client: &Client, rate: Option<f64>) -> Result<String, Error> {
    let info = client.info().await?;
    let workers = client.workers().await?;
    let errors = client.recent_errors(5).await?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "warren top — namespace {}   (Ctrl-C to quit)",
        client.settings().namespace
    );
    let _ = writeln!(
        s,
        "futures  {} pending  {} finished  {} error  {} cancelled  {} retried   rate {}",
        info.stats.pending(),
        info.stats.count("finished"),
        info.stats.count("error"),
        info.stats.count("cancelled"),
        info.stats.count("retried"),
        rate.map_or("-".to_string(), |r| format!("{r:.1}/s"))
    );
    if let Some(line) = super::output::later_line(&info) {
        let _ = writeln!(s, "{line}");
    }
    let _ = write!(s, "\n{}", queue_table(&info));
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
    let width = terminal_width();
    for e in &errors {
        let line = format!("{}  {}: {}", e.key, e.kind, e.message);
        let _ = writeln!(s, "{}", fit(&line, width));
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
        let done = client.info().await?.stats.ended();
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

/// Columns of the terminal on stdout (`COLUMNS`, else the kernel's idea,
/// else 120 for a pipe).
fn terminal_width() -> usize {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return n;
    }
    // SAFETY: TIOCGWINSZ fills a winsize we own; on failure it is untouched.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        120
    }
}

/// `line` cut to `width` characters at a word boundary, with an ellipsis,
/// so the terminal never wraps it mid-word.
pub fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let room = width.saturating_sub(1);
    let cut: String = line.chars().take(room).collect();
    let at_word = match cut.rfind(' ') {
        // Keep at least half the room: one long word is cut where it must be.
        Some(i) if i >= room / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", at_word.trim_end())
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn long_lines_are_cut_at_a_word_with_an_ellipsis() {
        assert_eq!(fit("short line", 20), "short line");
        let cut = fit("key  ValueError: the quick brown fox jumps", 24);
        assert_eq!(cut, "key  ValueError: the…");
        assert!(cut.chars().count() <= 24);
        let word = fit(&"x".repeat(50), 10);
        assert_eq!(word.chars().count(), 10);
    }
}

//! What the CLI prints: plain text for people and pipes, or one JSON document
//! per command with `--json`.
//!
//! Plain text: values as JSON one per line, `KEY STATUS [DETAIL]` lines,
//! tables for `workers` and `info`; errors and tracebacks on stderr. JSON: an
//! object per command on stdout (errors included), so a script needs no
//! parsing of tables or stderr.

use serde_json::{Value, json};
use warren_client::{Forgotten, Info, RestartReport, State, Terminal, WorkerInfo};

/// Where output goes and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// One JSON document per command instead of text.
    pub json: bool,
}

/// A final state as JSON: `{key, status, value | error}`.
pub fn terminal_json(key: &str, t: &Terminal) -> Value {
    match t {
        Terminal::Finished { value } => json!({"key": key, "status": "finished", "value": value}),
        Terminal::Error { error } => json!({"key": key, "status": "error", "error": error}),
        Terminal::Cancelled => json!({"key": key, "status": "cancelled"}),
    }
}

impl Out {
    fn doc(&self, v: Value) {
        println!("{v}");
    }

    /// New futures' keys (`single`: one submit's key, `{"key": ...}` in JSON).
    pub fn keys(&self, keys: &[String], single: bool) {
        if self.json {
            match keys {
                [key] if single => self.doc(json!({"key": key})),
                _ => self.doc(json!({"keys": keys})),
            }
        } else {
            keys.iter().for_each(|k| println!("{k}"));
        }
    }

    /// Values in order, stopping at the first failure (whose details go to
    /// stderr); returns whether everything finished.
    pub fn outcomes(&self, keys: &[String], outcomes: &[Terminal]) -> bool {
        let all_ok = outcomes
            .iter()
            .all(|t| matches!(t, Terminal::Finished { .. }));
        if self.json {
            let results: Vec<Value> = keys
                .iter()
                .zip(outcomes)
                .map(|(k, t)| terminal_json(k, t))
                .collect();
            self.doc(json!({"results": results}));
            return all_ok;
        }
        for (key, t) in keys.iter().zip(outcomes) {
            match t {
                Terminal::Finished { value } => println!("{value}"),
                Terminal::Error { error } => {
                    eprintln!(
                        "error: task {key} failed: {}: {}",
                        error.kind, error.message
                    );
                    for (i, earlier) in error.previous.iter().enumerate() {
                        eprintln!(
                            "-- attempt {} failed: {}: {}",
                            i + 1,
                            earlier.kind,
                            earlier.message
                        );
                        if !earlier.traceback.is_empty() {
                            eprintln!("{}", earlier.traceback);
                        }
                    }
                    if !error.previous.is_empty() {
                        eprintln!("-- attempt {} (the last) failed:", error.previous.len() + 1);
                    }
                    if !error.traceback.is_empty() {
                        eprintln!("{}", error.traceback);
                    }
                    return false;
                }
                Terminal::Cancelled => {
                    eprintln!("error: future {key} was cancelled");
                    return false;
                }
            }
        }
        true
    }

    /// One future's final state (`result`): the value, or the error's details.
    pub fn result(&self, key: &str, t: &Terminal) -> bool {
        if self.json {
            self.doc(terminal_json(key, t));
            return matches!(t, Terminal::Finished { .. });
        }
        self.outcomes(&[key.to_string()], std::slice::from_ref(t))
    }

    /// One final state as it happens (`gather --as-completed`).
    pub fn completed(&self, key: &str, t: &Terminal) {
        if self.json {
            self.doc(terminal_json(key, t));
            return;
        }
        match t {
            Terminal::Finished { value } => println!("{key} {value}"),
            Terminal::Error { error } => eprintln!(
                "error: task {key} failed: {}: {}",
                error.kind, error.message
            ),
            Terminal::Cancelled => eprintln!("error: future {key} was cancelled"),
        }
    }

    /// `KEY STATUS [DETAIL [due TIME]]` per key; `KEY unknown` for a key not
    /// held. In JSON: `{key, status}`, plus `detail` (waiting, scheduled,
    /// queued, processing) while pending and `due` (RFC 3339) when scheduled.
    pub fn states(&self, keys: &[String], states: &[Option<State>], dues: &[Option<u64>]) {
        let due_of = |i: usize| {
            dues.get(i)
                .copied()
                .flatten()
                .map(warren_core::timing::format_at)
        };
        if self.json {
            let futures: Vec<Value> = keys
                .iter()
                .zip(states)
                .enumerate()
                .map(|(i, (k, s))| match s {
                    None => json!({"key": k, "status": "unknown"}),
                    Some(s) if s.is_terminal() => json!({"key": k, "status": s.status().as_str()}),
                    Some(s) => {
                        let mut doc =
                            json!({"key": k, "status": s.status().as_str(), "detail": s.as_str()});
                        if let Some(due) = due_of(i) {
                            doc["due"] = json!(due);
                        }
                        doc
                    }
                })
                .collect();
            self.doc(json!({"futures": futures}));
            return;
        }
        for (i, (k, s)) in keys.iter().zip(states).enumerate() {
            match (s, due_of(i)) {
                (None, _) => println!("{k} unknown"),
                (Some(s), _) if s.is_terminal() => println!("{k} {}", s.status()),
                (Some(s), Some(due)) => println!("{k} {} {s} due {due}", s.status()),
                (Some(s), None) => println!("{k} {} {s}", s.status()),
            }
        }
    }

    /// What `forget` did per key.
    pub fn forgotten(&self, keys: &[String], results: &[Forgotten]) {
        let word = |f: &Forgotten| match f {
            Forgotten::Forgotten => "forgotten",
            Forgotten::Pending => "pending",
            Forgotten::Unknown => "unknown",
        };
        if self.json {
            let rows: Vec<Value> = keys
                .iter()
                .zip(results)
                .map(|(k, f)| json!({"key": k, "result": word(f)}))
                .collect();
            self.doc(json!({"results": rows}));
            return;
        }
        for (k, f) in keys.iter().zip(results) {
            match f {
                Forgotten::Pending => println!("{k} pending (not forgotten: cancel it first)"),
                other => println!("{k} {}", word(other)),
            }
        }
    }

    /// The live workers.
    pub fn workers(&self, workers: &[WorkerInfo]) {
        if self.json {
            self.doc(json!({"workers": workers}));
            return;
        }
        println!(
            "{:<28} {:>11} {:<16} {:>7} {:>9} {:>9}  RUNNING",
            "WORKER", "CONCURRENCY", "QUEUES", "BUSY", "COMPLETED", "SEEN"
        );
        let now = warren_core::messages::now_ms();
        for w in workers {
            println!(
                "{:<28} {:>11} {:<16} {:>7} {:>9} {:>8.1}s  {}",
                w.worker,
                w.concurrency,
                w.queues.join(","),
                w.running.len(),
                w.completed,
                now.saturating_sub(w.at_ms) as f64 / 1000.0,
                if w.draining {
                    format!("(draining) {}", w.running.join(" "))
                } else {
                    w.running.join(" ")
                }
            );
        }
        eprintln!("{} live workers", workers.len());
    }

    /// Futures per state and queue depths.
    pub fn info(&self, namespace: &str, info: &Info) {
        if self.json {
            let queues: Vec<Value> = info
                .queues
                .iter()
                .map(|q| {
                    json!({"name": q.name, "messages": q.ready, "consumers": q.consumers,
                        "outbox": q.outbox})
                })
                .collect();
            self.doc(json!({"namespace": namespace, "futures": {
                "submitted": info.stats.count("submitted"), "pending": info.stats.pending(),
                "finished": info.stats.count("finished"), "error": info.stats.count("error"),
                "cancelled": info.stats.count("cancelled"), "retried": info.stats.count("retried"),
                "scheduled": info.scheduled,
                "next_due": info.next_due_ms.map(warren_core::timing::format_at)},
                "schedules": info.schedules, "paused_schedules": info.paused,
                "rate_limits": info.limits.rates.len(),
                "concurrency_limits": info.limits.concurrency.len(),
                "queues": queues}));
            return;
        }
        println!("namespace {namespace}");
        println!(
            "futures: {} submitted, {} pending, {} finished, {} error, {} cancelled, {} retried",
            info.stats.count("submitted"),
            info.stats.pending(),
            info.stats.count("finished"),
            info.stats.count("error"),
            info.stats.count("cancelled"),
            info.stats.count("retried")
        );
        if let Some(line) = later_line(info) {
            println!("{line}");
        }
        print!("{}", queue_table(info));
    }

    /// What `restart` did.
    pub fn restarted(&self, r: &RestartReport) {
        if self.json {
            self.doc(json!({"epoch": r.epoch, "workers_expected": r.workers_expected, "workers_ready": r.workers_ready}));
        } else {
            println!(
                "restarted: every future cancelled, queues emptied; {}/{} workers ready (epoch {})",
                r.workers_ready.len(),
                r.workers_expected,
                r.epoch
            );
        }
    }

    /// What `wait` found.
    pub fn waited(&self, done: &[String], states: &[State], not_done: &[String]) {
        if self.json {
            self.doc(json!({"done": done, "not_done": not_done}));
        } else {
            for (k, s) in done.iter().zip(states) {
                println!("{k} {}", s.status());
            }
        }
    }
}

/// The queue table of `info` and `top`: RabbitMQ's ready messages and
/// consumers, and for a work queue its outbox (runnable tasks that wait in
/// Redis until the queue has room; RabbitMQ cannot show them).
pub fn queue_table(info: &Info) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "{:<40} {:>9} {:>9} {:>9}\n",
        "QUEUE", "READY", "OUTBOX", "CONSUMERS"
    );
    for q in &info.queues {
        let outbox = q.outbox.map_or("-".to_string(), |n| n.to_string());
        let _ = writeln!(
            s,
            "{:<40} {:>9} {outbox:>9} {:>9}",
            q.name, q.ready, q.consumers
        );
    }
    s
}

/// `info`'s and `top`'s line on what runs later or fewer at a time: tasks
/// waiting for their time, periodic schedules, limits (`None`: none of them).
pub fn later_line(info: &Info) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(due) = info.next_due_ms {
        parts.push(format!(
            "{} scheduled, the next due {}",
            info.scheduled,
            warren_core::timing::format_at(due)
        ));
    }
    if info.schedules > 0 {
        parts.push(format!(
            "{} periodic schedules ({} paused; `warren schedules list`)",
            info.schedules, info.paused
        ));
    }
    let limits = info.limits.rates.len() + info.limits.concurrency.len();
    if limits > 0 {
        parts.push(format!("{limits} limits (`warren limits list`)"));
    }
    (!parts.is_empty()).then(|| format!("later: {}", parts.join("; ")))
}

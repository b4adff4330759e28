//! `result`, `gather` and `wait`: waiting on futures, bounded by `--timeout`
//! and by Ctrl-C.
//!
//! All three share one loop over the client's `as_completed` stream, so they
//! agree on what "done" means. Stopping the wait never stops the tasks: on
//! Ctrl-C the keys still pending are written to a file whose name is printed,
//! so the user can wait again or cancel them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use warren_client::{Client, Error, Terminal, stall};

/// How long nothing may finish before the wait looks at why.
const STALL_CHECK: Duration = Duration::from_secs(5);

use super::output::Out;
use super::progress::Progress;

/// How a wait ended.
pub enum Ended {
    /// Every key (or, with `first`, one key) is final.
    Done,
    /// `--timeout` passed first.
    TimedOut,
    /// Ctrl-C.
    Interrupted,
}

/// What a wait saw: the final states, in the order they happened.
#[derive(Default)]
pub struct Seen {
    order: Vec<String>,
    states: HashMap<String, Terminal>,
    /// Why the wait stopped moving, if the stack showed a reason.
    pub stalled: Option<String>,
}

impl Seen {
    /// Keys that ended, in finishing order.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The final state of every key, in the order of `keys`, if all ended.
    pub fn in_order(&self, keys: &[String]) -> Option<Vec<Terminal>> {
        keys.iter().map(|k| self.states.get(k).cloned()).collect()
    }

    /// Keys of `keys` not final yet.
    pub fn pending<'k>(&self, keys: &'k [String]) -> Vec<&'k String> {
        keys.iter()
            .filter(|k| !self.states.contains_key(*k))
            .collect()
    }
}

/// Waits for `keys` (all, or the first if `first`), calling `each` on every
/// final state as it arrives, until done, `timeout` or Ctrl-C.
pub async fn wait_for(
    client: &Client,
    keys: &[String],
    first: bool,
    timeout: Option<f64>,
    progress: &mut Progress,
    mut each: impl FnMut(&str, &Terminal, &Progress),
) -> Result<(Seen, Ended), Error> {
    let mut seen = Seen::default();
    let finished = std::cell::Cell::new(0usize);
    let stalled = std::cell::RefCell::new(None);
    let ended = {
        let stream = client.as_completed(keys);
        let drain = async {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                let (key, t) = item?;
                finished.set(finished.get() + 1);
                progress.done(!matches!(t, Terminal::Finished { .. }));
                each(&key, &t, progress);
                seen.order.push(key.clone());
                seen.states.insert(key, t);
                if first {
                    break;
                }
            }
            Ok::<_, Error>(())
        };
        let limit = async {
            match timeout {
                Some(s) => tokio::time::sleep(Duration::from_secs_f64(s.max(0.0))).await,
                None => std::future::pending().await,
            }
        };
        // Nothing finishing for a while: look at the stack and say why, once
        // per reason (and again if it changes).
        let watchdog = async {
            let mut last = (finished.get(), None::<String>);
            loop {
                tokio::time::sleep(STALL_CHECK).await;
                if finished.get() != last.0 {
                    last = (finished.get(), None);
                    continue;
                }
                let Ok(health) = client.health().await else {
                    continue;
                };
                let why = stall::diagnose(&client.settings().namespace, &health);
                if let Some(w) = &why
                    && last.1.as_ref() != Some(w)
                {
                    eprintln!("warning: still waiting: {w}");
                }
                stalled.replace(why.clone());
                last.1 = why;
            }
        };
        tokio::select! {
            r = drain => { r?; Ended::Done }
            () = limit => Ended::TimedOut,
            _ = tokio::signal::ctrl_c() => Ended::Interrupted,
            () = watchdog => unreachable!("the watchdog never returns"),
        }
    };
    progress.finish();
    seen.stalled = stalled.into_inner();
    Ok((seen, ended))
}

/// Says what Ctrl-C left behind, saving the pending keys to a file; the
/// message names the file and the commands that use it.
pub fn report_interrupted(namespace: &str, keys: &[String], seen: &Seen, out: Out) {
    let pending = seen.pending(keys);
    let file = pending_file(namespace);
    let text: String = pending.iter().map(|k| format!("{k}\n")).collect();
    let saved = !pending.is_empty() && std::fs::write(&file, text).is_ok();
    if out.json {
        let json = serde_json::json!({"error": {"kind": "interrupted",
            "pending": pending.len(), "total": keys.len(),
            "pending_keys_file": saved.then(|| file.display().to_string())}});
        println!("{json}");
    }
    if pending.is_empty() {
        eprintln!("interrupted: every future was already final");
    } else if saved {
        let f = file.display();
        eprintln!(
            "interrupted: {} of {} futures still pending; their tasks keep running.\n\
             Their keys are in {f}:\n  warren gather - < {f}   # wait again\n  warren cancel - < {f}   # cancel them",
            pending.len(),
            keys.len()
        );
    } else {
        eprintln!(
            "interrupted: {} of {} futures still pending; their tasks keep running (could not write {}):",
            pending.len(),
            keys.len(),
            file.display()
        );
        pending.iter().for_each(|k| eprintln!("{k}"));
    }
}

/// Where an interrupted wait saves its pending keys: the user's runtime
/// directory if there is one, else the temporary directory.
fn pending_file(namespace: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!(
        "warren-pending-{namespace}-{}.keys",
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seen_keeps_finishing_order_and_knows_what_is_pending() {
        let keys: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut seen = Seen::default();
        for k in ["c", "a"] {
            seen.order.push(k.into());
            seen.states
                .insert(k.into(), Terminal::Finished { value: json!(k) });
        }
        assert_eq!(seen.order(), ["c", "a"]);
        assert_eq!(seen.pending(&keys), vec!["b"]);
        assert!(seen.in_order(&keys).is_none());
        seen.states.insert("b".into(), Terminal::Cancelled);
        let all = seen.in_order(&keys).expect("all final");
        assert_eq!(all[0], Terminal::Finished { value: json!("a") });
        assert_eq!(all[1], Terminal::Cancelled);
    }
}

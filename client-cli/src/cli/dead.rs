//! `warren dead`: the namespace's dead letters in warren's terms.

use serde_json::json;
use warren_client::Client;
use warren_client::dead::{Action, DeadLetter, Selection};

use crate::cli::output::Out;

/// What `warren dead` does.
#[derive(Debug, clap::Subcommand)]
pub enum DeadCommand {
    /// One line per dead letter: id, age, replays, origin queue, task key and
    /// function where it has them, and why it died.
    List,
    /// One dead letter whole: its headers and body.
    Show {
        /// Its id (or a prefix of it), from `warren dead list`.
        id: String,
    },
    /// Put dead letters back on their origin queue (or --to QUEUE), counting
    /// the replay in a header. Each leaves the dead queue only once its copy
    /// is confirmed.
    #[command(after_help = "Examples:
  warren dead replay 3f2a9c01be47
  warren dead replay --all --to myns.submit")]
    Replay {
        /// Ids (or prefixes) from `warren dead list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// Publish to this queue instead of each one's origin.
        #[arg(long, value_name = "QUEUE")]
        to: Option<String>,
    },
    /// Delete dead letters for good.
    Purge {
        /// Ids (or prefixes) from `warren dead list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

fn selection(ids: Vec<String>, all: bool) -> Selection {
    if all {
        Selection::All
    } else {
        Selection::Ids(ids)
    }
}

fn age(died_at: Option<u64>) -> String {
    let now = warren_core::messages::now_ms() / 1000;
    match died_at {
        Some(t) if t <= now => {
            let s = now - t;
            match s {
                0..=119 => format!("{s}s"),
                120..=7199 => format!("{}m", s / 60),
                _ => format!("{}h", s / 3600),
            }
        }
        _ => "-".into(),
    }
}

/// Runs one `warren dead` command.
pub async fn run(client: &Client, command: DeadCommand, out: Out) -> anyhow::Result<u8> {
    let (selection, action) = match &command {
        DeadCommand::List | DeadCommand::Show { .. } => (Selection::All, Action::List),
        DeadCommand::Replay { ids, all, to } => {
            (selection(ids.clone(), *all), Action::Replay(to.clone()))
        }
        DeadCommand::Purge { ids, all } => (selection(ids.clone(), *all), Action::Purge),
    };
    let (letters, acted) = client.dead_letters(&selection, &action).await?;
    match command {
        DeadCommand::List => list(&letters, out),
        DeadCommand::Show { id } => {
            let found: Vec<&DeadLetter> =
                letters.iter().filter(|l| l.id.starts_with(&id)).collect();
            let [letter] = found.as_slice() else {
                anyhow::bail!(
                    "{} dead letters match id {id:?}: see `warren dead list`",
                    found.len()
                );
            };
            show(letter, out);
        }
        DeadCommand::Replay { .. } | DeadCommand::Purge { .. } => {
            let verb = if matches!(action, Action::Purge) {
                "purged"
            } else {
                "replayed"
            };
            if out.json {
                println!("{}", json!({ verb: acted }));
            } else {
                for id in &acted {
                    println!("{id}");
                }
                eprintln!("{} dead letters {verb}", acted.len());
            }
        }
    }
    Ok(0)
}

fn list(letters: &[DeadLetter], out: Out) {
    if out.json {
        println!("{}", json!({ "dead": letters }));
        return;
    }
    println!(
        "{:<12} {:>5} {:>7}  {:<24} {:<36} REASON",
        "ID", "AGE", "REPLAYS", "ORIGIN", "TASK"
    );
    for l in letters {
        let task = match (&l.key, &l.func) {
            (Some(k), _) if k.chars().count() <= 36 => k.clone(),
            (Some(k), _) => format!("{}...", k.chars().take(33).collect::<String>()),
            (None, Some(f)) => f.clone(),
            (None, None) => "-".into(),
        };
        let reason: String = l.reason.chars().take(120).collect();
        println!(
            "{:<12} {:>5} {:>7}  {:<24} {:<36} {}",
            l.id,
            age(l.died_at),
            l.replays,
            if l.origin.is_empty() { "-" } else { &l.origin },
            task,
            reason
        );
    }
    eprintln!("{} dead letters", letters.len());
}

fn show(l: &DeadLetter, out: Out) {
    if out.json {
        println!("{}", json!(l));
        return;
    }
    println!("id: {}", l.id);
    println!("origin: {}", l.origin);
    println!("reason: {}", l.reason);
    println!("age: {}", age(l.died_at));
    println!("replays: {}", l.replays);
    for (k, v) in &l.headers {
        println!("header {k}: {v}");
    }
    println!("body:\n{}", l.body);
}

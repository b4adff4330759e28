//! `warren every`, `warren cron`, `warren schedules` and `warren runs`:
//! periodic schedules, each tick run exactly once by whichever scheduler is
//! alive.

use serde_json::json;
use warren_client::Client;
use warren_core::periodic::{Missed, Schedule};
use warren_core::timing::format_at;

use crate::cli::output::Out;

/// Options of `warren every` and `warren cron`.
#[derive(Debug, clap::Args)]
pub struct ScheduleFlags {
    /// The schedule's name (adding a name again replaces it).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The work queue of each run (default: the function's own).
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// A tick missed while no scheduler was alive: run it once on recovery
    /// (run-once), or skip it (skip).
    #[arg(long, value_enum, default_value = "run-once")]
    pub missed: MissedFlag,
}

/// `--missed`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MissedFlag {
    /// Run once for the ticks missed.
    RunOnce,
    /// Skip them.
    Skip,
}

/// What `warren schedules` does.
#[derive(Debug, clap::Subcommand)]
pub enum SchedulesCommand {
    /// One line per schedule: name, when, what, next tick.
    List,
    /// Stop running a schedule's ticks until it is resumed.
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Run a paused schedule's ticks again, from the next one after now.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Delete a schedule (its runs stay, as futures).
    Remove {
        /// The schedule's name.
        name: String,
    },
}

/// Adds schedule `flags.name` for `func(args)`, every `every_ms` or at
/// `cron`; prints its first tick.
pub async fn add(
    client: &Client,
    flags: &ScheduleFlags,
    when: (Option<u64>, Option<String>),
    func: &str,
    args: Vec<serde_json::Value>,
    out: Out,
) -> anyhow::Result<u8> {
    let schedule = Schedule {
        func: func.to_string(),
        args,
        queue: flags
            .queue
            .clone()
            .unwrap_or_else(|| warren_core::routing::default_queue_for(func)),
        every_ms: when.0,
        cron: when.1,
        start_ms: warren_core::messages::now_ms(),
        missed: match flags.missed {
            MissedFlag::RunOnce => Missed::RunOnce,
            MissedFlag::Skip => Missed::Skip,
        },
        paused: false,
    };
    let next = client.add_schedule(&flags.name, &schedule).await?;
    if out.json {
        println!("{}", json!({"name": flags.name, "next": format_at(next)}));
    } else {
        println!("schedule {}: next run {}", flags.name, format_at(next));
    }
    Ok(0)
}

/// Runs one `warren schedules` command.
pub async fn run(client: &Client, command: SchedulesCommand, out: Out) -> anyhow::Result<u8> {
    match command {
        SchedulesCommand::List => {
            let all = client.schedules().await?;
            if out.json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|s| {
                        json!({"name": s.name, "every_ms": s.schedule.every_ms, "cron": s.schedule.cron,
                               "func": s.schedule.func, "args": s.schedule.args,
                               "paused": s.schedule.paused, "next": s.next_ms.map(format_at)})
                    })
                    .collect();
                println!("{}", json!({ "schedules": rows }));
            } else if all.is_empty() {
                println!("no schedules (add one with `warren every` or `warren cron`)");
            } else {
                for s in &all {
                    let when = match (&s.schedule.every_ms, &s.schedule.cron) {
                        (Some(ms), _) => format!("every {}", human(*ms)),
                        (_, Some(c)) => format!("cron \"{c}\""),
                        _ => "-".into(),
                    };
                    let next = match s.next_ms {
                        Some(n) => format!("next {}", format_at(n)),
                        None => "paused".into(),
                    };
                    let args = serde_json::to_string(&s.schedule.args).unwrap_or_default();
                    println!("{} {when} {}{args} {next}", s.name, s.schedule.func);
                }
            }
        }
        SchedulesCommand::Pause { name } => {
            client.pause_schedule(&name, true).await?;
            println!("schedule {name} paused");
        }
        SchedulesCommand::Resume { name } => {
            client.pause_schedule(&name, false).await?;
            println!("schedule {name} resumed");
        }
        SchedulesCommand::Remove { name } => {
            if !client.remove_schedule(&name).await? {
                eprintln!("error: no schedule named {name:?} (see `warren schedules list`)");
                return Ok(2);
            }
            println!("schedule {name} removed");
        }
    }
    Ok(0)
}

/// A period as users write it: 5m, 30s, 1h, 1500ms.
fn human(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

//! `warren`: the command line client.
//!
//! Every command connects, does one thing, prints plain text (JSON values, one
//! per line) for pipes and scripts, or one JSON document with `--json`.
//!
//! Exit codes, one rule for every command: 0 done; 1 a task failed or was
//! cancelled; 2 bad input, an unknown key or function, or a service that
//! cannot be reached or does not answer; 3 a `--timeout` passed while futures
//! were still pending (they run on); 130 interrupted by Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use warren_client::{Client, Error, Forgotten};
use warren_core::Settings;
use warren_core::command::COMMAND_FUNC;
use warren_core::status::State;

mod cli {
    pub mod access;
    pub mod args;
    pub mod blob;
    pub mod dead;
    pub mod key;
    pub mod limits;
    pub mod output;
    pub mod programs;
    pub mod progress;
    pub mod schedules;
    pub mod stack;
    pub mod top;
    pub mod values;
    pub mod waiting;
}
use cli::args::{Cli, Command};
use cli::output::Out;
use cli::progress::Progress;
use cli::values::{expand_stdin, parse_args};
use cli::waiting::{Ended, report_interrupted, wait_for};

/// A task failed or was cancelled.
const FAILED: u8 = 1;
/// Bad input, unknown key or function, unreachable or silent service.
const BAD: u8 = 2;
/// A `--timeout` passed first.
const TIMED_OUT: u8 = 3;
/// Ctrl-C.
const INTERRUPTED: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    // `warren ... | head` closes the pipe early: end quietly like any Unix tool
    // instead of panicking in println!. Rust ignores SIGPIPE by default.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal, before any
    // other thread could be writing.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    warren_core::logging::init(
        warren_core::logging::Format::Terse,
        "WARREN_LOG",
        "warn,lapin=off",
    );
    let out = Out { json: cli.json };
    match run(cli, out).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (kind, code) = classify(&e);
            if out.json {
                let doc = serde_json::json!({"error": {"kind": kind, "message": format!("{e:#}")}});
                println!("{doc}");
            }
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// The kind (for `--json`) and exit code of an error.
fn classify(e: &anyhow::Error) -> (&'static str, u8) {
    match e.downcast_ref::<Error>() {
        Some(Error::Timeout { .. }) => ("timeout", TIMED_OUT),
        Some(Error::UnknownFuture { .. }) => ("unknown_future", BAD),
        Some(Error::UnservedFunction(_)) => ("unserved_function", BAD),
        Some(Error::NoScheduler { .. } | Error::CannotDeclare { .. }) => ("no_scheduler", BAD),
        Some(Error::NotConfirmed { .. }) => ("not_confirmed", BAD),
        Some(Error::InvalidArgument(_) | Error::PayloadTooLarge { .. }) => ("invalid_input", BAD),
        Some(Error::Refused { .. }) => ("refused", BAD),
        Some(Error::Task { .. }) => ("task_failed", FAILED),
        Some(Error::Cancelled { .. }) => ("cancelled", FAILED),
        Some(Error::Core(_) | Error::Disconnected) => ("service", BAD),
        None => ("invalid_input", BAD),
    }
}

async fn run(cli: Cli, out: Out) -> anyhow::Result<u8> {
    let overrides = warren_core::settings::flag_overrides(vec![
        ("amqp_url", cli.amqp_url.clone()),
        ("redis_url", cli.redis_url.clone()),
        ("namespace", cli.namespace.clone()),
    ]);
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    // `key` needs no services: it reads and writes a file.
    if let Command::Key { command } = &cli.command {
        return cli::key::run(command, &settings);
    }
    // `access` talks to the servers as their administrator, not as a client.
    if let Command::Access(args) = &cli.command {
        return cli::access::run(args, &settings, out).await;
    }
    // `down` needs no services: it only stops processes.
    if let Command::Down { dir } = &cli.command {
        let dir = cli::stack::stack_dir(&settings.namespace, dir.as_deref());
        cli::stack::down(
            &settings.namespace,
            &dir,
            std::time::Duration::from_secs(settings.drain_timeout_secs),
        )?;
        return Ok(0);
    }
    let client = Client::connect(settings).await?;
    let namespace = client.settings().namespace.clone();
    let failed_if = |bad: bool| if bad { FAILED } else { 0 };
    match cli.command {
        Command::Submit {
            func,
            args,
            key,
            task,
            program,
        } if program.cmd => {
            let opts = task.options(key);
            if task.check_served() {
                client
                    .check_command(&func, &opts.queue_for(COMMAND_FUNC))
                    .await?;
            }
            let options = cli::programs::options(&program)?;
            let line: Vec<String> = std::iter::once(func).chain(args).collect();
            let argv = cli::programs::command_line(&client, &line).await?;
            let fs = client.submit_commands(vec![argv], &options, &opts).await?;
            client.flush().await?;
            out.keys(&[fs[0].key().to_string()], true);
        }
        Command::Map {
            func,
            args,
            each_line,
            task,
            program,
        } if program.cmd => {
            let opts = task.options(None);
            let (template, values) = cli::programs::split_values(&args);
            let values = match (values, each_line) {
                (Some(_), Some(_)) => {
                    anyhow::bail!("give the values after ::: or with --each-line, not both")
                }
                (Some(v), None) => v,
                (None, Some(file)) => cli::programs::lines_of(&file)?,
                (None, None) => anyhow::bail!(
                    "map --cmd needs values: PROGRAM [ARG]... ::: VALUE... or --each-line FILE"
                ),
            };
            if task.check_served() {
                client
                    .check_command(&func, &opts.queue_for(COMMAND_FUNC))
                    .await?;
            }
            let options = cli::programs::options(&program)?;
            let template: Vec<String> = std::iter::once(func).chain(template).collect();
            let mut argvs = Vec::with_capacity(values.len());
            for v in &values {
                let line = cli::programs::fill(&template, v);
                argvs.push(cli::programs::command_line(&client, &line).await?);
            }
            let fs = client.submit_commands(argvs, &options, &opts).await?;
            client.flush().await?;
            out.keys(
                &fs.iter().map(|f| f.key().to_string()).collect::<Vec<_>>(),
                false,
            );
        }
        Command::Logs { key } => match client.logs(&key).await? {
            Some(logs) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(logs.stdout.as_bytes());
                let _ = std::io::stderr().write_all(logs.stderr.as_bytes());
            }
            None => anyhow::bail!(
                "no logs for {key:?}: it is no program or Python task of namespace {namespace:?} that wrote something, or its logs expired with its result"
            ),
        },
        Command::Submit {
            func,
            args,
            key,
            task,
            ..
        } => {
            let opts = task.options(key);
            if task.check_served() {
                client.check_served(&func, &opts.queue_for(&func)).await?;
            }
            let args = parse_args(&client, &args).await?;
            let f = client.submit_with(&func, args, &opts).await?;
            // The printed key must name a recorded future (with --detach: a
            // submission RabbitMQ holds).
            client.flush().await?;
            out.keys(&[f.key().to_string()], true);
        }
        Command::Map {
            func, args, task, ..
        } => {
            if args.is_empty() {
                anyhow::bail!("map needs at least one ARG (one task per ARG)");
            }
            let opts = task.options(None);
            if task.check_served() {
                client.check_served(&func, &opts.queue_for(&func)).await?;
            }
            let args = parse_args(&client, &args).await?;
            let fs = client
                .map_with(&func, args.into_iter().map(|a| vec![a]).collect(), &opts)
                .await?;
            client.flush().await?;
            out.keys(
                &fs.iter().map(|f| f.key().to_string()).collect::<Vec<_>>(),
                false,
            );
        }
        Command::Result { key, timeout, raw } => {
            let keys = vec![key];
            let mut progress = Progress::new(0, false);
            let (seen, ended) =
                wait_for(&client, &keys, false, timeout, &mut progress, |_, _, _| {}).await?;
            return match ended {
                Ended::Done => {
                    let outcome = seen.in_order(&keys).unwrap_or_default();
                    if let Some(warren_client::Terminal::Finished { value }) = outcome.first()
                        && cli::blob::show(&client, value, raw).await?
                    {
                        return Ok(0);
                    }
                    Ok(failed_if(!out.result(&keys[0], &outcome[0])))
                }
                Ended::TimedOut => Err(timed_out(timeout, &keys[0], &seen).into()),
                Ended::Interrupted => {
                    report_interrupted(&namespace, &keys, &seen, out);
                    Ok(INTERRUPTED)
                }
            };
        }
        Command::Gather {
            keys,
            timeout,
            as_completed,
        } => {
            let keys = expand_stdin(keys)?;
            let mut progress = Progress::new(keys.len(), !out.json);
            let mut failed = false;
            let (seen, ended) =
                wait_for(&client, &keys, false, timeout, &mut progress, |k, t, p| {
                    if as_completed {
                        failed |= !matches!(t, warren_client::Terminal::Finished { .. });
                        p.suspend(|| out.completed(k, t));
                    }
                })
                .await?;
            return match ended {
                Ended::Done if as_completed => Ok(failed_if(failed)),
                Ended::Done => {
                    let outcomes = seen.in_order(&keys).unwrap_or_default();
                    Ok(failed_if(!out.outcomes(&keys, &outcomes)))
                }
                Ended::TimedOut => {
                    let what = format!(
                        "{} futures ({} still pending)",
                        keys.len(),
                        seen.pending(&keys).len()
                    );
                    Err(timed_out(timeout, &what, &seen).into())
                }
                Ended::Interrupted => {
                    report_interrupted(&namespace, &keys, &seen, out);
                    Ok(INTERRUPTED)
                }
            };
        }
        Command::Wait {
            keys,
            first,
            timeout,
        } => {
            let keys = expand_stdin(keys)?;
            let mut progress = Progress::new(keys.len(), !out.json && !first);
            let (seen, ended) =
                wait_for(&client, &keys, first, timeout, &mut progress, |_, _, _| {}).await?;
            if let Ended::Interrupted = ended {
                report_interrupted(&namespace, &keys, &seen, out);
                return Ok(INTERRUPTED);
            }
            let done = seen.order().to_vec();
            let not_done: Vec<String> = seen.pending(&keys).into_iter().cloned().collect();
            out.waited(&done, &client.states(&done).await?, &not_done);
            if let Ended::TimedOut = ended {
                eprintln!(
                    "error: timed out after {}s: {} of {} futures final{}",
                    timeout.unwrap_or(0.0),
                    done.len(),
                    keys.len(),
                    seen.stalled
                        .as_deref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                );
                return Ok(TIMED_OUT);
            }
        }
        Command::Cancel { keys } => {
            let keys = expand_stdin(keys)?;
            client.cancel(&keys).await?;
            return Ok(states(&client, &keys, out).await?);
        }
        Command::Forget { keys } => {
            let keys = expand_stdin(keys)?;
            let results = client.forget(&keys).await?;
            out.forgotten(&keys, &results);
            if results.contains(&Forgotten::Unknown) {
                return Ok(BAD);
            }
            return Ok(failed_if(
                results.iter().any(|f| *f != Forgotten::Forgotten),
            ));
        }
        Command::Workers => out.workers(&client.workers().await?),
        Command::Info => out.info(&namespace, &client.info().await?),
        Command::Status { keys } => {
            let keys = expand_stdin(keys)?;
            return Ok(states(&client, &keys, out).await?);
        }
        Command::Restart => out.restarted(&client.restart().await?),
        Command::Top { once, every } => {
            cli::top::run(&client, Duration::from_secs_f64(every.max(0.1)), once).await?;
        }
        Command::Up {
            workers,
            concurrency,
            dir,
        } => {
            let dir = cli::stack::stack_dir(&namespace, dir.as_deref());
            cli::stack::up(&client, cli.config.as_deref(), &dir, workers, concurrency).await?;
        }
        Command::Dead { command } => return cli::dead::run(&client, command, out).await,
        Command::Limits { command } => return cli::limits::run(&client, command, out).await,
        Command::Every {
            period,
            func,
            args,
            schedule,
        } => {
            let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
            let args = parse_args(&client, &args).await?;
            return cli::schedules::add(&client, &schedule, (Some(ms), None), &func, args, out)
                .await;
        }
        Command::Cron {
            expr,
            func,
            args,
            schedule,
        } => {
            let args = parse_args(&client, &args).await?;
            return cli::schedules::add(&client, &schedule, (None, Some(expr)), &func, args, out)
                .await;
        }
        Command::Schedules { command } => {
            return cli::schedules::run(&client, command, out).await;
        }
        Command::Runs { name } => {
            let keys = client.schedule_runs(&name).await?;
            if keys.is_empty() {
                eprintln!("no runs of schedule {name:?} yet (see `warren schedules list`)");
                return Ok(0);
            }
            return Ok(states(&client, &keys, out).await?);
        }
        Command::Down { .. } | Command::Key { .. } | Command::Access(_) => {
            unreachable!("handled before connecting")
        }
    }
    Ok(0)
}

/// Prints every key's state (`unknown` for keys the namespace lacks); exit 2
/// if any is unknown.
async fn states(client: &Client, keys: &[String], out: Out) -> Result<u8, Error> {
    let states = client.lookup(keys).await?;
    let mut dues = Vec::with_capacity(keys.len());
    for (k, s) in keys.iter().zip(&states) {
        dues.push(match s {
            Some(State::Scheduled) => client.due(k).await?,
            _ => None,
        });
    }
    out.states(keys, &states, &dues);
    let unknown = states.iter().filter(|s| s.is_none()).count();
    if unknown > 0 {
        eprintln!(
            "error: {unknown} of {} keys unknown in namespace {:?} (never submitted, expired or forgotten; check the key or the --namespace)",
            keys.len(),
            client.settings().namespace
        );
        return Ok(BAD);
    }
    Ok(0)
}

/// A timeout, with why the futures were not moving if the stack said.
fn timed_out(secs: Option<f64>, what: &str, seen: &cli::waiting::Seen) -> Error {
    let what = match &seen.stalled {
        Some(why) => format!("{what} ({why})"),
        None => what.to_string(),
    };
    Error::Timeout {
        secs: secs.unwrap_or(0.0),
        what,
    }
}

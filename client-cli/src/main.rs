//! `warren`: the command line client.
//!
//! Every command connects, does one thing, prints plain text (JSON values, one
//! per line) for pipes and scripts, and exits 0 on success, 1 when a task failed
//! or was cancelled, 2 on bad input or an unreachable service.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;
use std::collections::HashMap;

use futures::StreamExt;
use warren_client::{Client, Error, Forgotten, SubmitOptions, Terminal};

mod cli {
    pub mod output;
    pub mod progress;
    pub mod top;
}
use cli::output::Out;
use cli::progress::Progress;
use warren_core::Settings;

/// warren: dask-style futures on RabbitMQ and Redis.
///
/// Submit tasks, build DAGs by passing futures (@KEY) as arguments, and gather
/// results. Workers run registered functions (stock: is_prime,
/// count_primes_less_than, add_them, goes_wrong, inc, sum, sleep, identity).
///
/// Settings come from (later wins): defaults (local RabbitMQ and Redis, namespace
/// "warren"), ./warren.toml or --config, WARREN_* environment variables
/// (WARREN_AMQP_URL, WARREN_REDIS_URL, WARREN_NAMESPACE, WARREN_MAX_PAYLOAD_BYTES,
/// ...), then flags.
///
/// Examples:
///   N=$(warren submit count_primes_less_than 5000000)
///   warren result $N
///   warren map count_primes_less_than $(seq 1500000 1500008) | warren gather -
///   M1=$(warren submit count_primes_less_than 4000000)
///   M2=$(warren submit count_primes_less_than 4500000)
///   warren result $(warren submit add_them @$M1 @$M2)
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// A TOML settings file (default: ./warren.toml if present).
    #[arg(long, global = true, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f
    #[arg(long, global = true)]
    amqp_url: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379/
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// Namespace: separates users or test runs sharing one RabbitMQ and Redis.
    #[arg(long, global = true)]
    namespace: Option<String>,
    /// Print one JSON document per command (for scripts) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit FUNC(ARG...) and print the new future's key.
    ///
    /// Each ARG is a JSON value (5000000, "text", [1,2], {"a":1}); a bare word
    /// that is not JSON is a string; @KEY is the future with that key, and the
    /// task waits for it.
    #[command(verbatim_doc_comment)]
    Submit {
        /// Registered function name.
        func: String,
        /// Arguments: JSON, a bare word (a string), or @KEY (a future).
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
        /// Use this key instead of a computed one.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        task: TaskFlags,
    },
    /// One task per ARG (FUNC(ARG)); print the keys, one per line, in order.
    Map {
        /// Registered function name.
        func: String,
        /// One argument per task: JSON, a bare word, or @KEY.
        #[arg(required = true, allow_hyphen_values = true)]
        args: Vec<String>,
        #[command(flatten)]
        task: TaskFlags,
    },
    /// Wait for KEY and print its value as JSON. A failed task prints its error
    /// type, message and traceback on stderr and exits 1.
    Result {
        /// The future's key.
        key: String,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Wait for every KEY; print the values as JSON, one per line, in order.
    /// Exits 1 naming the first failed key.
    Gather {
        /// Keys, or - to read them from stdin (one per line).
        #[arg(required = true)]
        keys: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Print "KEY VALUE" lines in the order tasks finish (dask's
        /// as_completed); failures go to stderr and make the exit code 1.
        #[arg(long)]
        as_completed: bool,
    },
    /// Wait until all KEYs (or, with --first, one of them) are final; print
    /// "KEY STATUS" for each one done, in the order they finished. Exits 1 if
    /// the timeout passes first.
    Wait {
        /// Keys, or - to read them from stdin.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Return as soon as one is final (dask's FIRST_COMPLETED).
        #[arg(long)]
        first: bool,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Cancel futures and everything depending on them; print "KEY STATUS".
    Cancel {
        /// Keys, or - to read them from stdin.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Delete final futures now instead of when their TTL ends.
    Forget {
        /// Keys, or - to read them from stdin.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// List live workers: host, pid, concurrency, queues, running tasks, last heartbeat.
    Workers,
    /// Futures per state and queue depths of the namespace.
    Info,
    /// A live view: futures per state and their rate, queues, workers with
    /// their running tasks, recent errors. Redraws every second until Ctrl-C.
    Top {
        /// Print one screen and exit.
        #[arg(long)]
        once: bool,
        /// Seconds between redraws.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
    },
    /// Print "KEY STATUS [DETAIL]" per key: pending (waiting, queued,
    /// processing), finished, error or cancelled.
    Status {
        /// Keys, or - to read them from stdin.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Back to a clean state: every future cancelled, queues emptied, workers
    /// ready (dask's client.restart()).
    Restart,
}

/// Options of each task, for `submit` and `map`.
#[derive(Debug, clap::Args)]
struct TaskFlags {
    /// Same FUNC and ARGs give the same key; resubmitting returns the existing
    /// future (the default, as dask's pure=True).
    #[arg(long, overrides_with = "no_pure")]
    pure: bool,
    /// Always create a new future, even for the same FUNC and ARGs.
    #[arg(long)]
    no_pure: bool,
    /// Run the task again up to N times if it fails (dask's retries=); the
    /// final error lists every attempt's error.
    #[arg(long, default_value_t = 0, value_name = "N")]
    retries: u32,
    /// Work queue: only workers started with --queues NAME run it (e.g. gpu).
    #[arg(long, default_value = "default")]
    queue: String,
    /// Time limit in seconds: past it the task fails with TimeoutError and its
    /// worker slot is free again.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Higher runs first among ready tasks of the same queue (default 0).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    priority: i64,
    /// Fire and forget: print the key(s) once RabbitMQ holds the submission,
    /// without waiting for the scheduler. The task runs all the same.
    #[arg(long)]
    detach: bool,
}

impl TaskFlags {
    fn options(&self, key: Option<String>) -> SubmitOptions {
        SubmitOptions {
            key,
            pure: !self.no_pure,
            retries: self.retries,
            queue: self.queue.clone(),
            timeout_secs: self.timeout,
            priority: self.priority,
            detach: self.detach,
        }
    }
}

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=off")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = warren_core::settings::flag_overrides(vec![
        ("amqp_url", cli.amqp_url.clone()),
        ("redis_url", cli.redis_url.clone()),
        ("namespace", cli.namespace.clone()),
    ]);
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    let client = Client::connect(settings).await?;
    let out = Out { json: cli.json };
    let code = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    };
    match cli.command {
        Command::Submit {
            func,
            args,
            key,
            task,
        } => {
            let args = parse_args(&client, &args).await?;
            let opts = task.options(key);
            let f = client.submit_with(&func, args, &opts).await?;
            // The printed key must name a recorded future (with --detach: a
            // submission RabbitMQ holds).
            client.flush().await?;
            if out.json {
                println!("{}", serde_json::json!({"key": f.key()}));
            } else {
                println!("{}", f.key());
            }
        }
        Command::Map { func, args, task } => {
            let args = parse_args(&client, &args).await?;
            let opts = task.options(None);
            let fs = client
                .map_with(&func, args.into_iter().map(|a| vec![a]).collect(), &opts)
                .await?;
            client.flush().await?;
            out.keys(&fs.iter().map(|f| f.key().to_string()).collect::<Vec<_>>());
        }
        Command::Result { key, timeout } => {
            let outcome = with_timeout(timeout, &key, client.future(&key).outcome()).await?;
            return Ok(code(out.result(&key, &outcome)));
        }
        Command::Gather {
            keys,
            timeout,
            as_completed,
        } => {
            let keys = expand_stdin(keys)?;
            let what = format!("{} futures", keys.len());
            let mut progress = Progress::new(keys.len(), !out.json);
            if as_completed {
                let failed = with_timeout(
                    timeout,
                    &what,
                    stream_completed(&client, &keys, out, &mut progress),
                )
                .await;
                progress.finish();
                return Ok(code(!failed?));
            }
            let outcomes =
                with_timeout(timeout, &what, collect(&client, &keys, &mut progress)).await;
            progress.finish();
            return Ok(code(out.outcomes(&keys, &outcomes?)));
        }
        Command::Wait {
            keys,
            first,
            timeout,
        } => {
            let keys = expand_stdin(keys)?;
            let mut progress = Progress::new(keys.len(), !out.json && !first);
            let (done, not_done) = wait(&client, &keys, first, timeout, &mut progress).await;
            progress.finish();
            let (done, not_done) = (done?, not_done);
            out.waited(&done, &client.states(&done).await?, &not_done);
            let met = if first {
                !done.is_empty()
            } else {
                not_done.is_empty()
            };
            if !met {
                eprintln!(
                    "error: timed out after {}s: {} of {} futures final",
                    timeout.unwrap_or(0.0),
                    done.len(),
                    keys.len()
                );
            }
            return Ok(code(met));
        }
        Command::Cancel { keys } => {
            let keys = expand_stdin(keys)?;
            client.cancel(&keys).await?;
            out.states(&keys, &client.states(&keys).await?);
        }
        Command::Forget { keys } => {
            let keys = expand_stdin(keys)?;
            let results = client.forget(&keys).await?;
            out.forgotten(&keys, &results);
            return Ok(code(results.iter().all(|f| *f == Forgotten::Forgotten)));
        }
        Command::Workers => out.workers(&client.workers().await?),
        Command::Info => out.info(&client.settings().namespace, &client.info().await?),
        Command::Status { keys } => {
            let keys = expand_stdin(keys)?;
            out.states(&keys, &client.states(&keys).await?);
        }
        Command::Restart => out.restarted(&client.restart().await?),
        Command::Top { once, every } => {
            cli::top::run(&client, Duration::from_secs_f64(every.max(0.1)), once).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for every key, counting progress as they finish; final states in
/// the order of `keys`.
async fn collect(
    client: &Client,
    keys: &[String],
    progress: &mut Progress,
) -> Result<Vec<Terminal>, Error> {
    let mut seen: HashMap<String, Terminal> = HashMap::with_capacity(keys.len());
    let stream = client.as_completed(keys);
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let (key, t) = item?;
        progress.done(!matches!(t, Terminal::Finished { .. }));
        seen.insert(key, t);
    }
    keys.iter()
        .map(|k| seen.get(k).cloned().ok_or(Error::Disconnected))
        .collect()
}

/// Prints each final state as it happens; returns whether any failed.
async fn stream_completed(
    client: &Client,
    keys: &[String],
    out: Out,
    progress: &mut Progress,
) -> Result<bool, Error> {
    let mut failed = false;
    let stream = client.as_completed(keys);
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        let (key, t) = item?;
        let bad = !matches!(t, Terminal::Finished { .. });
        failed |= bad;
        progress.done(bad);
        progress.suspend(|| out.completed(&key, &t));
    }
    Ok(failed)
}

/// `warren wait`: the keys final (in finishing order) and those not, when all
/// (or the first) are final or the timeout passes.
async fn wait(
    client: &Client,
    keys: &[String],
    first: bool,
    timeout: Option<f64>,
    progress: &mut Progress,
) -> (Result<Vec<String>, Error>, Vec<String>) {
    let mut done = Vec::new();
    let stream = client.as_completed(keys);
    futures::pin_mut!(stream);
    let collect = async {
        while let Some(item) = stream.next().await {
            let (key, t) = item?;
            progress.done(!matches!(t, Terminal::Finished { .. }));
            done.push(key);
            if first {
                break;
            }
        }
        Ok::<_, Error>(())
    };
    let r = match timeout {
        Some(s) => tokio::time::timeout(Duration::from_secs_f64(s.max(0.0)), collect)
            .await
            .unwrap_or(Ok(())),
        None => collect.await,
    };
    let not_done = keys.iter().filter(|k| !done.contains(k)).cloned().collect();
    (r.map(|()| done), not_done)
}

async fn with_timeout<T>(
    secs: Option<f64>,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match secs {
        None => fut.await,
        Some(s) => tokio::time::timeout(Duration::from_secs_f64(s.max(0.0)), fut)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    secs: s,
                    what: what.to_string(),
                })
            }),
    }
}

/// `-` reads keys from stdin, one per line.
fn expand_stdin(keys: Vec<String>) -> anyhow::Result<Vec<String>> {
    if keys.len() == 1 && keys[0] == "-" {
        let mut out = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let line = line.trim();
            if !line.is_empty() {
                out.push(line.to_string());
            }
        }
        return Ok(out);
    }
    Ok(keys)
}

/// Parses CLI arguments: `@KEY` is a future (which must exist), JSON is JSON,
/// anything else is a string.
async fn parse_args(client: &Client, raw: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut refs = Vec::new();
    for a in raw {
        if let Some(key) = a.strip_prefix('@') {
            if key.is_empty() {
                anyhow::bail!("argument \"@\" names no future: write @KEY");
            }
            refs.push(key.to_string());
            out.push(warren_core::args::future_ref(key));
        } else {
            out.push(parse_value(a)?);
        }
    }
    if !refs.is_empty() {
        for (key, known) in refs.iter().zip(client.exists(&refs).await?) {
            if !known {
                anyhow::bail!(
                    "argument @{key}: no future with key {key:?} in namespace {:?} (check the key, or the --namespace)",
                    client.settings().namespace
                );
            }
        }
    }
    Ok(out)
}

/// A JSON value, or the text itself as a string. Text that starts like a JSON
/// object, list or string must be valid JSON: a typo there is an error, not a
/// silently different argument.
fn parse_value(a: &str) -> anyhow::Result<Value> {
    match serde_json::from_str(a) {
        Ok(v) => Ok(v),
        Err(e) if a.trim_start().starts_with(['{', '[', '"']) => {
            anyhow::bail!(
                "argument {a:?} is not valid JSON: {e} (quote it as a JSON string to pass text)"
            )
        }
        Err(_) => Ok(Value::String(a.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_are_json_or_bare_strings() {
        assert_eq!(parse_value("5000000").unwrap(), json!(5_000_000));
        assert_eq!(parse_value("\"text\"").unwrap(), json!("text"));
        assert_eq!(parse_value("[1,2]").unwrap(), json!([1, 2]));
        assert_eq!(parse_value("{\"a\":1}").unwrap(), json!({"a": 1}));
        assert_eq!(parse_value("hello").unwrap(), json!("hello"));
        let e = parse_value("{broken").unwrap_err().to_string();
        assert!(e.contains("\"{broken\" is not valid JSON"), "{e}");
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

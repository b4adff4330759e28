//! `warren-worker`: the stock worker, with the notebook's functions.

use std::path::PathBuf;

use clap::Parser;
use warren_core::Settings;
use warren_worker::{Worker, stock};

/// A warren worker. Runs registered functions (the notebook's: is_prime,
/// count_primes_less_than, add_them, goes_wrong; and inc, sum, sleep, identity,
/// raise_panic, scale, byte_count) from the work queues of a namespace. Start as many as you like, on
/// as many machines as you like: they share the queues.
///
/// Settings come from (later wins): defaults, warren.toml (or --config), WARREN_*
/// environment variables (WARREN_AMQP_URL, WARREN_REDIS_URL, WARREN_NAMESPACE,
/// WARREN_CONCURRENCY, ...),
/// then these flags.
///
/// SIGTERM or Ctrl-C drains: no new tasks, the held ones go back to the queue,
/// the running ones finish and are reported (up to --drain-timeout), then exit 0.
/// A second signal stops at once.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A TOML settings file (default: ./warren.toml if present).
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f; a cluster's nodes separated by commas
    #[arg(long)]
    amqp_url: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379/ (a task's start is recorded there
    /// before it runs).
    #[arg(long)]
    redis_url: Option<String>,
    /// Namespace: prefix of every queue it consumes.
    #[arg(long)]
    namespace: Option<String>,
    /// Tasks run at once (default: number of CPU cores).
    #[arg(long, short = 'c')]
    concurrency: Option<usize>,
    /// Work queues to serve, comma-separated.
    #[arg(long, default_value = "default", value_delimiter = ',')]
    queues: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9465).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Seconds a worker stopped with SIGTERM (or a first Ctrl-C) may take to
    /// finish its running tasks before it exits anyway (default 30).
    #[arg(long, value_name = "SECS")]
    drain_timeout: Option<u64>,
    /// Where a task's function runs: `thread` (default, cheapest) or
    /// `process` (a child process per run: a time limit, cancel or restart
    /// ends it for real, and a crash ends only that run).
    #[arg(long, value_name = "thread|process")]
    isolation: Option<String>,
    /// With --isolation process, the memory (address space) a run may use,
    /// in MiB; an allocation over it fails that run only.
    #[arg(long, value_name = "MIB")]
    max_memory_per_task: Option<u64>,
    /// Run this program as tasks (`warren submit --cmd`): a name looked up on
    /// PATH, an absolute path, or DIR/* for every program in DIR.
    /// Repeatable; adds to allowed_commands in warren.toml
    /// (WARREN_ALLOWED_COMMANDS=a,b). No shell unless sh or bash is named.
    #[arg(long, value_name = "PROGRAM")]
    allow_command: Vec<String>,
    /// Let program tasks set this environment variable (`warren submit --cmd
    /// --env NAME=VALUE`): a name, or a glob such as APP_*. Repeatable; adds
    /// to allowed_env. Variables that change how programs load or start
    /// (LD_*, PATH, BASH_ENV, PYTHON*, PERL*, NODE_OPTIONS, ...) are refused
    /// even when a glob names them.
    #[arg(long, value_name = "NAME")]
    allow_env: Vec<String>,
    /// Let program tasks run in this directory or below it (`--cwd`).
    /// Repeatable; adds to allowed_cwd. Without it, `--cwd` is refused.
    #[arg(long, value_name = "DIR")]
    allow_cwd: Vec<String>,
    /// Run programs as this user (a worker started as root): they cannot
    /// then read the worker's files or memory.
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// List the registered functions and exit.
    #[arg(long)]
    list_functions: bool,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: String,
}

// One runtime thread: the worker's own work is hand-offs (a delivery in, a
// start recorded, an outcome out), and on a multi-threaded runtime each one
// woke another thread: 70% of a worker's CPU was the kernel switching threads
// (perf). Tasks still run in parallel, on the blocking pool. Measured against
// the multi-threaded build in one run: -30% worker CPU, +16% no-op tasks/s.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let registry = stock::registry();
    if args.list_functions {
        for name in registry.names() {
            println!("{name}");
        }
        return Ok(());
    }
    warren_core::logging::init(
        warren_core::logging::Format::named(&args.log_format),
        "RUST_LOG",
        "info,lapin=off",
    );
    let overrides = warren_core::settings::flag_overrides(vec![
        ("amqp_url", args.amqp_url),
        ("redis_url", args.redis_url),
        ("namespace", args.namespace),
        ("concurrency", args.concurrency.map(|c| c.to_string())),
        ("metrics_addr", args.metrics_addr),
        (
            "drain_timeout_secs",
            args.drain_timeout.map(|s| s.to_string()),
        ),
        ("isolation", args.isolation),
        ("run_as", args.run_as),
        (
            "max_memory_per_task_mb",
            args.max_memory_per_task.map(|m| m.to_string()),
        ),
    ]);
    let mut settings = Settings::load(args.config.as_deref(), &overrides)?;
    settings.allowed_commands.extend(args.allow_command);
    settings.allowed_env.extend(args.allow_env);
    settings.allowed_cwd.extend(args.allow_cwd);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Worker::new(settings, registry)
        .queues(args.queues)
        .run_on(runtime)?;
    Ok(())
}

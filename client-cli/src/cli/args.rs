//! The command line: every command, option and help text of `warren`.
//!
//! Options mean the same anywhere on the line: `warren submit sleep 1
//! --no-pure` and `warren submit --no-pure sleep 1` are one command. Task
//! arguments that start with `-` are negative numbers (`-5`, `-1.5`), or come
//! after `--` (`warren submit identity -- --literal`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use warren_client::SubmitOptions;
use warren_core::timing::RetryPolicy;

/// warren: dask-style futures on RabbitMQ and Redis.
///
/// Submit tasks, build DAGs by passing futures (@KEY) as arguments, and gather
/// results. Workers run registered functions (stock: is_prime,
/// count_primes_less_than, add_them, goes_wrong, inc, sum, sleep, identity,
/// raise_panic, scale, byte_count).
///
/// Settings come from (later wins): defaults (local RabbitMQ and Redis, namespace
/// "warren"), ./warren.toml or --config, WARREN_* environment variables
/// (WARREN_AMQP_URL, WARREN_REDIS_URL, WARREN_NAMESPACE, WARREN_MAX_PAYLOAD_BYTES,
/// WARREN_REQUEST_TIMEOUT_SECS, ...), then flags.
///
/// Exit codes: 0 done; 1 a task failed or was cancelled; 2 bad input, an
/// unknown key or function, or a service that cannot be reached or does not
/// answer; 3 timed out (--timeout) while futures are still pending; 130
/// interrupted (Ctrl-C).
///
/// Examples:
///   warren up                       # a local scheduler and 2 workers, logs in files
///   N=$(warren submit count_primes_less_than 5000000)
///   warren result $N
///   warren map count_primes_less_than $(seq 1500000 1500008) | warren gather -
///   M1=$(warren submit count_primes_less_than 4000000)
///   M2=$(warren submit count_primes_less_than 4500000)
///   warren result $(warren submit add_them @$M1 @$M2)
///   warren down
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
pub struct Cli {
    /// A TOML settings file (default: ./warren.toml if present).
    #[arg(long, global = true, env = "WARREN_CONFIG", help_heading = CONNECTION)]
    pub config: Option<PathBuf>,
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f; a cluster's nodes separated by commas
    #[arg(long, global = true, help_heading = CONNECTION)]
    pub amqp_url: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379/
    #[arg(long, global = true, help_heading = CONNECTION)]
    pub redis_url: Option<String>,
    /// Namespace: separates users or test runs sharing one RabbitMQ and Redis.
    #[arg(long, global = true, help_heading = CONNECTION)]
    pub namespace: Option<String>,
    /// Print one JSON document per command (for scripts) instead of text;
    /// errors too, as {"error": {"kind": ..., "message": ...}}.
    #[arg(long, global = true, help_heading = CONNECTION)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The help heading of the options of program tasks.
const PROGRAMS: &str = "Program options (with --cmd)";

/// Flags of program tasks (`--cmd`).
#[derive(Debug, clap::Args)]
pub struct ProgramFlags {
    /// Run a program (a name on the worker's PATH, or an absolute path)
    /// instead of a function; the worker must allow it (--allow-command).
    /// Its value is its standard output. An argument that starts with @ is
    /// a future (@@ for a literal @).
    #[arg(long, help_heading = PROGRAMS)]
    pub cmd: bool,
    /// K=V added to the program's clean environment (repeatable); the worker
    /// must allow K (--allow-env), and never passes LD_*, PATH, BASH_ENV,
    /// PYTHON*, ... (variables that change how programs load or start).
    #[arg(long = "env", value_name = "K=V", help_heading = PROGRAMS)]
    pub env: Vec<String>,
    /// The program's working directory: it must exist on the worker, under
    /// a directory the worker allows (--allow-cwd).
    #[arg(long, value_name = "DIR", help_heading = PROGRAMS)]
    pub cwd: Option<String>,
    /// The value is the program's standard output parsed as JSON.
    #[arg(long, help_heading = PROGRAMS)]
    pub json_stdout: bool,
}

/// The help heading of the options every command takes.
const CONNECTION: &str = "Global options";

/// `warren`'s commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit FUNC(ARG...) and print the new future's key.
    ///
    /// Each ARG is a JSON value (5000000, "text", [1,2], {"a":1}); a bare word
    /// that is not JSON is a string; @KEY is the future with that key, and the
    /// task waits for it. FUNC must be served by a live worker (checked before
    /// sending) unless --detach or --allow-unserved.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:
  warren submit count_primes_less_than 5000000
  warren submit --no-pure --retries 2 --timeout 30 sleep 5
  warren submit add_them @$M1 @$M2          # waits for futures M1 and M2
  warren submit --delay 30s inc 1            # runs in 30 s (cancel it meanwhile)
  warren submit --at 2026-12-24T10:00:00Z inc 1
  warren submit --retries 3 --retry-delay 1s --retry-backoff 2 --retry-on ZeroDivisionError goes_wrong
  warren submit identity -- --not-an-option # arguments after -- are literal
  warren submit --cmd -- seq 1 100           # a program (on a worker with --allow-command seq)
  warren submit --cmd -- wc -l @$K           # its argument: future K's value"
    )]
    Submit {
        /// Registered function name (with --cmd: the program).
        func: String,
        /// Arguments: JSON, a bare word (a string), or @KEY (a future).
        /// With --cmd: the program's arguments as they are, or @KEY.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        /// Use this key instead of a computed one.
        #[arg(long, help_heading = TASK)]
        key: Option<String>,
        #[command(flatten)]
        task: TaskFlags,
        #[command(flatten)]
        program: ProgramFlags,
    },
    /// One task per ARG (FUNC(ARG)); print the keys, one per line, in order.
    ///
    /// With --cmd, one program task per VALUE: `warren map --cmd -- PROGRAM
    /// [ARG]... ::: VALUE...`, with {} in the arguments replaced by the value
    /// (as GNU parallel does; with no {}, the value is the last argument).
    #[command(after_help = "Examples:
  warren map count_primes_less_than $(seq 1500000 1500008) | warren gather -
  warren map --no-pure sleep 0.3 0.1 0.2 | warren gather --as-completed -
  warren map --cmd -- gzip -k {} ::: a.txt b.txt
  ls *.csv | warren map --cmd --each-line - -- wc -l {} | warren gather -")]
    Map {
        /// Registered function name (with --cmd: the program).
        func: String,
        /// One argument per task: JSON, a bare word, or @KEY. With --cmd:
        /// the program's arguments, then ::: and the values.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        /// With --cmd: take the values from the lines of FILE (- for stdin).
        #[arg(long, value_name = "FILE", help_heading = PROGRAMS)]
        each_line: Option<String>,
        #[command(flatten)]
        task: TaskFlags,
        #[command(flatten)]
        program: ProgramFlags,
    },
    /// Print what task KEY wrote (a program task, or a Python task's print):
    /// its standard output on stdout, its standard error on stderr (kept as
    /// long as its result).
    #[command(after_help = "Examples:
  warren logs $(warren submit --cmd -- ls -l /)
  warren logs funcs:noisy-3f2a...        # what a Python task printed")]
    Logs {
        /// The task's key.
        key: String,
    },
    /// Wait for KEY and print its value as JSON. A failed task prints its error
    /// type, message and traceback on stderr and exits 1.
    #[command(after_help = "Examples:
  warren result $N
  warren result --timeout 10 $N || echo \"exit $?\"   # 3: still pending
  warren result --raw $N > array.bin                 # a numpy array's buffer")]
    Result {
        /// The future's key.
        key: String,
        /// Give up after this many seconds (exit 3; the task runs on).
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// A value that is not JSON (a Python tuple, bytes, a numpy array,
        /// a pickled object): write its raw bytes (its frames: the bytes, the
        /// array's buffer, the pickle) to stdout instead of describing it,
        /// as they arrive (a value of any size, in a few MiB of memory). They
        /// are checked against the value's hash on the way: exit 1 at the end
        /// means what was written is not the value.
        #[arg(long)]
        raw: bool,
    },
    /// Wait for every KEY; print the values as JSON, one per line, in order.
    /// Exits 1 naming the first failed key.
    #[command(after_help = "Examples:
  warren gather $M1 $M2
  warren map inc 1 2 3 | warren gather -
  warren map --no-pure sleep 0.3 0.1 | warren gather --as-completed -
Ctrl-C stops waiting (not the tasks) and saves the pending keys in a file it names.")]
    Gather {
        /// Keys, or - to read them from stdin (one per line).
        #[arg(required = true)]
        keys: Vec<String>,
        /// Give up after this many seconds (exit 3; the tasks run on).
        #[arg(long, value_name = "SECS")]
        timeout: Option<f64>,
        /// Print "KEY VALUE" lines in the order tasks finish (dask's
        /// as_completed); failures go to stderr and make the exit code 1.
        #[arg(long)]
        as_completed: bool,
    },
    /// Wait until all KEYs (or, with --first, one of them) are final; print
    /// "KEY STATUS" for each one done, in the order they finished. Exits 3 if
    /// the timeout passes first.
    Wait {
        /// Keys, or - to read them from stdin.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Return as soon as one is final (dask's FIRST_COMPLETED).
        #[arg(long)]
        first: bool,
        /// Give up after this many seconds (exit 3).
        #[arg(long, value_name = "SECS")]
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
    /// Futures per state, and every queue: ready messages, consumers and, for
    /// a work queue, the runnable tasks waiting in its outbox.
    Info,
    /// A live view: futures per state and their rate, queues, workers with
    /// their running tasks, recent errors. Redraws every second until Ctrl-C.
    Top {
        /// Print one screen and exit.
        #[arg(long)]
        once: bool,
        /// Seconds between redraws.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        every: f64,
    },
    /// Print "KEY STATUS [DETAIL]" per key: pending (waiting, queued,
    /// processing), finished, error or cancelled; "KEY unknown" (and exit 2)
    /// for a key the namespace does not hold.
    Status {
        /// Keys, or - to read them from stdin.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Back to a clean state: every future cancelled, queues emptied, workers
    /// ready (dask's client.restart()).
    Restart,
    /// Start a local stack in the background: one scheduler and N workers of
    /// this namespace, each logging to a file (the binaries next to `warren`).
    #[command(after_help = "Examples:
  warren up                      # 2 workers, 1 slot each
  warren up --workers 4 --concurrency 2
  warren down")]
    Up {
        /// Worker processes.
        #[arg(long, default_value_t = 2, value_name = "N")]
        workers: usize,
        /// Task slots per worker.
        #[arg(long, default_value_t = 1, value_name = "N")]
        concurrency: usize,
        /// Where the logs and process ids go (default: $XDG_RUNTIME_DIR or
        /// /tmp, in warren-<namespace>/).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The namespace's dead letters (<ns>.dead): list, show, replay, purge.
    #[command(after_help = "Examples:
  warren dead list
  warren dead show 3f2a9c01be47
  warren dead replay 3f2a9c01be47     # back to its origin queue
  warren dead purge --all")]
    Dead {
        #[command(subcommand)]
        command: crate::cli::dead::DeadCommand,
    },
    /// Run FUNC(ARG...) every PERIOD (e.g. 30s, 5m, 1h) as a named
    /// periodic schedule: each tick runs once, as an ordinary future,
    /// whichever scheduler is alive, however many run.
    #[command(after_help = "Examples:
  warren every 5m --name refresh inc 1
  warren every 1h --name nightly-ish --missed skip count_primes_less_than 100000
  warren runs refresh                  # its latest runs, newest first")]
    Every {
        /// The period: 30s, 5m, 1h (at least 1s).
        #[arg(value_parser = duration_arg)]
        period: std::time::Duration,
        /// Registered function name.
        func: String,
        /// Arguments: JSON, or a bare word (a string).
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        #[command(flatten)]
        schedule: crate::cli::schedules::ScheduleFlags,
    },
    /// Run FUNC(ARG...) at the times of a cron expression (minute hour
    /// day-of-month month day-of-week, UTC) as a named periodic schedule.
    #[command(after_help = "Examples:
  warren cron '0 * * * *' --name hourly inc 1
  warren cron '*/15 9-17 * * 1-5' --name office-hours inc 1")]
    Cron {
        /// The cron expression, quoted: '0 * * * *'.
        expr: String,
        /// Registered function name.
        func: String,
        /// Arguments: JSON, or a bare word (a string).
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        #[command(flatten)]
        schedule: crate::cli::schedules::ScheduleFlags,
    },
    /// Periodic schedules: list, pause, resume, remove.
    #[command(after_help = "Examples:
  warren schedules list
  warren schedules pause refresh
  warren schedules remove refresh")]
    Schedules {
        #[command(subcommand)]
        command: crate::cli::schedules::SchedulesCommand,
    },
    /// The latest runs of a periodic schedule (up to 100), newest first:
    /// KEY STATUS per line, as `warren status` prints them.
    Runs {
        /// The schedule's name.
        name: String,
    },
    /// Global rate limits and concurrency keys, held across every scheduler
    /// and worker: set, list, remove.
    #[command(after_help = "Examples:
  warren limits set --func fetch --rate 50/s
  warren limits set --key 'tenant-*' --max-running 2
  warren limits list
  warren limits remove --func fetch")]
    Limits {
        #[command(subcommand)]
        command: crate::cli::limits::LimitsCommand,
    },
    /// The namespace key: make one, or say which one this machine holds.
    ///
    /// Processes that hold the key sign code and pickled values; Python
    /// workers started with --accept-code run and load only what it signed.
    /// Give the same key file to the clients and workers of a namespace
    /// (setting key_file, WARREN_KEY_FILE; default ~/.config/warren/key).
    #[command(after_help = "Examples:
  warren key new                          # ~/.config/warren/key, mode 0600
  warren key new --file /etc/warren/key   # then WARREN_KEY_FILE=/etc/warren/key
  warren key show")]
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The RabbitMQ rights and Redis ACL rule that confine a user to one
    /// namespace (a vhost of its own), printed as commands, or applied.
    #[command(after_help = "Examples:
  warren access team-a --user alice                  # print what a client of team-a needs
  warren access team-a --user svc-a --role worker --apply --password-file pw.txt
  warren access team-a --user svc-a --role scheduler --json")]
    Access(crate::cli::access::AccessArgs),
    /// Stop the local stack that `warren up` started for this namespace.
    Down {
        /// The directory given to `warren up --dir`.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `warren key`'s commands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new random key (mode 0600) to the key file.
    New {
        /// Where (default: setting key_file, else ~/.config/warren/key).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Replace an existing key (processes holding the old one must get
        /// it as previous_key_file while keys rotate).
        #[arg(long)]
        force: bool,
    },
    /// Print the key file and the id of the key in it (never the key).
    Show,
}

/// The help heading of the task options.
const TASK: &str = "Task options";

/// Options of each task, for `submit` and `map`.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = TASK)]
pub struct TaskFlags {
    /// Same FUNC and ARGs give the same key; resubmitting returns the existing
    /// future (the default, as dask's pure=True).
    #[arg(long, overrides_with = "no_pure")]
    pub pure: bool,
    /// Always create a new future, even for the same FUNC and ARGs.
    #[arg(long)]
    pub no_pure: bool,
    /// Run the task again up to N times if it fails (dask's retries=); the
    /// final error lists every attempt's error.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// Work queue: only workers started with --queues NAME run it (e.g. gpu).
    /// Default: `python` for a Python function (`module:function`), which
    /// Python workers serve, `default` for the others.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Time limit in seconds: past it the task fails with TimeoutError and its
    /// worker slot is free again.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Higher runs first among ready tasks of the same queue.
    #[arg(
        long,
        default_value_t = 0,
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub priority: i64,
    /// Run no sooner than this long from now (e.g. 30s, 1.5m, 2h, 250ms). The
    /// task waits in Redis, `pending (scheduled)`, and can be cancelled until
    /// then; whichever scheduler is alive starts it on time.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub delay: Option<std::time::Duration>,
    /// Run no sooner than this time, in RFC 3339 (e.g. 2026-12-24T10:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = at_arg)]
    pub at: Option<u64>,
    /// With --retries: wait this long before the first retry (e.g. 1s).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub retry_delay: Option<std::time::Duration>,
    /// With --retries: each further retry waits this many times longer
    /// (e.g. 2 for 1s, 2s, 4s...).
    #[arg(long, value_name = "FACTOR")]
    pub retry_backoff: Option<f64>,
    /// With --retries: no retry waits longer than this (default 10m).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub retry_max_delay: Option<std::time::Duration>,
    /// With --retries: wait a random part of each pause, so that tasks that
    /// failed together do not retry together.
    #[arg(long)]
    pub retry_jitter: bool,
    /// With --retries: retry only errors of this type (repeat for several,
    /// e.g. --retry-on ConnectionError --retry-on TimeoutError); any other
    /// error is final at once.
    #[arg(long, value_name = "TYPE")]
    pub retry_on: Vec<String>,
    /// A concurrency key (e.g. tenant-42): at most the limit `warren limits
    /// set --key` gives it run at once across the cluster; the others wait
    /// in Redis, in arrival order.
    #[arg(long, value_name = "KEY")]
    pub concurrency_key: Option<String>,
    /// Fire and forget: print the key(s) once RabbitMQ holds the submission,
    /// without waiting for the scheduler (nor checking FUNC). The task runs
    /// all the same.
    #[arg(long)]
    pub detach: bool,
    /// Submit even if no live worker serves FUNC now (one will come later).
    #[arg(long)]
    pub allow_unserved: bool,
}

impl TaskFlags {
    /// The library's options for these flags.
    pub fn options(&self, key: Option<String>) -> SubmitOptions {
        SubmitOptions {
            key,
            pure: !self.no_pure,
            retries: self.retries,
            queue: self.queue.clone(),
            timeout_secs: self.timeout,
            priority: self.priority,
            delay: self.delay,
            at_ms: self.at,
            retry: self.retry_policy(),
            concurrency_key: self.concurrency_key.clone(),
            detach: self.detach,
        }
    }

    /// The retry policy the --retry-* flags describe, if any is given.
    fn retry_policy(&self) -> Option<RetryPolicy> {
        let given = self.retry_delay.is_some()
            || self.retry_backoff.is_some()
            || self.retry_max_delay.is_some()
            || self.retry_jitter
            || !self.retry_on.is_empty();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let default = RetryPolicy::default();
        given.then(|| RetryPolicy {
            delay_ms: self.retry_delay.map_or(0, ms),
            backoff: self.retry_backoff.unwrap_or(default.backoff),
            max_delay_ms: self.retry_max_delay.map_or(default.max_delay_ms, ms),
            jitter: self.retry_jitter,
            on: self.retry_on.clone(),
        })
    }

    /// Whether FUNC must be checked against the live workers first.
    pub fn check_served(&self) -> bool {
        !self.detach && !self.allow_unserved
    }
}

fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    warren_core::timing::parse_duration(text)
}

fn at_arg(text: &str) -> Result<u64, String> {
    warren_core::timing::parse_at(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("warren").chain(line.iter().copied()))
    }

    fn submit(line: &[&str]) -> (String, Vec<String>, TaskFlags) {
        match parse(line).expect("parses").command {
            Command::Submit {
                func, args, task, ..
            } => (func, args, task),
            other => panic!("not a submit: {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_after_the_arguments_are_options() {
        let (func, args, task) = submit(&["submit", "sleep", "1", "--no-pure"]);
        assert_eq!((func.as_str(), args), ("sleep", vec!["1".to_string()]));
        assert!(task.no_pure);
        let (_, args, task) = submit(&["submit", "inc", "1", "--priority", "-3", "--retries", "2"]);
        assert_eq!(args, vec!["1"]);
        assert_eq!((task.priority, task.retries), (-3, 2));
        match parse(&["map", "inc", "1", "2", "3", "--no-pure"])
            .unwrap()
            .command
        {
            Command::Map { args, task, .. } => {
                assert_eq!(args, vec!["1", "2", "3"]);
                assert!(task.no_pure);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["gather", "k1", "k2", "--timeout", "5"])
            .unwrap()
            .command
        {
            Command::Gather { keys, timeout, .. } => {
                assert_eq!((keys.len(), timeout), (2, Some(5.0)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn global_options_work_after_the_command_too() {
        let cli = parse(&["status", "k", "--namespace", "other", "--json"]).unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("other"));
        assert!(cli.json);
    }

    #[test]
    fn negative_numbers_stay_arguments_and_double_dash_ends_options() {
        let (_, args, _) = submit(&["submit", "add_them", "-5", "-1.5"]);
        assert_eq!(args, vec!["-5", "-1.5"]);
        let (_, args, task) = submit(&["submit", "identity", "--", "--no-pure"]);
        assert_eq!(args, vec!["--no-pure"]);
        assert!(!task.no_pure);
    }

    #[test]
    fn help_anywhere_is_help_and_an_unknown_option_is_an_error() {
        let e = parse(&["submit", "inc", "1", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        let e = parse(&["submit", "inc", "1", "--no-such-flag"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn submit_help_separates_task_options_from_global_ones_and_shows_examples() {
        let mut cli = Cli::command();
        // Global options reach subcommands when the command is built.
        cli.build();
        let help = cli
            .find_subcommand_mut("submit")
            .expect("submit")
            .render_long_help()
            .to_string();
        let task = help.find("Task options:").expect("task heading");
        let global = help.find("Global options:").expect("global heading");
        let priority = help.find("--priority").expect("priority");
        let amqp = help.find("--amqp-url").expect("amqp");
        assert!(
            task < priority && priority < global && global < amqp,
            "{help}"
        );
        assert!(help.contains("Examples:"), "{help}");
        assert!(!help.contains("(default 0)"), "{help}");
    }
}

//! Settings shared by every warren binary.
//!
//! One type, loaded in one order by the scheduler, the workers and the CLI, so that
//! a value set once (in `warren.toml` or the environment) reaches every component:
//!
//! 1. built-in defaults (local RabbitMQ and Redis, namespace `warren`);
//! 2. a TOML file: `warren.toml` in the working directory if present, or the file
//!    named by `--config` / `WARREN_CONFIG` (then it must exist);
//! 3. `WARREN_*` environment variables, one per field, upper-cased:
//!    `WARREN_AMQP_URL`, `WARREN_REDIS_URL`, `WARREN_NAMESPACE`, `WARREN_CONCURRENCY`,
//!    `WARREN_PREFETCH`, `WARREN_RESULT_TTL_SECS`, `WARREN_MAX_PAYLOAD_BYTES`,
//!    `WARREN_MAX_MESSAGE_BYTES`,
//!    `WARREN_ALLOWED_FAILURES`, `WARREN_REDIS_TIMEOUT_SECS`, `WARREN_METRICS_ADDR`,
//!    `WARREN_QUEUE_TYPE`, `WARREN_REQUEST_TIMEOUT_SECS`, `WARREN_DRAIN_TIMEOUT_SECS`,
//!    and the rest of [`Settings::FIELDS`];
//! 4. command-line flags, passed in as overrides.
//!
//! Flat field names (not nested tables) keep the environment names obvious: the
//! `config` crate would otherwise need a double-underscore separator.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::topology::QueueType;

/// Every tunable of warren, with its default in [`Settings::default`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// RabbitMQ URL (`amqp://` or `amqps://`), including user, password and
    /// vhost; for a cluster, several nodes' URLs separated by commas (a comma
    /// in a password must be written `%2C`). Every process tries them in turn
    /// and moves to another node when its own goes away.
    pub amqp_url: String,
    /// Redis URL (`redis://`), including password and database if any;
    /// `redis+sentinel://` names the sentinels of a replicated primary,
    /// `redis+cluster://` some nodes of a Redis Cluster (see
    /// [`crate::store::primary`]).
    pub redis_url: String,
    /// Prefix of every queue, exchange and Redis key: several users or test runs can
    /// share one RabbitMQ and one Redis without seeing each other.
    pub namespace: String,
    /// Tasks a worker runs at once; 0 means one per CPU core.
    pub concurrency: usize,
    /// Unacknowledged work messages a worker holds; 0 means 16 per slot (at
    /// least 32), enough to keep short tasks flowing. Prefetched tasks that a
    /// dying worker never started do not count towards `allowed_failures`; set
    /// it to the concurrency for long tasks of uneven length, so that a worker
    /// never sits on tasks another one could start.
    pub prefetch: u16,
    /// Seconds a finished future's record and value are kept in Redis.
    pub result_ttl_secs: u64,
    /// Largest value warren carries, in bytes: a client's request (a task's
    /// arguments) and a task's result (a worker refuses a bigger one as the
    /// task's error `PayloadTooLarge`).
    pub max_payload_bytes: usize,
    /// Largest message warren publishes to RabbitMQ, in bytes: keep it at or
    /// below the broker's `max_message_size` (128 MiB on RabbitMQ 3.x, 16 MiB
    /// by default on 4.x, and warren's default), because the broker closes
    /// the channel of a bigger publish. A refusal teaches every process of
    /// the namespace the broker's real limit ([`crate::message_limit`]). A work message (a task with its dependencies' values inlined)
    /// that would be larger fails its task alone with `PayloadTooLarge`;
    /// batches of results and events are split to stay under it.
    pub max_message_bytes: usize,
    /// Workers that may die while running one task: when a task has been started
    /// this many times plus one and every run died with its worker, it is not
    /// started again and the future becomes `error: KilledWorker` (dask's
    /// `allowed-failures`). Only runs that started count, never prefetched
    /// messages a dead worker held.
    pub allowed_failures: u32,
    /// How long a single Redis command (a Lua script over a big batch) may take.
    pub redis_timeout_secs: u64,
    /// Where the scheduler or worker serves Prometheus metrics (`host:port`,
    /// path `/metrics`); empty serves none.
    pub metrics_addr: String,
    /// The RabbitMQ queue type of the task queues: `classic` (durable, one
    /// node; the lowest latency) or `quorum` (replicated over a RabbitMQ cluster).
    pub queue_type: QueueType,
    /// How long a client waits for RabbitMQ to confirm a request and for a
    /// scheduler to record it before it gives up with an error that says what
    /// to check (a stopped scheduler, a mistyped namespace, a broker alarm).
    /// The request itself is not withdrawn: once confirmed it stays in the
    /// submit queue until a scheduler takes it.
    pub request_timeout_secs: u64,
    /// How long a worker or scheduler stopped with SIGTERM (or a first
    /// Ctrl-C) may take to finish what it holds (a worker its running tasks,
    /// a scheduler its scripts and publishes in flight) before it exits
    /// anyway (what it held then runs again elsewhere).
    pub drain_timeout_secs: u64,
    /// Where a worker runs a task's function: `thread` (in the worker's own
    /// blocking pool, the cheapest) or `process` (a child process per run,
    /// so that a time limit, a cancel or a restart ends it for real, and a
    /// crash or exhausted memory ends that run only, never the worker).
    pub isolation: Isolation,
    /// With `isolation = "process"`, the address space a run may use, in MiB
    /// (`RLIMIT_AS`); 0 sets no limit.
    pub max_memory_per_task_mb: u64,
    /// Programs a worker runs as tasks (`--allow-command`): names looked up
    /// on its PATH, absolute paths, or `DIR/*`; none by default.
    // An empty list does not survive the defaults' trip through `config`.
    #[serde(default)]
    pub allowed_commands: Vec<String>,
    /// Environment variables a program task may set (`--allow-env`): names,
    /// or globs with `*`; none by default. Variables that change how
    /// programs load or start (`LD_*`, `PATH`, `BASH_ENV`, `PYTHON*`, ...)
    /// are refused even when a glob names them (see [`crate::allow`]).
    #[serde(default)]
    pub allowed_env: Vec<String>,
    /// Directories under which a program task may set its working directory
    /// (`--allow-cwd`); none by default, so `--cwd` is refused.
    #[serde(default)]
    pub allowed_cwd: Vec<String>,
    /// The user program tasks run as (`--run-as`), when the worker runs as
    /// root; empty runs them as the worker's own user.
    #[serde(default)]
    pub run_as: String,
    /// The namespace key (`warren key new`): processes that hold it sign
    /// code and pickled values, and workers that accept code verify them.
    /// Empty: `$XDG_CONFIG_HOME/warren/key` (`~/.config/warren/key`) if it
    /// exists, else no key; `none`: no key at all.
    #[serde(default)]
    pub key_file: String,
    /// A key still accepted while keys rotate (signatures of the previous
    /// `key_file`); empty: none.
    #[serde(default)]
    pub previous_key_file: String,
    /// Whether a Python worker runs functions sent as code and unpickles
    /// values, once a key holder signed them (`--accept-code`); it refuses
    /// to start so without a key.
    #[serde(default)]
    pub accept_code: bool,
    /// The most a program task may write to its standard output, in bytes
    /// (more is `OutputTooLarge`); also the most of its standard error kept.
    pub max_output_bytes: usize,
    /// Replicas that must hold a state change before a process acks the
    /// message behind it or answers a client (Redis `WAIT`): 0 on a single
    /// Redis; 1 (or more) with replicas, so that a change survives the
    /// primary's death and a replica's promotion.
    // Absent from older warren.toml files and settings dumps.
    #[serde(default)]
    pub redis_min_replicas: u32,
    /// Where values bigger than `inline_max_bytes` are kept, shared by every
    /// process of the namespace: `file:///DIR` (a directory, on one machine
    /// or a shared file system) or `s3://BUCKET/PREFIX` (any S3-compatible
    /// server, see the `s3_*` settings). Empty keeps every value in Redis.
    #[serde(default)]
    pub store_url: String,
    /// Values up to this size (bytes) stay in Redis; bigger ones go to the
    /// store of `store_url`, when one is set.
    #[serde(default = "default_inline_max_bytes")]
    pub inline_max_bytes: usize,
    /// Bytes of values a process keeps on its machine's disk beside an S3
    /// store, so that a task reading a value written or read there before
    /// does not fetch it again ([`crate::store::cache`]); 0 (the default)
    /// keeps none. A directory store is not cached: it is a disk already.
    #[serde(default)]
    pub cache_bytes: u64,
    /// The directory of that cache, shared by the processes of the
    /// machine's user; empty: `warren-<uid>/cache` under the temporary
    /// directory.
    #[serde(default)]
    pub cache_dir: String,
    /// The S3 server of an `s3://` store, as `https://host[:port]` (or
    /// `http://` on a private network); empty: `AWS_ENDPOINT_URL`, else AWS.
    #[serde(default)]
    pub s3_endpoint: String,
    /// The S3 region; empty: `AWS_REGION`, else `us-east-1`.
    #[serde(default)]
    pub s3_region: String,
    /// The S3 access key's id; empty: `AWS_ACCESS_KEY_ID`, else the
    /// environment's other credentials (an instance role).
    #[serde(default)]
    pub s3_access_key_id: String,
    /// The S3 access key's secret; empty: `AWS_SECRET_ACCESS_KEY`. A worker
    /// hides it from the programs it runs, as it does URL passwords.
    #[serde(default)]
    pub s3_secret_access_key: String,
    /// The password of the sentinels of a `redis+sentinel://` URL
    /// (`requirepass` in their sentinel.conf); empty: asked without. A
    /// worker hides it from the programs it runs.
    #[serde(default)]
    pub redis_sentinel_password: String,
    /// The PEM certificates of the CA that signed the RabbitMQ and Redis
    /// servers' certificates, for `amqps://` and `rediss://` URLs; empty:
    /// the system's trust store (see [`crate::tls`]).
    #[serde(default)]
    pub tls_ca_file: String,
    /// This process's certificate (PEM), for servers that ask for one; with
    /// no user in an `amqps://` URL, RabbitMQ's EXTERNAL login. Needs
    /// `tls_key_file`.
    #[serde(default)]
    pub tls_cert_file: String,
    /// The private key (PEM) of `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: String,
}

// URL passwords and the S3 secret never reach a log line or a panic message.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.clone();
        shown.amqp_url = crate::amqp::node_urls(&self.amqp_url)
            .into_iter()
            .map(redact_url)
            .collect::<Vec<_>>()
            .join(",");
        shown.redis_url = redact_url(&self.redis_url);
        for secret in [
            &mut shown.s3_secret_access_key,
            &mut shown.redis_sentinel_password,
        ] {
            if !secret.is_empty() {
                *secret = "<hidden>".into();
            }
        }
        match serde_json::to_string(&shown) {
            Ok(json) => write!(f, "Settings {json}"),
            Err(_) => f.write_str("Settings { .. }"),
        }
    }
}

fn default_inline_max_bytes() -> usize {
    64 * 1024
}

/// Where a worker runs a task's function ([`Settings::isolation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// On the worker's blocking pool: a function that never polls
    /// `is_cancelled()` runs on after its time limit, its result dropped.
    Thread,
    /// In a child process per run, ended with SIGTERM then SIGKILL.
    Process,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            redis_url: "redis://127.0.0.1:6379/".into(),
            namespace: "warren".into(),
            concurrency: 0,
            prefetch: 0,
            result_ttl_secs: 24 * 3600,
            max_payload_bytes: 8 * 1024 * 1024,
            max_message_bytes: 16 * 1024 * 1024,
            allowed_failures: 3,
            redis_timeout_secs: 60,
            metrics_addr: String::new(),
            queue_type: QueueType::Classic,
            request_timeout_secs: 30,
            drain_timeout_secs: 30,
            isolation: Isolation::Thread,
            max_memory_per_task_mb: 0,
            allowed_commands: Vec::new(),
            allowed_env: Vec::new(),
            allowed_cwd: Vec::new(),
            run_as: String::new(),
            key_file: String::new(),
            previous_key_file: String::new(),
            accept_code: false,
            max_output_bytes: 1024 * 1024,
            redis_min_replicas: 0,
            store_url: String::new(),
            inline_max_bytes: default_inline_max_bytes(),
            cache_bytes: 0,
            cache_dir: String::new(),
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            redis_sentinel_password: String::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

impl Settings {
    /// The setting names, as in `warren.toml`; `WARREN_<NAME>` sets each.
    pub const FIELDS: [&'static str; 37] = [
        "amqp_url",
        "redis_url",
        "namespace",
        "concurrency",
        "prefetch",
        "result_ttl_secs",
        "max_payload_bytes",
        "max_message_bytes",
        "allowed_failures",
        "redis_timeout_secs",
        "metrics_addr",
        "queue_type",
        "request_timeout_secs",
        "drain_timeout_secs",
        "isolation",
        "max_memory_per_task_mb",
        "allowed_commands",
        "allowed_env",
        "allowed_cwd",
        "run_as",
        "key_file",
        "previous_key_file",
        "accept_code",
        "max_output_bytes",
        "redis_min_replicas",
        "store_url",
        "inline_max_bytes",
        "cache_bytes",
        "cache_dir",
        "s3_endpoint",
        "s3_region",
        "s3_access_key_id",
        "s3_secret_access_key",
        "redis_sentinel_password",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
    ];

    /// The settings that are lists (comma-separated when given as text).
    pub const LISTS: [&'static str; 3] = ["allowed_commands", "allowed_env", "allowed_cwd"];

    /// Loads defaults, then the TOML file, then `WARREN_*` variables, then `overrides`
    /// (flag name without dashes, value as text).
    ///
    /// `config_file` is the explicit file (`--config`); when `None`, `WARREN_CONFIG`
    /// or an optional `warren.toml` in the working directory is used.
    pub fn load(config_file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Self> {
        let defaults = config::Config::try_from(&Settings::default()).map_err(settings_err)?;
        let mut builder = config::Config::builder().add_source(defaults);

        let env_file = std::env::var_os("WARREN_CONFIG");
        match config_file
            .map(Path::to_path_buf)
            .or(env_file.map(Into::into))
        {
            Some(path) => {
                if !path.exists() {
                    return Err(Error::Settings(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                builder = builder.add_source(config::File::from(path).required(true));
            }
            None => {
                builder =
                    builder.add_source(config::File::with_name("warren.toml").required(false));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("WARREN")
                .try_parsing(true)
                // WARREN_ALLOWED_COMMANDS=seq,wc,/opt/tools/*
                .list_separator(",")
                .with_list_parse_key(Self::LISTS[0])
                .with_list_parse_key(Self::LISTS[1])
                .with_list_parse_key(Self::LISTS[2])
                // Only variables that name a setting: WARREN_CONFIG names the file,
                // WARREN_LOG the log filter, and tools may set their own.
                .source(Some(
                    std::env::vars()
                        .filter(|(k, _)| {
                            k.strip_prefix("WARREN_").is_some_and(|f| {
                                Self::FIELDS.contains(&f.to_ascii_lowercase().as_str())
                            })
                        })
                        .collect(),
                )),
        );
        for (name, value) in overrides {
            let name = name.replace('-', "_");
            builder = if Self::LISTS.contains(&name.as_str()) {
                // As in WARREN_ALLOWED_COMMANDS: a list given as text is
                // comma-separated.
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                builder.set_override(name, items)
            } else {
                builder.set_override(name, value.clone())
            }
            .map_err(settings_err)?;
        }
        let mut settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(settings_err)?;
        // Read now, not when the store opens: a worker hides secrets in its
        // environment once its settings are loaded.
        settings.fill_from_aws(|name| std::env::var(name).ok());
        settings.validate()?;
        Ok(settings)
    }

    /// Fills each empty S3 setting from the standard AWS variable, as `var`
    /// gives them, so that a machine set up for the `aws` CLI needs no more.
    pub fn fill_from_aws(&mut self, var: impl Fn(&str) -> Option<String>) {
        for (slot, name) in [
            (&mut self.s3_endpoint, "AWS_ENDPOINT_URL"),
            (&mut self.s3_region, "AWS_REGION"),
            (&mut self.s3_access_key_id, "AWS_ACCESS_KEY_ID"),
            (&mut self.s3_secret_access_key, "AWS_SECRET_ACCESS_KEY"),
        ] {
            if slot.is_empty() {
                *slot = var(name).unwrap_or_default();
            }
        }
    }

    /// Checks values that would otherwise fail far from where they were set.
    pub fn validate(&self) -> Result<()> {
        let ns = &self.namespace;
        if ns.is_empty()
            || ns.len() > 64
            || !ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Settings(format!(
                "namespace {ns:?} must be 1-64 characters of letters, digits, '-' or '_'"
            )));
        }
        let nodes = crate::amqp::node_urls(&self.amqp_url);
        if nodes.is_empty() {
            return Err(Error::Settings("amqp_url is empty".into()));
        }
        for url in nodes {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return Err(Error::Settings(format!(
                    "amqp_url {} must start with amqp:// or amqps:// (several nodes are separated by commas)",
                    redact_url(url)
                )));
            }
        }
        if !crate::store::primary::known_scheme(&self.redis_url) {
            return Err(Error::Settings(format!(
                "redis_url {} must start with redis://, redis+sentinel:// or redis+cluster:// (rediss... for TLS)",
                redact_url(&self.redis_url)
            )));
        }
        crate::store::primary::Target::parse(&self.redis_url, &self.namespace)?;
        if self.max_memory_per_task_mb > 0 && self.isolation == Isolation::Thread {
            return Err(Error::Settings(format!(
                "max_memory_per_task_mb ({}) needs isolation = \"process\" (--isolation process): a run in a thread shares the worker's memory",
                self.max_memory_per_task_mb
            )));
        }
        if self.max_message_bytes < self.max_payload_bytes {
            return Err(Error::Settings(format!(
                "max_message_bytes ({}) must be at least max_payload_bytes ({}): a message carries a whole value",
                self.max_message_bytes, self.max_payload_bytes
            )));
        }
        crate::store::objects::Location::parse(&self.store_url)?;
        Ok(())
    }

    /// The namespace keyring these settings name, if any (see
    /// [`crate::signing::load`]).
    pub fn keyring(&self) -> Result<Option<crate::signing::Keyring>> {
        crate::signing::load(&self.key_file, &self.previous_key_file)
            .map_err(|e| Error::Settings(e.to_string()))
    }

    /// Worker concurrency with 0 resolved to the number of CPU cores.
    pub fn effective_concurrency(&self) -> usize {
        if self.concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.concurrency
        }
    }

    /// Worker prefetch with 0 resolved to 16 per slot, at least 32: measured
    /// (BENCHMARKS.md), a window of 2 held no-op throughput near 1,000 tasks/s
    /// because every slot waited a confirm round trip for its next message.
    pub fn effective_prefetch(&self) -> u16 {
        if self.prefetch == 0 {
            u16::try_from(self.effective_concurrency().saturating_mul(16).max(32))
                .unwrap_or(u16::MAX)
        } else {
            self.prefetch
        }
    }
}

/// The command-line flags that were given, as overrides for [`Settings::load`]:
/// every binary turns its optional flags into settings the same way.
pub fn flag_overrides(flags: Vec<(&'static str, Option<String>)>) -> Vec<(&'static str, String)> {
    flags
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
        .collect()
}

fn settings_err(e: config::ConfigError) -> Error {
    Error::Settings(e.to_string())
}

/// A URL with its password replaced by `***`, safe to print in errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_but_keeps_user_and_host() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
    }

    #[test]
    fn overrides_win_over_defaults_and_bad_namespace_is_named() {
        let s = Settings::load(None, &[("namespace", "team-a".into())]).unwrap();
        assert_eq!(s.namespace, "team-a");
        let err = Settings::load(None, &[("namespace", "a b".into())]).unwrap_err();
        assert!(err.to_string().contains("\"a b\""), "{err}");
    }

    #[test]
    fn field_list_matches_the_struct() {
        let v = serde_json::to_value(Settings::default()).unwrap();
        let mut names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut fields = Settings::FIELDS.to_vec();
        names.sort();
        fields.sort();
        assert_eq!(names, fields);
    }

    #[test]
    fn only_given_flags_override() {
        let o = flag_overrides(vec![("namespace", Some("a".into())), ("amqp_url", None)]);
        assert_eq!(o, vec![("namespace", "a".to_string())]);
    }

    #[test]
    fn a_list_given_as_text_is_comma_separated() {
        let s = Settings::load(
            None,
            &[("allowed_commands", "echo, /usr/bin/*,".to_string())],
        )
        .unwrap();
        assert_eq!(s.allowed_commands, ["echo", "/usr/bin/*"]);
        assert!(
            Settings::load(None, &[])
                .unwrap()
                .allowed_commands
                .is_empty()
        );
    }

    #[test]
    fn numbers_parse_from_text_overrides() {
        let s = Settings::load(None, &[("concurrency", "3".into())]).unwrap();
        assert_eq!(s.effective_concurrency(), 3);
        assert_eq!(s.effective_prefetch(), 48);
        let one = Settings::load(None, &[("concurrency", "1".into())]).unwrap();
        assert_eq!(one.effective_prefetch(), 32);
    }

    #[test]
    fn isolation_parses_and_a_bad_one_is_named() {
        let s = Settings::load(None, &[("isolation", "process".into())]).unwrap();
        assert_eq!(s.isolation, Isolation::Process);
        assert_eq!(Settings::default().isolation, Isolation::Thread);
        let err = Settings::load(None, &[("isolation", "container".into())]).unwrap_err();
        assert!(err.to_string().contains("container"), "{err}");
    }

    #[test]
    fn a_memory_cap_without_process_isolation_is_refused_naming_both() {
        let capped = |isolation: &str| {
            Settings::load(
                None,
                &[
                    ("isolation", isolation.into()),
                    ("max_memory_per_task_mb", "512".into()),
                ],
            )
        };
        let err = capped("thread").unwrap_err().to_string();
        assert!(
            err.contains("max_memory_per_task_mb") && err.contains("--isolation process"),
            "{err}"
        );
        assert_eq!(capped("process").unwrap().max_memory_per_task_mb, 512);
    }

    #[test]
    fn a_store_url_is_a_directory_url_and_a_bad_one_is_named() {
        let s = Settings::load(None, &[("store_url", "file:///var/lib/warren".into())]).unwrap();
        assert_eq!(s.store_url, "file:///var/lib/warren");
        assert_eq!(s.inline_max_bytes, 64 * 1024);
        for bad in [
            "/var/lib/warren",
            "file://relative/dir",
            "ftp://x/y",
            "s3://No",
        ] {
            let err = Settings::load(None, &[("store_url", bad.into())]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn empty_s3_settings_take_the_aws_variables_and_set_ones_win() {
        let mut s = Settings {
            s3_region: "garage".into(),
            ..Settings::default()
        };
        s.fill_from_aws(|name| Some(format!("from {name}")));
        assert_eq!(s.s3_endpoint, "from AWS_ENDPOINT_URL");
        assert_eq!(s.s3_region, "garage");
        assert_eq!(s.s3_access_key_id, "from AWS_ACCESS_KEY_ID");
        assert_eq!(s.s3_secret_access_key, "from AWS_SECRET_ACCESS_KEY");
        let mut none = Settings::default();
        none.fill_from_aws(|_| None);
        assert_eq!(none, Settings::default());
    }

    #[test]
    fn queue_type_parses_and_a_bad_one_is_named() {
        let s = Settings::load(None, &[("queue_type", "quorum".into())]).unwrap();
        assert_eq!(s.queue_type, QueueType::Quorum);
        assert_eq!(Settings::default().queue_type, QueueType::Classic);
        let err = Settings::load(None, &[("queue_type", "lazy".into())]).unwrap_err();
        assert!(err.to_string().contains("lazy"), "{err}");
    }
}

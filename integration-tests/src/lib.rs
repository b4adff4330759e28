//! A test harness: a real warren cluster per test.
//!
//! [`Cluster::start`] picks a fresh namespace (so tests share one RabbitMQ and
//! one Redis without seeing each other), spawns a real `warren-scheduler` and
//! real `warren-worker` processes from the build's own binaries, and cleans the
//! namespace's queues and keys up at the end. Nothing is mocked: the services are
//! the ones on 127.0.0.1 (or `WARREN_AMQP_URL` / `WARREN_REDIS_URL`).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use warren_client::Client;
use warren_core::store::Store;
use warren_core::topology::Topology;
use warren_core::{Settings, amqp};

mod rabbit;
pub use rabbit::{PrivateRabbit, free_port};

mod persistent_redis;
pub use persistent_redis::PersistentRedis;

pub mod dag;
pub mod netns;
pub mod redis_cluster;
pub mod sentinel;
pub mod tls;

/// The directory holding the build's binaries (`target/<profile>`), or
/// `WARREN_BIN_DIR` (benchmarks run another commit's binaries that way).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WARREN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // A test runs from target/<profile>/deps/<test>-<hash>; a benchmark
    // binary from target/<profile> itself.
    let exe_dir = exe.parent().expect("executable dir").to_path_buf();
    let dir = if exe_dir.join("warren-scheduler").exists() {
        exe_dir
    } else {
        exe_dir.parent().expect("target dir").to_path_buf()
    };
    let needed = [
        "warren-scheduler",
        "warren-worker",
        "warren",
        "warren-test-worker",
    ];
    if needed.iter().any(|b| !dir.join(b).exists()) {
        let release = dir.ends_with("release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build --bins");
        assert!(status.success(), "cargo build --bins failed");
    }
    dir
}

/// Sends `sig` (`-STOP`, `-CONT`, `-TERM`, ...) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// SIGTERMs `child` and waits up to `within` for it to exit; its status, or
/// `None` (then it is killed).
pub fn terminate(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    signal(child.id(), "-TERM");
    let status = exit_within(child, within);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

/// Waits up to `within` for `child` to exit; its status, or `None` if it
/// still runs.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The numbers the test worker's `count_run` appended to `log`, one per run.
pub fn run_log(log: &std::path::Path) -> Vec<i64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Path of one of warren's binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The settings of a fresh namespace on the local services.
pub fn fresh_settings(prefix: &str) -> Settings {
    let ns = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    Settings::load(None, &[("namespace", ns), ("key_file", NO_KEY.into())]).expect("settings")
}

/// A store on the test Redis (127.0.0.1:6379, or `WARREN_REDIS_URL`) in a
/// namespace of its own, `<prefix>-<uuid>`, for tests of the scripts
/// themselves, with no scheduler or worker.
pub async fn scratch_store(prefix: &str) -> Store {
    let settings = Settings {
        namespace: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        redis_url: std::env::var("WARREN_REDIS_URL")
            .unwrap_or_else(|_| Settings::default().redis_url),
        ..Settings::default()
    };
    Store::connect(&settings)
        .await
        .expect("these tests need Redis on 127.0.0.1:6379")
}

/// A path in the temporary directory that nothing uses yet, for a log a
/// test's tasks write (`warren-<name>-<uuid>`).
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("warren-{name}-{}", uuid::Uuid::new_v4().simple()))
}

/// The tests run without a namespace key unless a test gives one: a key in
/// the machine's default place (`~/.config/warren/key`) must not change what
/// they see. Every process a test starts gets it too.
pub const NO_KEY: &str = warren_core::signing::NO_KEY;

/// How to build a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Worker processes.
    pub workers: usize,
    /// Task slots per worker.
    pub concurrency: usize,
    /// Scheduler processes (more than one share the work).
    pub schedulers: usize,
    /// Run `warren-test-worker` (the stock functions plus fault helpers such
    /// as `crash`) instead of the stock `warren-worker`.
    pub test_worker: bool,
    /// Extra `WARREN_*` settings for every process, and for the cluster's own
    /// settings (so clients agree with the processes).
    pub env: Vec<(String, String)>,
    /// Extra flags for the (first) scheduler.
    pub scheduler_args: Vec<String>,
    /// Network namespaces (see [`netns::Hosts`]) to spread the processes
    /// over: the first scheduler and worker 0 on the first, scheduler `j`
    /// and worker `j` on host `j` modulo their number. Empty: this machine.
    pub hosts: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            concurrency: 1,
            schedulers: 1,
            test_worker: false,
            env: Vec::new(),
            scheduler_args: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

/// A scheduler and workers on a namespace of their own.
pub struct Cluster {
    /// The namespace's settings (for clients and the CLI).
    pub settings: Settings,
    options: ClusterOptions,
    scheduler: Option<Child>,
    extra_schedulers: Vec<Child>,
    workers: Vec<Child>,
}

impl Cluster {
    /// Starts one scheduler and `workers` workers of `concurrency` slots each.
    pub async fn start(workers: usize, concurrency: usize) -> Cluster {
        Self::start_with(ClusterOptions {
            workers,
            concurrency,
            ..Default::default()
        })
        .await
    }

    /// Starts a cluster as `options` say.
    pub async fn start_with(options: ClusterOptions) -> Cluster {
        let ns = fresh_settings("it").namespace;
        let mut overrides: Vec<(&str, String)> =
            vec![("namespace", ns), ("key_file", NO_KEY.into())];
        for (k, v) in &options.env {
            let field = k.strip_prefix("WARREN_").unwrap_or(k);
            if let Some(f) = Settings::FIELDS
                .iter()
                .find(|f| f.eq_ignore_ascii_case(field))
            {
                overrides.push((f, v.clone()));
            }
        }
        let settings = Settings::load(None, &overrides).expect("settings");
        let mut c = Cluster {
            settings,
            options: options.clone(),
            scheduler: None,
            extra_schedulers: Vec::new(),
            workers: Vec::new(),
        };
        c.start_scheduler();
        for j in 1..options.schedulers {
            let extra = c.spawn("warren-scheduler", &[], j);
            c.extra_schedulers.push(extra);
        }
        for _ in 0..options.workers {
            c.start_worker(options.concurrency);
        }
        c.wait_for_workers(options.workers as u32).await;
        c
    }

    /// Starts binary `name` on the host of `slot` (see [`ClusterOptions::hosts`]).
    fn spawn(&self, name: &str, args: &[String], slot: usize) -> Child {
        let hosts = &self.options.hosts;
        let mut cmd = if hosts.is_empty() {
            Command::new(bin(name))
        } else {
            // `ip netns exec` execs the binary itself: the child's pid is the
            // binary's, so killing the child kills it.
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &hosts[slot % hosts.len()]])
                .arg(bin(name));
            cmd
        };
        cmd.args(args)
            .env("WARREN_KEY_FILE", NO_KEY)
            .envs(
                self.options
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .env("WARREN_NAMESPACE", &self.settings.namespace)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error,lapin=off".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"))
    }

    /// Stops giving `name` to the processes started from now on (and to
    /// the CLI): a setting taken back, as an operator does between restarts.
    pub fn remove_env(&mut self, name: &str) {
        self.options.env.retain(|(k, _)| k != name);
    }

    /// Starts (another) scheduler, killing the first one if it runs.
    pub fn start_scheduler(&mut self) {
        let child = self.spawn("warren-scheduler", &self.options.scheduler_args.clone(), 0);
        if let Some(mut old) = self.scheduler.replace(child) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    fn worker_binary(&self) -> &'static str {
        if self.options.test_worker {
            "warren-test-worker"
        } else {
            "warren-worker"
        }
    }

    /// Starts one more worker.
    pub fn start_worker(&mut self, concurrency: usize) {
        let child = self.spawn(
            self.worker_binary(),
            &["--concurrency".into(), concurrency.to_string()],
            self.workers.len(),
        );
        self.workers.push(child);
    }

    /// Starts one more worker with extra flags (e.g. `--queues gpu`).
    pub fn start_worker_with(&mut self, concurrency: usize, extra: &[&str]) {
        let mut args = vec!["--concurrency".to_string(), concurrency.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = self.spawn(self.worker_binary(), &args, self.workers.len());
        self.workers.push(child);
    }

    /// Number of worker processes started (alive or not).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// `kill -9` worker `i` and start a new one in its place.
    pub fn kill_and_replace_worker(&mut self, i: usize) {
        let _ = self.workers[i].kill();
        let _ = self.workers[i].wait();
        let args = ["--concurrency".into(), self.options.concurrency.to_string()];
        self.workers[i] = self.spawn(self.worker_binary(), &args, i);
    }

    /// SIGTERM worker `i` (a drain), wait up to `within` for it to exit, and
    /// start a new one in its place; its exit status (`None`: still running,
    /// then killed).
    pub fn terminate_and_replace_worker(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let status = terminate(&mut self.workers[i], within);
        let args = ["--concurrency".into(), self.options.concurrency.to_string()];
        self.workers[i] = self.spawn(self.worker_binary(), &args, i);
        status
    }

    /// SIGTERM the first scheduler (a drain), wait up to `within` for it to
    /// exit, and start a new one; its exit status (`None`: still running,
    /// then killed).
    pub fn terminate_and_replace_scheduler(
        &mut self,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let status = self.scheduler.as_mut().and_then(|c| terminate(c, within));
        self.start_scheduler();
        status
    }

    /// SIGTERM the first scheduler (a drain) and wait up to `within` for it
    /// to exit, leaving none in its place; its exit status.
    pub fn terminate_scheduler(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut old = self.scheduler.take()?;
        terminate(&mut old, within)
    }

    /// `kill -9` the first scheduler, leaving none of its own in its place.
    pub fn stop_scheduler(&mut self) {
        if let Some(mut old) = self.scheduler.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// `kill -9` the first scheduler and start a new one in its place.
    pub fn kill_and_replace_scheduler(&mut self) {
        self.start_scheduler();
    }

    /// Waits for worker `i` to exit by itself (e.g. after a crashing task).
    pub fn wait_for_worker_exit(&mut self, i: usize, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if !self.worker_alive(i) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERMs worker `i` and waits up to `within` for it to exit; its
    /// status, or `None` (then it is killed).
    pub fn terminate_worker(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        terminate(&mut self.workers[i], within)
    }

    /// Waits for worker `i` to exit by itself; its exit status, or `None`
    /// if it still runs after `within`.
    pub fn worker_exit_status(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        exit_within(&mut self.workers[i], within)
    }

    /// The scheduler's process id (benchmarks read its memory in /proc).
    pub fn scheduler_pid(&self) -> Option<u32> {
        self.scheduler.as_ref().map(Child::id)
    }

    /// The process ids of the scheduler(s) and workers started.
    pub fn pids(&self) -> Vec<u32> {
        self.scheduler
            .iter()
            .chain(&self.extra_schedulers)
            .chain(&self.workers)
            .map(Child::id)
            .collect()
    }

    /// Whether worker `i` is still running.
    pub fn worker_alive(&mut self, i: usize) -> bool {
        matches!(self.workers[i].try_wait(), Ok(None))
    }

    /// Waits until `n` workers consume the default queue.
    pub async fn wait_for_workers(&self, n: u32) {
        let conn = amqp::connect(&self.settings, "warren-tests")
            .await
            .expect("RabbitMQ");
        let queue = self.topology().work_queue("default");
        for _ in 0..300 {
            if amqp::queue_stats(&conn, &queue)
                .await
                .is_some_and(|(_, consumers)| consumers >= n)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} workers did not start within 30 s");
    }

    /// The namespace's topology.
    pub fn topology(&self) -> Topology {
        Topology::from_settings(&self.settings)
    }

    /// A client on the namespace.
    pub async fn client(&self) -> Client {
        Client::connect(self.settings.clone())
            .await
            .expect("client connects")
    }

    /// Runs the `warren` CLI on the namespace.
    pub fn warren(&self, args: &[&str]) -> Output {
        self.warren_with_stdin(args, "")
    }

    /// Runs the `warren` CLI with `stdin`.
    pub fn warren_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        // The cluster's own settings (a private Redis, say) reach the CLI too.
        let env: Vec<(&str, &str)> = self
            .options
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_cli(&self.settings.namespace, args, stdin, &env)
    }

    /// Messages ready in the queue `name`.
    pub async fn queue_depth(&self, name: &str) -> u32 {
        self.queue_counts(name).await.0
    }

    /// Messages ready in the queue `name`, and its consumers (0, 0 if it
    /// does not exist).
    pub async fn queue_counts(&self, name: &str) -> (u32, u32) {
        let conn = amqp::connect(&self.settings, "warren-tests")
            .await
            .expect("RabbitMQ");
        amqp::queue_stats(&conn, name).await.unwrap_or((0, 0))
    }

    /// Stops the processes and deletes the namespace's queues and Redis keys.
    pub async fn shutdown(mut self) {
        self.kill_all();
        cleanup(&self.settings).await;
    }

    fn kill_all(&mut self) {
        let extra: Vec<Child> = self.extra_schedulers.drain(..).collect();
        let workers: Vec<Child> = self.workers.drain(..).collect();
        for mut c in self
            .scheduler
            .take()
            .into_iter()
            .chain(extra)
            .chain(workers)
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    /// A test that panicked never reached `shutdown`: still remove its
    /// processes, queues and keys, on a runtime of its own.
    fn drop(&mut self) {
        if self.scheduler.is_none() && self.workers.is_empty() && self.extra_schedulers.is_empty() {
            return;
        }
        self.kill_all();
        let settings = self.settings.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(cleanup(&settings));
            }
        })
        .join();
    }
}

/// Deletes a namespace's queues and Redis keys.
pub async fn cleanup(settings: &Settings) {
    let store = Store::connect(settings).await.ok();
    let mut work_queues = vec!["default".to_string()];
    if let Some(store) = &store {
        work_queues = store.work_queues().await.unwrap_or(work_queues);
    }
    if let Ok(conn) = amqp::connect(settings, "warren-tests-cleanup").await {
        let topo = Topology::from_settings(settings);
        let refs: Vec<&str> = work_queues.iter().map(String::as_str).collect();
        for q in topo.queues(&refs) {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .queue_delete(q.name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for ex in topo.exchanges() {
            if let Ok(ch) = conn.create_channel().await {
                let _ = ch
                    .exchange_delete(ex.name.as_str().into(), Default::default())
                    .await;
            }
        }
    }
    if let Some(store) = store {
        let _ = store.wipe().await;
    }
}

/// Runs the `warren` CLI with a namespace, stdin and extra environment.
pub fn run_cli(namespace: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin("warren"))
        .args(args)
        .env("WARREN_KEY_FILE", NO_KEY)
        .env("WARREN_NAMESPACE", namespace)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning warren");
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("warren output")
}

/// Runs `rabbitmqctl` with `args`, asserting it succeeded, and returns its
/// stdout (tests that create users, restart the broker or read its state).
pub fn rabbitmqctl(args: &[&str]) -> String {
    run_ok(Command::new("rabbitmqctl").args(args))
}

/// Runs a server's tool (`rabbitmqctl`, `openssl`, ...), asserting it
/// succeeded, naming it and its arguments with its stderr if not; returns
/// its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{:?}", cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e} (is it installed?)"));
    assert!(
        out.status.success(),
        "{shown}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout of a CLI run as text, asserting it succeeded.
pub fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "warren failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number of primes below `m`, by a sieve of Eratosthenes: an independent
/// check of the workers' naive trial division.
pub fn primes_below(m: i64) -> i64 {
    let m = m.max(0) as usize;
    if m < 3 {
        return 0;
    }
    let mut composite = vec![false; m];
    let mut count = 0;
    for i in 2..m {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < m {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    #[test]
    fn sieve_counts_known_values() {
        assert_eq!(super::primes_below(10), 4);
        assert_eq!(super::primes_below(100), 25);
        assert_eq!(super::primes_below(1_000_000), 78_498);
    }
}

//! `warren up` and `warren down`: a local stack in the background.
//!
//! A new user's first stack should not pour worker logs into the terminal
//! where they then type `warren result`. `up` starts one scheduler and N
//! workers of the namespace as background processes (their own process
//! group, so a Ctrl-C in the terminal leaves them alone), each logging to a
//! file, records their pids, and returns once they are serving. `down` stops
//! exactly those processes: SIGTERM, which drains them (a worker finishes
//! its running tasks for up to `drain_timeout_secs`), then SIGKILL for what is
//! still running once that has passed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use warren_client::Client;
use warren_core::Settings;

/// How long `up` waits for its processes to serve.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long `down` waits beyond the processes' drain timeout before SIGKILL:
/// a drain that times out still has to say so and exit.
const GRACE: Duration = Duration::from_secs(5);
/// How often `down` says what it still waits for.
const SAY_EVERY: Duration = Duration::from_secs(5);

/// The directory of a namespace's stack.
pub fn stack_dir(namespace: &str, dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("warren-{namespace}"))
}

/// Starts the stack and waits until the scheduler and every worker serve.
pub async fn up(
    client: &Client,
    config: Option<&Path>,
    dir: &Path,
    workers: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let settings = client.settings();
    let pids_file = dir.join("pids");
    let running = live_pids(&pids_file);
    if !running.is_empty() {
        bail!(
            "a stack of namespace {:?} already runs (pids {}, from {}): stop it with `warren down` first",
            settings.namespace,
            join(&running),
            pids_file.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut children = Vec::new();
    let mut spawn = |binary: &str, log: &str, args: &[String]| -> anyhow::Result<()> {
        children.push(spawn_logged(
            settings,
            config,
            binary,
            args,
            &dir.join(log),
        )?);
        Ok(())
    };
    spawn("warren-scheduler", "scheduler.log", &[])?;
    for i in 1..=workers {
        spawn(
            "warren-worker",
            &format!("worker-{i}.log"),
            &["--concurrency".into(), concurrency.to_string()],
        )?;
    }
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    std::fs::write(&pids_file, join(&pids) + "\n")
        .with_context(|| format!("writing {}", pids_file.display()))?;
    eprintln!(
        "starting a scheduler and {workers} workers of namespace {:?} (logs in {}/)",
        settings.namespace,
        dir.display()
    );
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let dead: Vec<u32> = children
            .iter_mut()
            .filter_map(|c| (!matches!(c.try_wait(), Ok(None))).then(|| c.id()))
            .collect();
        if !dead.is_empty() {
            bail!(
                "processes {} of the stack exited at start: see the logs in {}/ (then `warren down`)",
                join(&dead),
                dir.display()
            );
        }
        let serving = client.workers().await?.len();
        if serving >= workers && client.scheduler_count().await >= 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after {}s only {serving} of {workers} workers serve namespace {:?}: see the logs in {}/ (and check that RabbitMQ and Redis run)",
                READY_WITHIN.as_secs(),
                settings.namespace,
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "up: 1 scheduler and {workers} workers of namespace {:?} (pids {}); logs in {}/; stop with `warren down`",
        settings.namespace,
        join(&pids),
        dir.display()
    );
    Ok(())
}

/// Stops the processes `up` started for the namespace.
pub fn down(namespace: &str, dir: &Path, drain_timeout: Duration) -> anyhow::Result<()> {
    let pids_file = dir.join("pids");
    if !pids_file.exists() {
        bail!(
            "no stack of namespace {namespace:?} was started by `warren up` (no {})",
            pids_file.display()
        );
    }
    let pids = live_pids(&pids_file);
    for pid in &pids {
        signal(*pid, libc::SIGTERM);
    }
    let started = Instant::now();
    let deadline = started + drain_timeout + GRACE;
    let mut said = started;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if said.elapsed() >= SAY_EVERY {
            said = Instant::now();
            let left: Vec<String> = pids
                .iter()
                .filter(|p| alive(**p))
                .map(u32::to_string)
                .collect();
            eprintln!(
                "down: {} still draining (pids {}): running tasks finish first, for up to {}s (setting drain_timeout_secs); SIGKILL after that",
                left.len(),
                left.join(" "),
                (drain_timeout + GRACE).as_secs()
            );
        }
    }
    let stubborn: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for pid in &stubborn {
        signal(*pid, libc::SIGKILL);
    }
    std::fs::remove_file(&pids_file)
        .with_context(|| format!("removing {}", pids_file.display()))?;
    println!(
        "down: stopped {} processes of namespace {namespace:?}{}; logs stay in {}/",
        pids.len(),
        if stubborn.is_empty() {
            String::new()
        } else {
            format!(" ({} after SIGKILL)", stubborn.len())
        },
        dir.display()
    );
    Ok(())
}

/// Spawns `binary` (from the directory of this `warren`, else the PATH) in
/// its own process group, with the client's settings and output to `log`.
fn spawn_logged(
    settings: &Settings,
    config: Option<&Path>,
    binary: &str,
    args: &[String],
    log: &Path,
) -> anyhow::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(binary)))
        .filter(|p| p.exists());
    let program = sibling.unwrap_or_else(|| PathBuf::from(binary));
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .env("WARREN_NAMESPACE", &settings.namespace)
        .env("WARREN_AMQP_URL", &settings.amqp_url)
        .env("WARREN_REDIS_URL", &settings.redis_url)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if let Some(c) = config {
        cmd.env("WARREN_CONFIG", c);
    }
    cmd.spawn().with_context(|| {
        format!(
            "starting {} (build it with `cargo build --release --bins` and put target/release on PATH)",
            program.display()
        )
    })
}

/// The pids in `file` whose processes still run.
fn live_pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| alive(*p))
        .collect()
}

/// Whether `pid` runs (and is not a zombie) and is one of warren's programs.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3, after the parenthesised command name, is the state.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("warren-"))
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid read from our own pids file; it has no
        // memory effects in this process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

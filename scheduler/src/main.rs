//! `warren-scheduler`: resolves DAG readiness and dispatches runnable tasks.
//!
//! The scheduler holds no state of its own: everything lives in Redis (changed
//! only by atomic Lua scripts) and in RabbitMQ. Kill it at any moment and start
//! another; run two at once and they share the work safely.

use warren_scheduler::{dispatch, intake, notify};

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use tracing::info;

use std::time::Duration;

use warren_core::message_limit::learning;
use warren_core::metrics::Metrics;
use warren_core::shutdown::Drain;
use warren_core::{Settings, amqp, store::Store, topology::Topology};

/// The warren scheduler. Reads client requests and worker reports from RabbitMQ,
/// keeps every future's state in Redis, and publishes runnable tasks.
///
/// Settings come from (later wins): defaults, warren.toml (or --config), WARREN_*
/// environment variables (WARREN_AMQP_URL, WARREN_REDIS_URL, WARREN_NAMESPACE, ...),
/// then these flags.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A TOML settings file (default: ./warren.toml if present).
    #[arg(long, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f; a cluster's nodes separated by commas
    #[arg(long)]
    amqp_url: Option<String>,
    /// Redis URL, e.g. redis://127.0.0.1:6379/
    #[arg(long)]
    redis_url: Option<String>,
    /// Namespace: prefix of every queue and Redis key.
    #[arg(long)]
    namespace: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: String,
    /// Seconds a drain (the first SIGTERM or Ctrl-C) may take to finish the
    /// scripts and publishes in hand before the scheduler exits anyway
    /// (setting drain_timeout_secs, default 30).
    #[arg(long, value_name = "SECS")]
    drain_timeout: Option<u64>,
    /// Print the RabbitMQ definitions (queues, exchanges, bindings, policies) of
    /// the configured namespace and queue type (WARREN_QUEUE_TYPE: classic or
    /// quorum), with the work queue `default`, as JSON, and exit without
    /// connecting anywhere. Apply them with
    /// `rabbitmqctl import_definitions /absolute/path.json`.
    #[arg(long)]
    print_definitions: bool,
}

// One runtime thread: the scheduler's work is hand-offs between RabbitMQ and
// Redis, and on a multi-threaded runtime each one woke another thread (the
// kernel's context switches were most of its CPU in perf). More throughput
// comes from more schedulers, which share a namespace. Measured against the
// multi-threaded build in one run: -20% scheduler CPU, +16% no-op tasks/s.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    warren_core::logging::init(
        warren_core::logging::Format::named(&args.log_format),
        "RUST_LOG",
        "info,lapin=off",
    );
    // Started by a Python LocalCluster: stop with it.
    let _lifeline = warren_core::lifeline::watch();
    let overrides = warren_core::settings::flag_overrides(vec![
        ("amqp_url", args.amqp_url.clone()),
        ("redis_url", args.redis_url.clone()),
        ("namespace", args.namespace.clone()),
        ("metrics_addr", args.metrics_addr.clone()),
        (
            "drain_timeout_secs",
            args.drain_timeout.map(|s| s.to_string()),
        ),
    ]);
    let settings = Settings::load(args.config.as_deref(), &overrides)?;
    if args.print_definitions {
        let topology = Topology::from_settings(&settings);
        let text = serde_json::to_string_pretty(&topology.definitions(&["default"]))?;
        println!("{text}");
        return Ok(());
    }
    run(settings).await
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // One identity for the process: after a reconnect, its unreleased outbox
    // claims are its own again and are published first.
    let id = format!(
        "{}-{}-{}",
        hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let metrics = Metrics::new();
    warren_core::metrics::serve(&settings.metrics_addr, metrics.clone()).await?;
    tokio::spawn(track_states(settings.clone(), metrics.clone()));
    tokio::spawn(warren_scheduler::reaper::run(settings.clone()));
    // The first SIGTERM or Ctrl-C drains: no new deliveries, the scripts
    // and publishes in hand finished, claims released, then exit 0. A kill
    // loses nothing either (state is in Redis and RabbitMQ); a drain also
    // spares the other schedulers the wait for its heartbeat to expire.
    let drain = Drain::new();
    drain.on_signals()?;
    // One topology for the process: the broker's message limit, once a
    // refused publish told it, outlives the connection that learned it. Its
    // keys sign what the scheduler publishes and check what it consumes.
    let topology = Topology::from_settings(&settings).with_keys(settings.keyring()?);
    let timeout = Duration::from_secs(settings.drain_timeout_secs);
    let limit = async {
        drain.started().await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        () = warren_core::reconnect::supervise("scheduler", || learning(topology.message_limit(), run_connected(&settings, &topology, &id, &metrics, &drain))) => {
            info!("drained: scripts and publishes in hand finished, claims released; exiting");
            Ok(())
        }
        () = limit => anyhow::bail!(
            "the drain timed out after {}s (setting drain_timeout_secs): the other schedulers take back what it held",
            timeout.as_secs()
        ),
    }
}

/// One connection's life: declare, consume, dispatch, until something breaks.
async fn run_connected(
    settings: &Settings,
    topology: &Topology,
    id: &str,
    metrics: &Arc<Metrics>,
    drain: &Drain,
) -> anyhow::Result<()> {
    let topology = topology.clone();
    let conn = amqp::connect(settings, &format!("warren-scheduler {id}")).await?;
    let store = Store::connect(settings).await?;
    store.sync_message_limit(topology.message_limit()).await?;
    if let Some(w) = topology.message_limit().warning() {
        tracing::warn!("{w}");
    }
    let migrated = store.migrate_layout().await?;
    if migrated > 0 {
        info!(
            records = migrated,
            "indexed the records of an older warren's namespace"
        );
    }
    let setup = conn.create_channel().await?;
    let queues = store.work_queues().await?;
    let queue_refs: Vec<&str> = queues.iter().map(String::as_str).collect();
    topology
        .declare(&setup, &queue_refs)
        .await
        .context("declaring the RabbitMQ topology")?;
    info!(namespace = %settings.namespace, %id, "scheduler connected");

    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let notifier = notify::Notifier::new(&conn, &topology).await?;
    let dispatcher = dispatch::Dispatcher::new(
        &conn,
        store.clone(),
        topology.clone(),
        id.to_string(),
        wake.clone(),
        notifier.clone(),
        metrics,
    )
    .await?;
    let mut dispatcher = dispatcher;
    dispatcher.recover_eager().await?;
    let intake = intake::Intake::new(
        &conn,
        id,
        store.clone(),
        topology,
        notifier,
        wake,
        metrics.clone(),
    )
    .await?;
    let (intake, dispatcher) = (
        async { intake.run(drain).await.context("intake stopped") },
        async { dispatcher.run(drain).await.context("dispatcher stopped") },
    );
    tokio::try_join!(intake, dispatcher)?;
    // Drained: nothing of ours is claimed any more. Without our heartbeat,
    // anything left would be taken back at once.
    store.retire(id).await?;
    Ok(())
}

/// Keeps the `warren_tasks` gauges (futures per state, from the exactly-once
/// counters in Redis) fresh for scrapes. Best effort: Redis being away only
/// delays the numbers.
async fn track_states(settings: Settings, metrics: Arc<Metrics>) {
    let help = "Futures in the namespace, by state (pending = submitted and not final).";
    loop {
        if let Ok(store) = Store::connect(&settings).await {
            while let Ok(stats) = store.stats().await {
                for (state, n) in [
                    ("pending", stats.pending()),
                    ("finished", stats.count("finished")),
                    ("error", stats.count("error")),
                    ("cancelled", stats.count("cancelled")),
                ] {
                    metrics
                        .gauge("warren_tasks", &format!("state=\"{state}\""), help)
                        .store(n as i64, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

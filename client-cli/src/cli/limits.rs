//! `warren limits`: global rate limits and concurrency keys.

use serde_json::json;
use warren_client::Client;
use warren_core::store::throttle::RateTarget;
use warren_core::timing::Rate;

use crate::cli::output::Out;

/// What `warren limits` does.
#[derive(Debug, clap::Subcommand)]
pub enum LimitsCommand {
    /// Set a limit: a rate for a function or a queue (--func/--queue with
    /// --rate), or the most running tasks of a concurrency key (--key with
    /// --max-running).
    #[command(after_help = "Examples:
  warren limits set --func fetch --rate 50/s      # every scheduler and worker together
  warren limits set --queue gpu --rate 100/m
  warren limits set --key 'tenant-*' --max-running 2
  warren submit --concurrency-key tenant-42 inc 1")]
    Set {
        #[command(flatten)]
        target: Target,
        /// Tasks per second, minute or hour: 50/s, 100/m, 5/h.
        #[arg(long, value_parser = rate_arg, conflicts_with = "key", required_unless_present = "max_running")]
        rate: Option<Rate>,
        /// With --key: the most of its tasks running at once.
        #[arg(long, value_name = "N", requires = "key")]
        max_running: Option<u32>,
    },
    /// One line per limit.
    List,
    /// Remove a limit (tasks it held back go on).
    Remove {
        #[command(flatten)]
        target: Target,
    },
}

/// What a limit applies to: exactly one of these.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A function: every task of it.
    #[arg(long, value_name = "NAME")]
    func: Option<String>,
    /// A work queue: every task of it.
    #[arg(long, value_name = "NAME")]
    queue: Option<String>,
    /// A concurrency key (given at submit with --concurrency-key), or a
    /// prefix ending in * (tenant-*).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

fn rate_arg(text: &str) -> Result<Rate, String> {
    Rate::parse(text)
}

impl Target {
    fn rate_target(&self) -> Option<RateTarget> {
        match (&self.func, &self.queue) {
            (Some(f), _) => Some(RateTarget::Func(f.clone())),
            (_, Some(q)) => Some(RateTarget::Queue(q.clone())),
            _ => None,
        }
    }
}

/// Runs one `warren limits` command; the exit code.
pub async fn run(client: &Client, command: LimitsCommand, out: Out) -> anyhow::Result<u8> {
    match command {
        LimitsCommand::Set {
            target,
            rate,
            max_running,
        } => match (target.rate_target(), &target.key, rate, max_running) {
            (Some(t), _, Some(rate), _) => {
                client.set_rate_limit(&t, rate).await?;
                say(out, &format!("{t}: at most {rate}"));
            }
            (None, Some(key), _, Some(max)) => {
                client.set_concurrency_limit(key, max).await?;
                say(out, &format!("key {key}: at most {max} running"));
            }
            (Some(_), _, None, _) => anyhow::bail!("--func and --queue take --rate (e.g. 50/s)"),
            _ => anyhow::bail!("--key takes --max-running N"),
        },
        LimitsCommand::Remove { target } => {
            let removed = match (target.rate_target(), &target.key) {
                (Some(t), _) => client.remove_rate_limit(&t).await?,
                (None, Some(key)) => client.remove_concurrency_limit(key).await?,
                (None, None) => false,
            };
            if !removed {
                eprintln!("error: no such limit (see `warren limits list`)");
                return Ok(2);
            }
            say(out, "removed");
        }
        LimitsCommand::List => list(client, out).await?,
    }
    Ok(0)
}

fn say(out: Out, what: &str) {
    if out.json {
        println!("{}", json!({ "done": what }));
    } else {
        println!("{what}");
    }
}

async fn list(client: &Client, out: Out) -> anyhow::Result<()> {
    let limits = client.limits().await?;
    if out.json {
        let rates: Vec<_> = limits
            .rates
            .iter()
            .map(|(t, r)| json!({"target": t.field(), "rate": r.to_string()}))
            .collect();
        let keys: Vec<_> = limits
            .concurrency
            .iter()
            .map(|(k, max, running)| json!({"key": k, "max_running": max, "running": running}))
            .collect();
        println!("{}", json!({"rates": rates, "concurrency": keys}));
        return Ok(());
    }
    if limits.rates.is_empty() && limits.concurrency.is_empty() {
        println!("no limits (set one with `warren limits set`)");
    }
    for (t, r) in &limits.rates {
        println!("{t}: at most {r}");
    }
    for (k, max, running) in &limits.concurrency {
        if k.ends_with('*') {
            println!("keys {k}: at most {max} running each");
        } else {
            println!("key {k}: at most {max} running ({running} now)");
        }
    }
    Ok(())
}

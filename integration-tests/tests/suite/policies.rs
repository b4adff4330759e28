//! Issue 6: warren's RabbitMQ policies come from the code. `warren-scheduler
//! --print-definitions` exports a namespace's topology with its policies;
//! `rabbitmqctl import_definitions` applies it, and each queue then carries its
//! policy (what the management UI shows in the Queues tab and on the queue's
//! page), for classic and for quorum queues.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use warren_core::Settings;
use warren_core::topology::{INTAKE_DELIVERY_LIMIT, WORK_DELIVERY_LIMIT};
use warren_integration_tests::{bin, cleanup, fresh_settings, rabbitmqctl};

/// A namespace whose definitions were imported; dropping it removes the
/// policies, queues, exchanges and the file, even when the test failed.
struct Imported {
    settings: Settings,
    file: PathBuf,
}

impl Imported {
    fn ns(&self) -> &str {
        &self.settings.namespace
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        for policy in policy_names(self.ns()) {
            // Fails harmlessly when the import never created it.
            let _ = Command::new("rabbitmqctl")
                .args(["clear_policy", &policy])
                .output();
        }
        // Queues and exchanges go through AMQP (RabbitMQ 3.10's rabbitmqctl
        // cannot delete an exchange).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(cleanup(&self.settings));
    }
}

fn policy_names(ns: &str) -> [String; 2] {
    [format!("{ns}.work"), format!("{ns}.intake")]
}

/// Exports a fresh namespace's definitions with the built scheduler and
/// imports them.
fn import(queue_type: &str) -> Imported {
    let ns = fresh_settings("it-pol").namespace;
    let settings = Settings::load(
        None,
        &[("namespace", ns.clone()), ("queue_type", queue_type.into())],
    )
    .expect("settings");
    let out = Command::new(bin("warren-scheduler"))
        .arg("--print-definitions")
        .env("WARREN_NAMESPACE", &ns)
        .env("WARREN_QUEUE_TYPE", queue_type)
        .output()
        .expect("running warren-scheduler --print-definitions");
    assert!(
        out.status.success(),
        "warren-scheduler --print-definitions: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defs: Value = serde_json::from_slice(&out.stdout).expect("definitions are JSON");
    assert_eq!(defs["policies"].as_array().map(Vec::len), Some(2), "{defs}");
    // RabbitMQ's own user reads the file, by absolute path.
    let file = std::env::temp_dir().join(format!("{ns}-definitions.json"));
    std::fs::write(&file, &out.stdout).expect("writing the definitions");
    let imported = Imported { settings, file };
    rabbitmqctl(&[
        "import_definitions",
        imported.file.to_str().expect("a UTF-8 temp path"),
    ]);
    imported
}

/// `(name, type, policy)` of each queue of namespace `ns`, from `rabbitmqctl
/// list_queues`.
fn queues_of(ns: &str) -> Vec<(String, String, String)> {
    rabbitmqctl(&["list_queues", "-q", "name", "type", "policy"])
        .lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let (name, kind) = (cols.next()?, cols.next()?);
            let policy = cols.next().unwrap_or("");
            name.starts_with(&format!("{ns}."))
                .then(|| (name.to_string(), kind.to_string(), policy.to_string()))
        })
        .collect()
}

/// The definition of each policy of namespace `ns`, from `rabbitmqctl list_policies`.
fn policies_of(ns: &str) -> Vec<(String, Value)> {
    let text = rabbitmqctl(&["list_policies", "-q", "--formatter", "json"]);
    let all: Vec<Value> = serde_json::from_str(&text).expect("list_policies JSON");
    all.into_iter()
        .filter(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{ns}.")))
        })
        .map(|p| {
            // RabbitMQ 3.10 gives the definition as JSON text.
            let definition = match &p["definition"] {
                Value::String(s) => serde_json::from_str(s).expect("policy definition JSON"),
                other => other.clone(),
            };
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                definition,
            )
        })
        .collect()
}

/// The import is asynchronous: waits until every queue of the namespace exists
/// with its policy, and returns them.
fn wait_for_policies(ns: &str) -> Vec<(String, String, String)> {
    let expected = |name: &str| match name.strip_prefix(&format!("{ns}.")) {
        Some("submit" | "results") => format!("{ns}.intake"),
        Some(rest) if rest.starts_with("work.") => format!("{ns}.work"),
        _ => String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queues = queues_of(ns);
        if queues.len() == 5 && queues.iter().all(|(name, _, p)| *p == expected(name)) {
            return queues;
        }
        assert!(
            Instant::now() < deadline,
            "the queues of {ns} did not get their policies within 30 s: {queues:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn queue<'a>(queues: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    queues
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no queue {name} in {queues:?}"))
}

/// Asserts that nothing of namespace `ns` is left on the broker.
fn assert_gone(ns: &str) {
    assert!(queues_of(ns).is_empty(), "queues of {ns} left behind");
    assert!(policies_of(ns).is_empty(), "policies of {ns} left behind");
    let exchanges = rabbitmqctl(&["list_exchanges", "-q", "name"]);
    assert!(
        !exchanges.lines().any(|e| e.starts_with(&format!("{ns}."))),
        "exchanges of {ns} left behind"
    );
}

/// Every queue of `ns` has type `kind`; work, submit and results carry their policy.
fn assert_types_and_policies(ns: &str, kind: &str) {
    let queues = wait_for_policies(ns);
    for name in ["submit", "results", "work.default", "killed", "dead"] {
        let (_, found, _) = queue(&queues, &format!("{ns}.{name}"));
        assert_eq!(found, kind, "{ns}.{name}");
    }
    for (name, policy) in [
        ("work.default", "work"),
        ("submit", "intake"),
        ("results", "intake"),
    ] {
        assert_eq!(
            queue(&queues, &format!("{ns}.{name}")).2,
            format!("{ns}.{policy}"),
            "{ns}.{name}"
        );
    }
}

#[test]
fn imported_definitions_put_a_policy_on_every_classic_queue() {
    let imported = import("classic");
    let ns = imported.ns().to_string();
    assert_types_and_policies(&ns, "classic");
    // Classic queues know no delivery limit: their policies only dead-letter.
    let policies = policies_of(&ns);
    assert_eq!(policies.len(), 2, "{policies:?}");
    for (name, definition) in &policies {
        let routing_key = if *name == format!("{ns}.work") {
            "killed"
        } else {
            "dead"
        };
        assert_eq!(
            definition,
            &serde_json::json!({
                "dead-letter-exchange": format!("{ns}.dlx"),
                "dead-letter-routing-key": routing_key,
            }),
            "{name}"
        );
    }
    drop(imported);
    assert_gone(&ns);
}

#[test]
fn imported_definitions_put_the_delivery_limit_on_quorum_queues() {
    let imported = import("quorum");
    let ns = imported.ns().to_string();
    assert_types_and_policies(&ns, "quorum");
    let policies = policies_of(&ns);
    let definition = |name: String| {
        policies
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no policy {name} in {policies:?}"))
    };
    let work = definition(format!("{ns}.work"));
    assert_eq!(WORK_DELIVERY_LIMIT, 20);
    assert_eq!(work["delivery-limit"], 20, "{work}");
    assert_eq!(work["dead-letter-exchange"], format!("{ns}.dlx"), "{work}");
    assert_eq!(work["dead-letter-routing-key"], "killed", "{work}");
    assert_eq!(work["dead-letter-strategy"], "at-least-once", "{work}");
    assert_eq!(work["overflow"], "reject-publish", "{work}");
    let intake = definition(format!("{ns}.intake"));
    assert_eq!(intake["delivery-limit"], INTAKE_DELIVERY_LIMIT, "{intake}");
    assert_eq!(intake["dead-letter-routing-key"], "dead", "{intake}");
    drop(imported);
    assert_gone(&ns);
}

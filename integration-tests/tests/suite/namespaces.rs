//! A namespace as an access boundary (issue 33): two namespaces whose users
//! `warren access --apply` made, on the shared RabbitMQ and Redis, each
//! running the notebook's calls while a client of one tries every way into
//! the other, and into its own namespace's shared queues.

use std::process::Output;

use lapin::options::{
    BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;
use warren_client::Client;
use warren_core::Settings;
use warren_integration_tests::{Cluster, ClusterOptions, fresh_settings, rabbitmqctl, run_cli};

const PASSWORD: &str = "ns-boundary-pw";

/// One namespace with a service user (worker role; the scheduler's rights
/// are the same) and a client user, both from `warren access --apply`.
#[derive(Clone)]
struct Namespace {
    ns: String,
    service: String,
    client: String,
}

impl Namespace {
    fn make(prefix: &str, password_file: &std::path::Path) -> Self {
        let ns = fresh_settings(prefix).namespace;
        let me = Self {
            service: format!("{ns}-svc"),
            client: format!("{ns}-cli"),
            ns,
        };
        for (user, role) in [(&me.service, "worker"), (&me.client, "client")] {
            let out = admin(&[
                "access",
                &me.ns,
                "--user",
                user,
                "--role",
                role,
                "--apply",
                "--password-file",
                &password_file.display().to_string(),
            ]);
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{said}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(said.contains("RabbitMQ (applied)"), "{said}");
            assert!(!said.contains(PASSWORD), "{said}");
        }
        me
    }

    fn amqp_url(&self, user: &str, vhost: &str) -> String {
        format!("amqp://{user}:{PASSWORD}@127.0.0.1:5672/{vhost}")
    }

    fn redis_url(user: &str) -> String {
        format!("redis://{user}:{PASSWORD}@127.0.0.1:6379/")
    }

    /// The settings of `user`'s processes.
    fn env(&self, user: &str) -> Vec<(String, String)> {
        vec![
            ("WARREN_NAMESPACE".into(), self.ns.clone()),
            ("WARREN_AMQP_URL".into(), self.amqp_url(user, &self.ns)),
            ("WARREN_REDIS_URL".into(), Self::redis_url(user)),
        ]
    }

    fn settings(&self, user: &str) -> Settings {
        let env = self.env(user);
        let overrides: Vec<(&str, String)> = vec![
            ("namespace", env[0].1.clone()),
            ("amqp_url", env[1].1.clone()),
            ("redis_url", env[2].1.clone()),
            ("key_file", warren_integration_tests::NO_KEY.into()),
        ];
        Settings::load(None, &overrides).expect("settings")
    }

    fn remove(&self) {
        for user in [&self.service, &self.client] {
            let _ = std::process::Command::new("rabbitmqctl")
                .args(["delete_user", user])
                .output();
            let _ = std::process::Command::new("redis-cli")
                .args(["ACL", "DELUSER", user])
                .output();
        }
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.ns])
            .output();
        let _ = std::process::Command::new("redis-cli")
            .args(["--scan", "--pattern", &format!("{}:*", self.ns)])
            .output()
            .map(|o| {
                for key in String::from_utf8_lossy(&o.stdout).lines() {
                    let _ = std::process::Command::new("redis-cli")
                        .args(["DEL", key])
                        .output();
                }
            });
    }
}

/// The CLI as the administrator (guest on the local servers).
fn admin(args: &[&str]) -> Output {
    run_cli("warren", args, "", &[])
}

/// The notebook's calls as `user` of `ns`: a map, a gather, a dependency.
async fn notebook(ns: &Namespace) -> Vec<Value> {
    let client = Client::connect(ns.settings(&ns.client))
        .await
        .expect("the client user connects");
    let futures = client.map("inc", 1..6).await.expect("map");
    let total = client
        .submit("add_them", (&futures[0], &futures[4]))
        .await
        .expect("a dependency");
    let mut values = client.gather(&futures).await.expect("gather");
    values.push(total.result().await.expect("result"));
    values
}

/// What RabbitMQ says to `op`, as text: `Ok` or the refusal.
fn said<T>(r: Result<T, lapin::Error>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_namespaces_with_users_from_warren_access_cannot_reach_each_other() {
    let dir = std::env::temp_dir().join(format!("warren-ns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let password_file = dir.join("pw");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    let a = Namespace::make("it-ns-a", &password_file);
    let b = Namespace::make("it-ns-b", &password_file);

    // A client user cannot start a namespace: it may not declare its queues.
    let early = Client::connect(a.settings(&a.client)).await;
    let e = early.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("ACCESS_REFUSED") && e.contains("start a scheduler of namespace"),
        "{e}"
    );

    let start = |ns: &Namespace| {
        Cluster::start_with(ClusterOptions {
            workers: 1,
            concurrency: 2,
            env: ns.env(&ns.service),
            ..Default::default()
        })
    };
    let (cluster_a, cluster_b) = tokio::join!(start(&a), start(&b));
    assert_eq!(cluster_a.settings.namespace, a.ns);

    // Both namespaces run the notebook, as their client users, while A's
    // users try their way into B (and B's notebook runs again after).
    let expected: Vec<Value> = [2, 3, 4, 5, 6, 8].map(Value::from).to_vec();
    let running = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move { tokio::join!(notebook(&a), notebook(&b)) })
    };
    // The CLI too.
    let cli_env: Vec<(String, String)> = a.env(&a.client);
    let env: Vec<(&str, &str)> = cli_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let key = run_cli(&a.ns, &["submit", "inc", "41"], "", &env);
    let key = String::from_utf8_lossy(&key.stdout).trim().to_string();
    let value = run_cli(&a.ns, &["result", &key], "", &env);
    assert_eq!(String::from_utf8_lossy(&value.stdout).trim(), "42");

    // RabbitMQ: neither of A's users can open B's vhost.
    for user in [&a.client, &a.service] {
        let refused =
            Connection::connect(&a.amqp_url(user, &b.ns), ConnectionProperties::default())
                .await
                .map(|_| ());
        let r = said(refused);
        assert!(
            r.contains("NOT_ALLOWED") || r.contains("access to vhost"),
            "{user}: {r}"
        );
    }
    // In its own vhost, A's client cannot declare, delete, purge or consume
    // a shared queue (each refusal closes the channel: one channel each).
    let conn = Connection::connect(
        &a.amqp_url(&a.client, &a.ns),
        ConnectionProperties::default(),
    )
    .await
    .expect("the client user opens its own vhost");
    let submit = format!("{}.submit", a.ns);
    let work = format!("{}.work.default", a.ns);
    let mut refusals = Vec::new();
    let ch = conn.create_channel().await.expect("channel");
    refusals.push(said(
        ch.queue_declare(
            format!("{}.mine", a.ns).as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
    ));
    let ch = conn.create_channel().await.expect("channel");
    refusals.push(said(
        ch.queue_delete(submit.as_str().into(), QueueDeleteOptions::default())
            .await,
    ));
    let ch = conn.create_channel().await.expect("channel");
    refusals.push(said(
        ch.queue_purge(work.as_str().into(), QueuePurgeOptions::default())
            .await,
    ));
    let ch = conn.create_channel().await.expect("channel");
    refusals.push(said(
        ch.basic_consume(
            work.as_str().into(),
            "thief".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
    ));
    for r in &refusals {
        assert!(r.contains("ACCESS_REFUSED"), "{refusals:?}");
    }
    let _ = conn.close(200, "done".into()).await;

    // Redis: A's users cannot read, write, publish or list B's keys.
    for user in [&a.client, &a.service] {
        for cmd in [
            vec!["GET".to_string(), format!("{}:layout", b.ns)],
            vec!["SET".into(), format!("{}:layout", b.ns), "x".into()],
            vec!["PUBLISH".into(), format!("{}:events", b.ns), "x".into()],
            vec!["KEYS".into(), "*".into()],
            vec!["FLUSHALL".into()],
        ] {
            let out = std::process::Command::new("redis-cli")
                .args(["--user", user, "--pass", PASSWORD, "--no-auth-warning"])
                .args(&cmd)
                .output()
                .expect("redis-cli");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains("NOPERM"), "{user} {cmd:?}: {text}");
        }
    }
    let (va, vb) = running.await.expect("both notebooks");
    assert_eq!(va, expected);
    assert_eq!(vb, expected);
    // B goes on untouched.
    let after = notebook(&b).await;
    assert_eq!(after, expected);

    tokio::join!(cluster_a.shutdown(), cluster_b.shutdown());
    a.remove();
    b.remove();
    let _ = std::fs::remove_dir_all(&dir);
    // The test's users are gone with their vhosts.
    let users = rabbitmqctl(&["list_users", "--silent"]);
    assert!(!users.contains(&a.client), "{users}");
}

#[test]
fn warren_access_prints_the_rules_of_each_role() {
    let out = admin(&["access", "team-a", "--user", "alice"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "rabbitmqctl add_vhost team-a",
        r"rabbitmqctl set_permissions -p team-a alice '^team-a\.client\.' '^(amq\.default|team-a\.control)$' '^team-a\.client\.'",
        "redis-cli ACL SETUSER alice on '>PASSWORD' resetkeys '~team-a:*' resetchannels '&team-a:*' -@all +@read",
        "WARREN_AMQP_URL=amqp://alice:PASSWORD@127.0.0.1:5672/team-a",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(text.contains("set_policy -p team-a"), "{text}");
    let out = admin(&[
        "access",
        "team-a",
        "--user",
        "svc",
        "--role",
        "scheduler",
        "--json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["rabbitmq"]["configure"], r"^team-a\.");
    assert_eq!(doc["redis"]["acl_setuser"][1], "~team-a:*");
    // Bad input is named.
    let out = admin(&["access", "team a", "--user", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("namespace \"team a\""));
    let out = admin(&["access", "team-a", "--user", "x", "--role", "admin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client, worker or scheduler"));
}

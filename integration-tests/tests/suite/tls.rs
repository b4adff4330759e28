//! TLS to RabbitMQ and Redis (issue 33), against real servers the test
//! starts with certificates it makes: a private CA, a RabbitMQ node with a
//! TLS listener that verifies peers, and a Redis with only a TLS port.
//!
//! The notebook's shape (submit, map, gather, a dependency) runs with every
//! connection encrypted and verified; a CA that did not sign the servers is
//! refused with an error naming the server; a client certificate logs in to
//! RabbitMQ (EXTERNAL) and to a Redis that demands one.

use serde_json::json;
use warren_core::Settings;
use warren_core::store::Store;
use warren_integration_tests::tls::{Certs, TlsRedis};
use warren_integration_tests::{
    Cluster, ClusterOptions, PrivateRabbit, free_port, ok_stdout, primes_below, run_cli,
};

/// A RabbitMQ node with a TLS listener (and EXTERNAL login offered), and a
/// Redis with only a TLS port, both with `certs`' server certificate.
struct Servers {
    rabbit: PrivateRabbit,
    amqps_port: u16,
    redis: TlsRedis,
}

fn servers(certs: &Certs, redis_wants_client_certificates: bool) -> Servers {
    let amqps_port = free_port();
    let config = certs.rabbit_config(amqps_port);
    let lines: Vec<&str> = config.iter().map(String::as_str).collect();
    let rabbit = PrivateRabbit::start_with_plugins(&lines, &["rabbitmq_auth_mechanism_ssl"]);
    let redis = TlsRedis::start(certs, redis_wants_client_certificates);
    Servers {
        rabbit,
        amqps_port,
        redis,
    }
}

/// A scheduler and `workers` workers reaching `s` through `amqps` and its
/// `rediss://` URL, trusting `certs`' CA, showing its client certificate if
/// `client_certificate`.
async fn tls_cluster(
    certs: &Certs,
    s: &Servers,
    amqps: &str,
    workers: usize,
    client_certificate: bool,
) -> Cluster {
    let mut env = vec![
        ("WARREN_AMQP_URL".into(), amqps.to_string()),
        ("WARREN_REDIS_URL".into(), s.redis.url()),
        ("WARREN_TLS_CA_FILE".into(), certs.path("ca.pem")),
    ];
    if client_certificate {
        env.push(("WARREN_TLS_CERT_FILE".into(), certs.path("client.pem")));
        env.push(("WARREN_TLS_KEY_FILE".into(), certs.path("client.key")));
    }
    Cluster::start_with(ClusterOptions {
        workers,
        env,
        ..Default::default()
    })
    .await
}

/// `columns` of every connection to the node (the test's alone, so every
/// one is the test's), as `rabbitmqctl list_connections` prints them, and
/// its lines.
fn connections(s: &Servers, columns: &[&str]) -> (String, Vec<String>) {
    let mut args = vec!["list_connections", "-q", "--no-table-headers"];
    args.extend(columns);
    let out = s.rabbit.ctl(&args);
    let lines = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    (out, lines)
}

/// The submit, map, gather and dependency of the seed notebook, with
/// smaller numbers, through the Rust client and the CLI.
async fn run_the_notebook(cluster: &Cluster) {
    let client = cluster.client().await;
    let n = client
        .submit("count_primes_less_than", (100_000,))
        .await
        .unwrap();
    assert_eq!(n.result().await.unwrap(), json!(primes_below(100_000)));
    let futures = client
        .map("count_primes_less_than", 30_001..30_006)
        .await
        .unwrap();
    let expected: Vec<_> = (30_001..30_006).map(|i| json!(primes_below(i))).collect();
    assert_eq!(client.gather(&futures).await.unwrap(), expected);
    let sum = client
        .submit("add_them", (&futures[0], &futures[1]))
        .await
        .unwrap();
    assert_eq!(
        sum.result().await.unwrap(),
        json!(primes_below(30_001) + primes_below(30_002))
    );
    let key = ok_stdout(&cluster.warren(&["submit", "count_primes_less_than", "5000"]));
    let value = ok_stdout(&cluster.warren(&["result", key.trim()]));
    assert_eq!(value.trim(), primes_below(5000).to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notebook_runs_over_tls_and_a_wrong_ca_is_refused() {
    let certs = Certs::make("warren-tls-client");
    let s = servers(&certs, false);
    let amqps = format!("amqps://guest:guest@localhost:{}/%2f", s.amqps_port);
    let cluster = tls_cluster(&certs, &s, &amqps, 2, false).await;
    run_the_notebook(&cluster).await;
    // Every connection came in over TLS: the node's plain listener is never
    // used.
    let (conns, mine) = connections(&s, &["ssl", "peer_host"]);
    assert!(
        mine.len() >= 4,
        "a scheduler, two workers, a client: {conns}"
    );
    assert!(mine.iter().all(|l| l.starts_with("true")), "{conns}");

    // A CA that signed neither server: RabbitMQ and Redis are both refused,
    // and the error names the server and the certificate.
    let ns = &cluster.settings.namespace;
    let other = certs.path("other-ca.pem");
    let out = run_cli(
        ns,
        &["submit", "count_primes_less_than", "10"],
        "",
        &[
            ("WARREN_AMQP_URL", amqps.as_str()),
            ("WARREN_REDIS_URL", s.redis.url().as_str()),
            ("WARREN_TLS_CA_FILE", other.as_str()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    eprintln!("with a CA that signed neither server, the CLI said: {err}");
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{}", s.redis.port()))
            || err.contains(&format!("localhost:{}", s.amqps_port)),
        "{err}"
    );

    let mut settings = cluster.settings.clone();
    settings.tls_ca_file = other.clone();
    let e = Store::connect(&settings).await.unwrap_err().to_string();
    eprintln!("and the library: {e}");
    assert!(e.contains(&s.redis.url()), "{e}");
    assert!(
        e.to_lowercase().contains("certificate") || e.to_lowercase().contains("issuer"),
        "{e}"
    );
    // No CA at all: the system's store does not know the private CA either.
    settings.tls_ca_file = String::new();
    assert!(Store::connect(&settings).await.is_err());
    // A file that holds no certificate is named before any connection.
    settings.tls_ca_file = certs.path("ca.key");
    let e = Store::connect(&settings).await.unwrap_err().to_string();
    assert!(e.contains("tls_ca_file") && e.contains("ca.key"), "{e}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_logs_in_to_rabbitmq_and_to_a_redis_that_demands_one() {
    let certs = Certs::make("warren-tls-worker");
    let s = servers(&certs, true);
    // The RabbitMQ user is the certificate's common name, with no password.
    let user = certs.client_name();
    s.rabbit.ctl(&["add_user", user, "unused"]);
    s.rabbit.ctl(&["clear_password", user]);
    s.rabbit
        .ctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"]);

    // No user in the URL: the certificate is the identity.
    let amqps = format!("amqps://localhost:{}/%2f", s.amqps_port);
    let cluster = tls_cluster(&certs, &s, &amqps, 1, true).await;
    run_the_notebook(&cluster).await;
    let (conns, mine) = connections(&s, &["user", "auth_mechanism", "ssl"]);
    assert!(mine.len() >= 3, "a scheduler, a worker, a client: {conns}");
    assert!(
        mine.iter()
            .all(|l| l.starts_with(&format!("{user}\tEXTERNAL\ttrue"))),
        "{conns}"
    );

    // Without the certificate this Redis refuses the connection.
    let mut settings: Settings = cluster.settings.clone();
    settings.tls_cert_file = String::new();
    settings.tls_key_file = String::new();
    assert!(Store::connect(&settings).await.is_err());
    cluster.shutdown().await;
}

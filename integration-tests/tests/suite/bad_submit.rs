//! One bad submit must not kill a namespace or run code on a worker (issue
//! 31): a queue name RabbitMQ cannot take, a time limit no timer can hold,
//! variables and directories that walk around a worker's allow-list, the
//! worker's passwords in /proc, a broker limit below warren's setting, and
//! requests that skip the client's checks. Each was seen to panic, hang,
//! stall or run code before the fix.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use warren_client::{Error, Future};
use warren_core::amqp;
use warren_core::command::{COMMAND_FUNC, CommandOptions, task_args};
use warren_core::messages::{
    ClientEvent, ClientEvents, ClientRequest, PROTOCOL_VERSION, TaskFailure, TaskSpec, WorkMessage,
};
use warren_integration_tests::{Cluster, ClusterOptions, PrivateRabbit, ok_stdout};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn failure_of(f: &Future) -> TaskFailure {
    match tokio::time::timeout(Duration::from_secs(60), f.result()).await {
        Ok(Err(Error::Task { failure, .. })) => failure,
        other => panic!("expected {} to fail, got {other:?}", f.key()),
    }
}

/// `inc 1` through the CLI is 2: a scheduler records and a worker runs.
fn serves(c: &Cluster) {
    let k = ok_stdout(&c.warren(&["submit", "--no-pure", "inc", "1"]));
    let v = ok_stdout(&c.warren(&["result", "--timeout", "30", k.trim()]));
    assert_eq!(v.trim(), "2");
}

async fn redis(c: &Cluster) -> redis::aio::ConnectionManager {
    warren_core::store::Store::connect(&c.settings)
        .await
        .unwrap()
        .connection()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_name_rabbitmq_cannot_take_is_refused_and_one_in_redis_stops_no_scheduler() {
    let mut c = Cluster::start(1, 1).await;
    let long = "q".repeat(250);
    let out = c.warren(&[
        "submit",
        "--no-pure",
        "--allow-unserved",
        "--queue",
        &long,
        "inc",
        "1",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("queue name") && err.contains("255"), "{err}");

    // An older warren (or anyone with Redis) stored it: every scheduler
    // declared it at start and panicked. Now it is skipped, and named.
    let mut con = redis(&c).await;
    let set = format!("{}:queues", c.settings.namespace);
    let _: () = redis::cmd("SADD")
        .arg(&set)
        .arg(&long)
        .query_async(&mut con)
        .await
        .unwrap();
    c.start_scheduler();
    serves(&c);
    let out = c.warren(&["info"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ok_stdout(&out).contains("work.default"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn time_limits_out_of_range_are_refused_and_a_forged_one_hangs_no_worker() {
    let mut c = Cluster::start(1, 1).await;
    for limit in ["1e20", "1e400", "-1", "NaN", "0"] {
        let out = c.warren(&[
            "submit",
            "--no-pure",
            &format!("--timeout={limit}"),
            "inc",
            "2",
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "--timeout {limit}: {err}");
        assert!(err.contains("time limit"), "--timeout {limit}: {err}");
    }
    // A work message straight to the work queue skips the client and the
    // scheduler. Its task is recorded first, on a queue nobody serves.
    let key = ok_stdout(&c.warren(&[
        "submit",
        "--no-pure",
        "--allow-unserved",
        "--queue",
        "parked",
        "inc",
        "2",
    ]));
    let key = key.trim().to_string();
    let forged = WorkMessage {
        v: PROTOCOL_VERSION,
        key: key.clone(),
        func: "inc".into(),
        args: vec![json!(2)],
        epoch: 0,
        attempt: 0,
        timeout_secs: Some(1e20),
        dispatched_at_ms: None,
        priority: 0,
    };
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    let queue = c.topology().work_queue("default");
    let body = serde_json::to_vec(&forged).unwrap();
    let confirm = amqp::publish(&ch, "", &queue, &body, amqp::json_properties(&[]))
        .await
        .unwrap();
    amqp::confirmed(vec![confirm], "test").await.unwrap();
    let client = c.client().await;
    let failure = failure_of(&client.future(&key)).await;
    assert_eq!(failure.kind, "InvalidTask", "{failure:?}");
    assert!(failure.message.contains("time limit"), "{failure:?}");
    serves(&c);
    // The worker drains and exits 0 on SIGTERM: nothing in it is stuck.
    let status = c.terminate_worker(0, Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warren_down_waits_out_a_stuck_tasks_drain_instead_of_killing_it() {
    let ns = warren_integration_tests::fresh_settings("down").namespace;
    let dir = std::env::temp_dir().join(format!("warren-down-{ns}"));
    let env = [("WARREN_DRAIN_TIMEOUT_SECS", "12")];
    let run = |args: &[&str]| warren_integration_tests::run_cli(&ns, args, "", &env);
    let dir_arg = dir.display().to_string();
    let up = run(&[
        "up",
        "--dir",
        &dir_arg,
        "--workers",
        "1",
        "--concurrency",
        "1",
    ]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    // Never returns and never looks at its cancel flag: a stuck task.
    let k = ok_stdout(&run(&[
        "submit",
        "--no-pure",
        "count_primes_less_than",
        "1000000000000",
    ]));
    let status = run(&["wait", "--timeout", "0.5", k.trim()]);
    assert_eq!(status.status.code(), Some(3));
    let started = Instant::now();
    let down = run(&["down", "--dir", &dir_arg]);
    let took = started.elapsed();
    let out = ok_stdout(&down);
    // The worker's drain times out after its 12 s and it exits by itself:
    // `down` used to SIGKILL it after a fixed 10 s.
    assert!(!out.contains("SIGKILL"), "{out}");
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(20),
        "{took:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    warren_integration_tests::cleanup(
        &warren_core::Settings::load(None, &[("namespace", ns)]).unwrap(),
    )
    .await;
}

/// Impure submits to the queue of program tasks.
fn commands_queue() -> warren_client::SubmitOptions {
    warren_client::SubmitOptions {
        pure: false,
        queue: Some("commands".into()),
        ..Default::default()
    }
}

/// A shared object whose constructor writes `marker`: what `LD_PRELOAD`
/// would run inside any allowed program.
fn preload_object(dir: &std::path::Path, marker: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("x.c");
    let so = dir.join("x.so");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void owned(void) {{ FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n",
            marker.display()
        ),
    )
    .unwrap();
    let ok = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "gcc builds the test's shared object");
    so
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_task_cannot_walk_around_the_workers_allow_list() {
    let dir = std::env::temp_dir().join(format!("warren-walk-{}", std::process::id()));
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    let _ = std::fs::remove_file(allowed.join("etc"));
    std::os::unix::fs::symlink("/etc", allowed.join("etc")).unwrap();
    let marker = dir.join("owned");
    let so = preload_object(&dir, &marker);
    let script = dir.join("env.sh");
    std::fs::write(&script, format!("touch {}\n", marker.display())).unwrap();

    // The URL with its password in the worker's environment, as operators
    // start workers.
    let url = warren_core::Settings::default().amqp_url;
    assert!(url.contains(":guest@"));
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        env: vec![
            ("WARREN_AMQP_URL".into(), url),
            // S3 secrets, whole values rather than a URL's part.
            (
                "WARREN_S3_SECRET_ACCESS_KEY".into(),
                "warren-s3-secret-marker".into(),
            ),
            ("AWS_SECRET_ACCESS_KEY".into(), "aws-secret-marker".into()),
        ],
        ..Default::default()
    })
    .await;
    let allowed_dir = allowed.display().to_string();
    c.start_worker_with(
        1,
        &[
            "--allow-command",
            "true",
            "--allow-command",
            "bash",
            "--allow-command",
            "sh",
            "--allow-env",
            "*",
            "--allow-cwd",
            &allowed_dir,
        ],
    );
    let client = c.client().await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while client.workers().await.map(|w| w.len()).unwrap_or(0) < 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the worker starts");

    // The CLI refuses what no worker would pass, before sending it.
    let out = c.warren(&[
        "submit",
        "--cmd",
        "--env",
        &format!("LD_PRELOAD={}", so.display()),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("LD_PRELOAD"), "{}", stderr(&out));

    // Sent anyway (the library, or a raw publish), the worker refuses it,
    // even though --allow-env '*' allows every other name.
    let program = |argv: &[&str], env: &[(&str, &str)], cwd: Option<&str>| {
        let options = CommandOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: cwd.map(String::from),
            json_stdout: false,
        };
        let argv = argv.iter().map(|a| json!(a)).collect();
        task_args(argv, &options)
    };
    let so = so.display().to_string();
    let script = script.display().to_string();
    let walks = [
        program(&["true"], &[("LD_PRELOAD", &so)], None),
        program(&["bash", "-c", "true"], &[("BASH_ENV", &script)], None),
        program(&["sh", "-c", "true"], &[("PATH", &allowed_dir)], None),
        program(&["sh", "-c", "true"], &[("ENV", &script)], None),
        program(&["true"], &[], Some("/etc")),
        program(&["true"], &[], Some(&format!("{allowed_dir}/etc"))),
        program(&["true"], &[], Some(&format!("{allowed_dir}/../.."))),
    ];
    for args in walks {
        let f = client
            .submit_with(COMMAND_FUNC, args.clone(), &commands_queue())
            .await
            .unwrap();
        let failure = failure_of(&f).await;
        assert_eq!(failure.kind, "CommandNotAllowed", "{args:?}: {failure:?}");
    }
    assert!(!marker.exists(), "a task's code ran in an allowed program");

    // Allowed ones still work.
    let f = client
        .submit_with(
            COMMAND_FUNC,
            program(
                &["sh", "-c", "echo $GREETING; pwd"],
                &[("GREETING", "hi")],
                Some(&allowed_dir),
            ),
            &commands_queue(),
        )
        .await
        .unwrap();
    let v = f.result().await.unwrap();
    assert_eq!(v, json!(format!("hi\n{allowed_dir}\n")));

    // A program cannot read the worker's password from /proc.
    let f = client
        .submit_with(
            COMMAND_FUNC,
            program(
                &["sh", "-c", "tr '\\0' '\\n' < /proc/$PPID/environ"],
                &[],
                None,
            ),
            &commands_queue(),
        )
        .await
        .unwrap();
    let environ = f.result().await.unwrap();
    let environ = environ.as_str().unwrap_or_default();
    assert!(environ.contains("WARREN_AMQP_URL="), "{environ}");
    assert!(
        !environ.contains(":guest@"),
        "the password is readable: {environ}"
    );
    assert!(environ.contains("AWS_SECRET_ACCESS_KEY="), "{environ}");
    for secret in ["warren-s3-secret-marker", "aws-secret-marker"] {
        assert!(
            !environ.contains(secret),
            "the S3 secret is readable: {environ}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_limit_below_warrens_setting_fails_the_task_alone() {
    const BROKER: usize = 1_048_576;
    let rabbit = PrivateRabbit::start(&[&format!("max_message_size = {BROKER}")]);
    // warren's own settings at their defaults (16 MiB messages), above the
    // broker's 1 MiB: the stock RabbitMQ 4 / stock warren mismatch, lowered.
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        env: vec![
            ("WARREN_AMQP_URL".into(), rabbit.amqp_url()),
            ("WARREN_MAX_OUTPUT_BYTES".into(), "2000000".into()),
        ],
        ..Default::default()
    })
    .await;
    c.start_worker_with(2, &["--allow-command", "sh"]);
    c.wait_for_workers(1).await;
    let client = c.client().await;
    let a = client
        .submit("identity", ("x".repeat(600_000),))
        .await
        .unwrap();
    let b = client
        .submit("identity", ("y".repeat(600_000),))
        .await
        .unwrap();
    // A work message of 1.2 MB: the scheduler's publish is refused.
    let both = client.submit("add_them", (&a, &b)).await.unwrap();
    let failure = failure_of(&both).await;
    assert_eq!(failure.kind, "PayloadTooLarge", "{failure:?}");
    assert!(failure.message.contains(&BROKER.to_string()), "{failure:?}");
    let f = client.submit("inc", (1,)).await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(30), f.result()).await;
    assert_eq!(v.expect("dispatch goes on").unwrap(), json!(2));

    // A result of 1.2 MB: the worker's report is refused.
    let big = task_args(
        vec![
            json!("sh"),
            json!("-c"),
            json!("head -c 1200000 /dev/zero | tr '\\0' x"),
        ],
        &CommandOptions::default(),
    );
    let f = client
        .submit_with(COMMAND_FUNC, big, &commands_queue())
        .await
        .unwrap();
    let failure = failure_of(&f).await;
    assert_eq!(failure.kind, "PayloadTooLarge", "{failure:?}");
    assert!(failure.message.contains("max_message_size"), "{failure:?}");
    let f = client.submit("inc", (2,)).await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(30), f.result()).await;
    assert_eq!(v.expect("the worker goes on").unwrap(), json!(3));
    c.shutdown().await;
}

/// Publishes `request` to the submit queue as anyone with broker access
/// could, with `reply_to`; the scheduler's answer if one comes within 10 s.
async fn raw_request(
    c: &Cluster,
    body: &[u8],
    reply_to: Option<&str>,
) -> Option<Vec<warren_core::messages::Refusal>> {
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    let replies = conn.create_channel().await.unwrap();
    let name = amqp::private_queue_name(&c.settings.namespace, "client");
    let (queue, mut consumer) = amqp::private_queue(&replies, &name, None, "raw-test")
        .await
        .unwrap();
    let reply_to = reply_to.unwrap_or(&queue);
    let props = amqp::json_properties(&[]).with_reply_to(amqp::name(reply_to).unwrap());
    let submit = c.topology().submit_queue();
    let confirm = amqp::publish(&ch, "", &submit, body, props).await.unwrap();
    amqp::confirmed(vec![confirm], "test").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(d)) = consumer.next().await {
            let events: ClientEvents = serde_json::from_slice(&d.data).unwrap();
            for e in events.events {
                if let ClientEvent::Submitted { refused, .. } = e {
                    return refused;
                }
            }
        }
        panic!("the reply queue closed");
    })
    .await
    .ok()
}

fn spec(key: &str) -> TaskSpec {
    TaskSpec::new(key, "inc", vec![json!(1)])
}

fn submit_body(tasks: Vec<TaskSpec>) -> Vec<u8> {
    serde_json::to_vec(&ClientRequest::Submit {
        v: PROTOCOL_VERSION,
        batch: "raw".into(),
        tasks,
        deps_in_flight: false,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduler_checks_what_a_client_was_trusted_to() {
    let c = Cluster::start_with(ClusterOptions {
        workers: 1,
        concurrency: 1,
        env: vec![("WARREN_MAX_PAYLOAD_BYTES".into(), "100000".into())],
        ..Default::default()
    })
    .await;
    let mut bad = spec("raw-bad-timeout");
    bad.timeout_secs = Some(1e20);
    let mut queue = spec("raw-bad-queue");
    queue.queue = "q".repeat(250);
    let mut retries = spec("raw-bad-retries");
    retries.retries = u32::MAX;
    let refused = raw_request(
        &c,
        &submit_body(vec![bad, queue, retries, spec("raw-good")]),
        None,
    )
    .await
    .expect("answered");
    let reasons: Vec<&str> = refused.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(refused.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("time limit"), "{reasons:?}");
    assert!(reasons[1].contains("255"), "{reasons:?}");
    assert!(reasons[2].contains("retries"), "{reasons:?}");
    let v = ok_stdout(&c.warren(&["result", "--timeout", "20", "raw-good"]));
    assert_eq!(v.trim(), "2");

    // Over max_payload_bytes: refused whole, recorded nothing.
    let mut big = spec("raw-big");
    big.args = vec![json!("x".repeat(200_000))];
    let refused = raw_request(&c, &submit_body(vec![big]), None)
        .await
        .expect("answered");
    assert!(
        refused[0].reason.contains("max_payload_bytes"),
        "{refused:?}"
    );
    let out = c.warren(&["status", "raw-big"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("raw-big unknown"), "{status}");

    // More tasks than one request may carry.
    let many = (0..=warren_core::limits::MAX_TASKS_PER_REQUEST)
        .map(|i| spec(&format!("raw-many-{i}")))
        .collect();
    let refused = raw_request(&c, &submit_body(many), None)
        .await
        .expect("answered");
    assert!(refused[0].reason.contains("1001 tasks"), "{refused:?}");

    // A reply_to outside the namespace's client queues is not answered (the
    // task is still recorded and runs), nor published to.
    let other = format!("{}.work.default", c.settings.namespace);
    let answer = raw_request(&c, &submit_body(vec![spec("raw-elsewhere")]), Some(&other)).await;
    assert!(answer.is_none(), "answered a reply_to of {other}");
    let v = ok_stdout(&c.warren(&["result", "--timeout", "20", "raw-elsewhere"]));
    assert_eq!(v.trim(), "2");
    c.shutdown().await;
}

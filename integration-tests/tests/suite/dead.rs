//! `warren dead` (issue 17): dead letters listed in warren's terms, shown,
//! replayed to their origin once fixed, and purged. Nothing is lost: a
//! dead letter leaves `<ns>.dead` only once its replay is confirmed.

use std::time::{Duration, Instant};

use serde_json::json;
use warren_core::amqp;
use warren_core::messages::{ClientRequest, PROTOCOL_VERSION, TaskSpec};
use warren_core::topology::{ORIGIN_HEADER, REASON_HEADER};
use warren_integration_tests::{Cluster, ok_stdout};

/// The rows of `warren dead list` (header line dropped), split in columns.
fn rows(c: &Cluster) -> Vec<Vec<String>> {
    ok_stdout(&c.warren(&["dead", "list"]))
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn wait_for_rows(c: &Cluster, n: usize, what: &str) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = rows(c);
        if r.len() == n {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_shown_replayed_and_purged() {
    let c = Cluster::start(1, 1).await;
    let topo = c.topology();
    let conn = amqp::connect(&c.settings, "warren-tests").await.unwrap();
    let ch = amqp::confirm_channel(&conn).await.unwrap();
    let publish = |queue: String, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        let ch = ch.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let confirm = amqp::publish(&ch, "", &queue, &body, amqp::json_properties(&h))
                .await
                .unwrap();
            amqp::confirmed(vec![confirm], "test").await.unwrap();
        }
    };

    // A malformed request: the scheduler dead-letters it.
    publish(
        topo.submit_queue(),
        br#"{"v":1,"bogus":true}"#.to_vec(),
        vec![],
    )
    .await;
    let r = wait_for_rows(&c, 1, "the malformed request was not dead-lettered");
    let bad_id = r[0][0].clone();
    assert_eq!(r[0][3], topo.submit_queue(), "{r:?}");
    assert_eq!(r[0][2], "0", "replays: {r:?}");
    let shown = ok_stdout(&c.warren(&["dead", "show", &bad_id]));
    assert!(shown.contains(r#""bogus":true"#), "{shown}");
    assert!(
        shown.contains(&format!("origin: {}", topo.submit_queue())),
        "{shown}"
    );

    // A good request held back in the dead queue (as if refused by a
    // scheduler that is fixed now): replaying it runs its task.
    let body = serde_json::to_vec(&ClientRequest::Submit {
        v: PROTOCOL_VERSION,
        batch: "held".into(),
        tasks: vec![TaskSpec::new("replayed-inc", "inc", vec![json!(41)])],
        deps_in_flight: false,
    })
    .unwrap();
    publish(
        topo.dead_queue(),
        body,
        vec![
            (ORIGIN_HEADER, topo.submit_queue()),
            (REASON_HEADER, "held back by the test".into()),
        ],
    )
    .await;
    let r = wait_for_rows(&c, 2, "the held request is not listed");
    let good = r.iter().find(|row| row[0] != bad_id).unwrap().clone();
    assert_eq!(good[4], "replayed-inc", "{good:?}");
    assert!(good.join(" ").contains("held back by the test"), "{good:?}");

    // An unknown id is refused, naming it, and moves nothing.
    let out = c.warren(&["dead", "replay", "ffffffffffff"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ffffffffffff"));
    assert_eq!(rows(&c).len(), 2);

    let replayed = ok_stdout(&c.warren(&["dead", "replay", &good[0]]));
    assert_eq!(replayed.trim(), good[0]);
    let v = ok_stdout(&c.warren(&["result", "--timeout", "20", "replayed-inc"]));
    assert_eq!(v.trim(), "42");

    // The malformed one, replayed, dies again and says it was replayed once.
    ok_stdout(&c.warren(&["dead", "replay", &bad_id]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = rows(&c);
        if r.len() == 1 && r[0][2] == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "not dead-lettered again: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let purged = ok_stdout(&c.warren(&["dead", "purge", "--all"]));
    assert_eq!(purged.lines().count(), 1, "{purged}");
    assert!(rows(&c).is_empty());
    c.shutdown().await;
}

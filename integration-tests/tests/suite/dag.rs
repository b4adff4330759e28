//! Graphs bigger than the notebook's: a 2,047-task reduction tree and a chain.

use serde_json::{Value, json};
use warren_client::SubmitOptions;
use warren_integration_tests::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn a_two_thousand_task_reduction_tree_adds_up() {
    let c = Cluster::start(2, 2).await;
    let client = c.client().await;
    let n: i64 = 1024;
    // A wide map, like the notebook's, then a tree of add_them over it.
    let mut level = client.map("inc", 0..n).await.unwrap();
    let mut tasks = level.len();
    while level.len() > 1 {
        let pairs: Vec<Vec<Value>> = level
            .chunks(2)
            .map(|p| {
                vec![
                    serde_json::to_value(&p[0]).unwrap(),
                    serde_json::to_value(&p[1]).unwrap(),
                ]
            })
            .collect();
        level = client
            .map_with("add_them", pairs, &SubmitOptions::default())
            .await
            .unwrap();
        tasks += level.len();
    }
    assert_eq!(tasks, 2047);
    let expected: i64 = (0..n).map(|i| i + 1).sum();
    assert_eq!(level[0].result().await.unwrap(), json!(expected));
    // Futures already awaited are not kept by the client: its memory follows
    // what it still waits for, not everything it ever submitted.
    assert!(client.tracked() < 10, "{} entries kept", client.tracked());
    // And a released future still answers, from Redis.
    assert_eq!(level[0].result().await.unwrap(), json!(expected));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_dependent_tasks_runs_in_order() {
    let c = Cluster::start(1, 2).await;
    let client = c.client().await;
    let mut f = client.submit("inc", (0,)).await.unwrap();
    for _ in 1..300 {
        f = client.submit("inc", (&f,)).await.unwrap();
    }
    assert_eq!(f.result().await.unwrap(), json!(300));
    // Futures nested inside lists and maps are dependencies too.
    let a = client.submit("inc", (1,)).await.unwrap();
    let b = client.submit("inc", (2,)).await.unwrap();
    let nested = client
        .submit("identity", (json!({"xs": [&a, {"b": &b}], "n": 7}),))
        .await
        .unwrap();
    assert_eq!(
        nested.result().await.unwrap(),
        json!({"xs": [2, {"b": 3}], "n": 7})
    );
    c.shutdown().await;
}

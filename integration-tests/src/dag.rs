//! The DAG the fault-injection suites run, and how they count what became of
//! it: `slow_inc` leaves summed pairwise by `add_them` up to one root, so every
//! value can be checked against arithmetic (the leaves `i + 1`, the root their
//! sum), and Redis's `stats` counts each final transition once.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde_json::{Value, json};
use warren_client::{Client, Future, State, SubmitOptions};
use warren_core::store::Store;

/// Submits `leaves` leaves `slow_inc(i, 5)` and the tree of `add_them` over
/// them; returns the leaves, the root and the number of tasks.
pub async fn submit_tree(client: &Client, leaves: i64) -> (Vec<Future>, Future, usize) {
    submit_tree_of(client, leaves, 5).await
}

/// [`submit_tree`] with leaves of `ms` milliseconds each.
pub async fn submit_tree_of(client: &Client, leaves: i64, ms: u64) -> (Vec<Future>, Future, usize) {
    let opts = SubmitOptions::default();
    let args = (0..leaves).map(|i| vec![json!(i), json!(ms)]).collect();
    let leaf_futures = client.map_with("slow_inc", args, &opts).await.unwrap();
    let mut total = leaf_futures.len();
    let mut level = leaf_futures.clone();
    while level.len() > 1 {
        let mut pairs: Vec<Vec<Value>> = Vec::new();
        let mut carry = None;
        for chunk in level.chunks(2) {
            match chunk {
                [a, b] => pairs.push(vec![
                    serde_json::to_value(a).unwrap(),
                    serde_json::to_value(b).unwrap(),
                ]),
                [a] => carry = Some(a.clone()),
                _ => unreachable!(),
            }
        }
        let mut next = client.map_with("add_them", pairs, &opts).await.unwrap();
        total += next.len();
        next.extend(carry);
        level = next;
    }
    (leaf_futures, level.remove(0), total)
}

/// Whether the root has finished.
pub async fn finished(store: &Store, root: &str) -> bool {
    matches!(store.states(&[root.to_string()]).await, Ok(s) if s[0] == Some(State::Finished))
}

/// What became of a tree of `total` tasks.
#[derive(Debug)]
pub struct Tally {
    /// Keys (of the leaves and the root) not `finished`.
    pub lost: usize,
    /// Final `finished` transitions Redis counted.
    pub finished: u64,
    /// Transitions beyond one per task.
    pub duplicated: u64,
    /// Every counter of the namespace.
    pub stats: HashMap<String, u64>,
}

/// Counts the tree's outcome from Redis.
pub async fn tally(store: &Store, keys: &[String], total: usize) -> Tally {
    let mut lost = 0;
    for chunk in keys.chunks(1000) {
        let states = store.states(chunk).await.unwrap();
        lost += states
            .iter()
            .filter(|s| **s != Some(State::Finished))
            .count();
    }
    let mut con = store.connection();
    let stats: HashMap<String, u64> = con
        .hgetall(format!("{}stats", store.prefix()))
        .await
        .unwrap();
    let finished = stats.get("finished").copied().unwrap_or(0);
    Tally {
        lost,
        finished,
        duplicated: finished.saturating_sub(total as u64),
        stats,
    }
}

/// Checks every value against arithmetic: the leaves `i + 1`, the root
/// their sum.
pub async fn check_values(client: &Client, leaves: &[Future], root: &Future) {
    let values = client.gather(leaves).await.unwrap();
    for (i, v) in values.iter().enumerate() {
        assert_eq!(*v, json!(i as i64 + 1), "leaf {i}");
    }
    let n = leaves.len() as i64;
    assert_eq!(
        root.result().await.unwrap(),
        json!(n * (n + 1) / 2),
        "the root"
    );
}

/// The end of every fault suite: tallies the tree whose leaves and root are
/// given, prints `faults: N injected, tasks: T submitted, ...`, and asserts
/// that every task finished exactly once, none with an error, each with the
/// value arithmetic gives.
pub async fn assert_exactly_once(
    client: &Client,
    store: &Store,
    faults: usize,
    leaves: &[Future],
    root: &Future,
    total: usize,
) {
    let mut keys: Vec<String> = leaves.iter().map(|f| f.key().to_string()).collect();
    keys.push(root.key().to_string());
    let t = tally(store, &keys, total).await;
    println!(
        "faults: {faults} injected, tasks: {total} submitted, {} finished, {} lost, {} duplicated transitions",
        t.finished, t.lost, t.duplicated
    );
    assert_eq!(t.lost, 0, "{:?}", t.stats);
    assert_eq!(
        t.finished, total as u64,
        "each task must finish exactly once: {:?}",
        t.stats
    );
    assert_eq!(t.stats.get("error"), None, "{:?}", t.stats);
    check_values(client, leaves, root).await;
}

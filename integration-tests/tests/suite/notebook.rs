//! Every cell of the dask futures notebook, through the Rust client, against a
//! real RabbitMQ, Redis, scheduler and two workers. Expected values come from a
//! sieve computed here, not from the workers' algorithm.

use std::time::Instant;

use serde_json::json;
use warren_client::{Error, State, Status, Terminal};
use warren_integration_tests::{Cluster, primes_below};

#[tokio::test(flavor = "multi_thread")]
async fn every_notebook_cell_gives_the_notebooks_results() {
    // "client = Client(...)": a scheduler, two workers, and a client.
    let cluster = Cluster::start(2, 1).await;
    let client = cluster.client().await;

    // N = client.submit(count_primes_less_than, 5000000); N is pending or done.
    let n = client
        .submit("count_primes_less_than", (5_000_000,))
        .await
        .unwrap();
    let st = n.status().await.unwrap();
    assert!(
        matches!(st.status, Status::Pending | Status::Finished),
        "{st}"
    );
    // N.result()
    assert_eq!(n.result().await.unwrap(), json!(primes_below(5_000_000)));
    assert_eq!(n.status().await.unwrap().status, Status::Finished);

    // M = client.submit(count_primes_less_than, 5000001); print(M.result())
    let m = client
        .submit("count_primes_less_than", (5_000_001,))
        .await
        .unwrap();
    assert_eq!(m.result_as::<i64>().await.unwrap(), primes_below(5_000_001));

    // futures = client.map(count_primes_less_than, range(3000001, 3000010))
    let futures = client
        .map("count_primes_less_than", 3_000_001..3_000_010)
        .await
        .unwrap();
    assert_eq!(futures.len(), 9);
    let values = client.gather(&futures).await.unwrap();
    let expected: Vec<_> = (3_000_001..3_000_010)
        .map(|i| json!(primes_below(i)))
        .collect();
    assert_eq!(values, expected);
    for f in &futures {
        assert_eq!(f.status().await.unwrap().status, Status::Finished);
    }

    // distributed_test(): map + gather of 1500000 + i, printed in order.
    let started = Instant::now();
    let futures = client
        .map("count_primes_less_than", (0..9).map(|i| 1_500_000 + i))
        .await
        .unwrap();
    let results = client.gather(&futures).await.unwrap();
    let expected: Vec<_> = (0..9).map(|i| json!(primes_below(1_500_000 + i))).collect();
    assert_eq!(results, expected);
    eprintln!("distributed_test on 2 workers: {:?}", started.elapsed());

    // Msum = client.submit(add_them, M1, M2)
    let m1 = client
        .submit("count_primes_less_than", (4_000_000,))
        .await
        .unwrap();
    let m2 = client
        .submit("count_primes_less_than", (4_500_000,))
        .await
        .unwrap();
    let msum = client.submit("add_them", (&m1, &m2)).await.unwrap();
    assert_eq!(
        msum.result().await.unwrap(),
        json!(primes_below(4_000_000) + primes_below(4_500_000))
    );

    // The DAG: M3..M8, Msum1..Msum6, K = Msum5.result()
    let mut ms = Vec::new();
    for arg in [
        4_000_003, 4_500_004, 4_000_005, 4_500_006, 4_000_007, 4_500_008,
    ] {
        ms.push(
            client
                .submit("count_primes_less_than", (arg,))
                .await
                .unwrap(),
        );
    }
    let (m3, m4, m5, m6, m7, m8) = (&ms[0], &ms[1], &ms[2], &ms[3], &ms[4], &ms[5]);
    let msum1 = client.submit("add_them", (m3, m4)).await.unwrap();
    let msum2 = client.submit("add_them", (m5, m6)).await.unwrap();
    let msum3 = client.submit("add_them", (m7, m8)).await.unwrap();
    let msum4 = client.submit("add_them", (&msum1, &msum2)).await.unwrap();
    let msum5 = client.submit("add_them", (&msum4, &msum3)).await.unwrap();
    let msum6 = client.submit("add_them", (m3, &msum3)).await.unwrap();
    let k = msum5.result_as::<i64>().await.unwrap();
    let p = |m: i64| primes_below(m);
    let expected_k =
        p(4_000_003) + p(4_500_004) + p(4_000_005) + p(4_500_006) + p(4_000_007) + p(4_500_008);
    assert_eq!(k, expected_k);
    assert_eq!(
        msum6.result_as::<i64>().await.unwrap(),
        p(4_000_003) + p(4_000_007) + p(4_500_008)
    );

    // N = client.submit(goes_wrong); N has status error; N.result() raises with
    // its traceback.
    let n = client.submit("goes_wrong", ()).await.unwrap();
    match n.result().await {
        Err(Error::Task { key, failure }) => {
            assert_eq!(key, n.key());
            assert_eq!(failure.kind, "ZeroDivisionError");
            assert_eq!(failure.message, "division by zero");
            assert!(
                failure.traceback.starts_with("Traceback"),
                "{}",
                failure.traceback
            );
            assert!(
                failure.traceback.contains("goes_wrong"),
                "{}",
                failure.traceback
            );
        }
        other => panic!("expected the task's error, got {other:?}"),
    }
    assert_eq!(n.status().await.unwrap().status, Status::Error);
    assert!(matches!(n.outcome().await.unwrap(), Terminal::Error { .. }));

    // client.restart(): every future cancelled, queues empty, both workers ready.
    let pending = client.submit("sleep", (30,)).await.unwrap();
    let report = client.restart().await.unwrap();
    assert_eq!(report.workers_expected, 2);
    assert_eq!(report.workers_ready.len(), 2, "{report:?}");
    for f in [&pending, &msum5, &m1] {
        assert_eq!(f.status().await.unwrap().state, State::Cancelled);
        assert!(matches!(f.result().await, Err(Error::Cancelled { .. })));
    }
    let work_queue = cluster.topology().work_queue("default");
    assert_eq!(cluster.queue_depth(&work_queue).await, 0);

    // And the cluster works afterwards.
    let again = client.submit("inc", (41,)).await.unwrap();
    assert_eq!(again.result().await.unwrap(), json!(42));
    cluster.shutdown().await;
}

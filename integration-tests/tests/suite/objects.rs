//! Big values in an object store (issue 36): with `store_url`, a value over
//! `inline_max_bytes` is written to the store's directory and Redis keeps
//! nothing of it; small values stay in Redis; a changed object is refused;
//! schedulers sweep objects older than `result_ttl_secs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use warren_core::envelope::{self, Kind};
use warren_integration_tests::{Cluster, ClusterOptions};

/// A fresh directory for one test's store.
fn store_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "warren-it-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&d).expect("store dir");
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn big_values_go_to_the_store_small_ones_stay_in_redis_and_old_ones_are_swept() {
    let dir = store_dir("objects");
    let c = Cluster::start_with(ClusterOptions {
        env: vec![
            (
                "WARREN_STORE_URL".into(),
                format!("file://{}", dir.display()),
            ),
            ("WARREN_RESULT_TTL_SECS".into(), "4".into()),
        ],
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    let ns = &c.settings.namespace;
    let blobs = dir.join(ns).join("blobs");
    let mut redis = redis::Client::open(c.settings.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    // Over inline_max_bytes (64 KiB): one file named by its hash, nothing in
    // Redis, the same bytes back.
    let frame: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let big = envelope::seal(Kind::Data, "value", b"{}", &[frame.as_slice()], None).unwrap();
    let r = client.put_blob(&big).await.unwrap();
    assert!(blobs.join(&r.hash).is_file());
    let in_redis: bool = redis.exists(format!("{ns}:blob:{}", r.hash)).await.unwrap();
    assert!(!in_redis, "a big value must not be in Redis");
    assert_eq!(client.get_blob(&r).await.unwrap(), big);

    // A task's result that refers to it, read by the CLI (`--raw` writes
    // the value's own bytes, from the store).
    let f = client.submit("identity", (r.to_json(),)).await.unwrap();
    f.result().await.unwrap();
    let out = c.warren(&["result", "--raw", f.key()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 3_000_000);

    // At most inline_max_bytes: in Redis, not in the store.
    let small = client.put_blob(b"small").await.unwrap();
    assert!(!blobs.join(&small.hash).exists());
    let in_redis: bool = redis
        .exists(format!("{ns}:blob:{}", small.hash))
        .await
        .unwrap();
    assert!(in_redis);
    assert_eq!(client.get_blob(&small).await.unwrap(), b"small");

    // A process without the setting says where to look.
    let mut plain = c.settings.clone();
    plain.store_url.clear();
    let blind = warren_client::Client::connect(plain).await.unwrap();
    let err = blind.get_blob(&r).await.unwrap_err().to_string();
    assert!(err.contains("store_url"), "{err}");

    // An object someone changed is refused, not returned.
    let mut changed = big.clone();
    changed[100] ^= 1;
    std::fs::write(blobs.join(&r.hash), &changed).unwrap();
    let err = client.get_blob(&r).await.unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");

    // The scheduler sweeps objects older than result_ttl_secs (4 s here,
    // so it sweeps every 4 s): within 15 s the file is gone.
    let deadline = Instant::now() + Duration::from_secs(15);
    while blobs.join(&r.hash).exists() {
        assert!(
            Instant::now() < deadline,
            "the scheduler did not sweep an object older than result_ttl_secs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

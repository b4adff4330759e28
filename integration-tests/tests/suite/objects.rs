//! Big values in an object store (issue 36): with `store_url`, a value over
//! `inline_max_bytes` is written to the store and Redis keeps nothing of
//! it; small values stay in Redis; a changed object is refused; schedulers
//! sweep objects older than `result_ttl_secs`; a value is deleted with the
//! last future that holds it. The same tests run on a
//! directory and on a real S3-compatible server (Garage, which
//! `scripts/s3.sh` installs and starts; `scripts/test.sh` runs it first).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::AsyncCommands;
use warren_client::{Forgotten, SubmitOptions};
use warren_core::envelope::{self, Kind};
use warren_core::store::Store;
use warren_core::store::blobs::BlobRef;
use warren_core::store::objects::{Objects, Opened};
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

/// The S3 server and test key of `scripts/s3.sh`, unless the environment
/// names others (`WARREN_TEST_S3_*`).
fn s3_env() -> Vec<(String, String)> {
    let var = |name: &str, default: &str| {
        std::env::var(format!("WARREN_TEST_S3_{name}")).unwrap_or_else(|_| default.to_string())
    };
    let bucket = var("BUCKET", "warren-test");
    let prefix = uuid::Uuid::new_v4().simple().to_string();
    vec![
        (
            "WARREN_STORE_URL".into(),
            format!("s3://{bucket}/it-{prefix}"),
        ),
        (
            "WARREN_S3_ENDPOINT".into(),
            var("ENDPOINT", "http://127.0.0.1:3900"),
        ),
        ("WARREN_S3_REGION".into(), var("REGION", "garage")),
        (
            "WARREN_S3_ACCESS_KEY_ID".into(),
            var("ACCESS_KEY_ID", "GK0000000000000000000000a1"),
        ),
        (
            "WARREN_S3_SECRET_ACCESS_KEY".into(),
            var(
                "SECRET_ACCESS_KEY",
                "776172726e0000000000000000000000000000000000000000000000000000b1",
            ),
        ),
    ]
}

/// A fresh directory store for one test, and the settings that name it.
fn dir_store(name: &str) -> (PathBuf, Vec<(String, String)>) {
    let dir = store_dir(name);
    let url = format!("file://{}", dir.display());
    (dir, vec![("WARREN_STORE_URL".into(), url)])
}

#[tokio::test(flavor = "multi_thread")]
async fn big_values_go_to_a_directory_store_and_old_ones_are_swept() {
    let (dir, env) = dir_store("objects");
    big_values_go_to_the_store(env).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn big_values_go_to_an_s3_store_and_old_ones_are_swept() {
    big_values_go_to_the_store(s3_env()).await;
}

/// Runs the test on the store `env` names.
async fn big_values_go_to_the_store(mut env: Vec<(String, String)>) {
    env.push(("WARREN_RESULT_TTL_SECS".into(), "4".into()));
    let c = Cluster::start_with(ClusterOptions {
        env,
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    let ns = &c.settings.namespace;
    let objects = Objects::open(&c.settings)
        .expect("the store opens")
        .expect("a store_url is set");
    let stored = |r: &BlobRef| {
        let (objects, r) = (objects.clone(), r.clone());
        async move { objects.get(&r).await.expect("the store answers") }
    };
    let mut redis = redis::Client::open(c.settings.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    // Over inline_max_bytes (64 KiB): one object named by its hash, nothing
    // in Redis, the same bytes back.
    let frame: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let big = envelope::seal(Kind::Data, "value", b"{}", &[frame.as_slice()], None).unwrap();
    let r = client.put_blob(big.clone()).await.unwrap();
    assert_eq!(stored(&r).await.as_deref(), Some(&big[..]));
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
    let small = client.put_blob(&b"small"[..]).await.unwrap();
    assert_eq!(stored(&small).await, None);
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

    // Read as it arrives into a buffer of one's own (what a Python
    // bytearray gets), once the store has said the size: whole and checked;
    // a value of another size or none at all is not read.
    let read_own = |r: BlobRef| {
        let objects = objects.clone();
        async move {
            let mut buf = vec![0u8; r.size as usize];
            match objects.open_object(&r).await.expect("the store answers") {
                Opened::Here(incoming) => objects
                    .read_incoming(&r, incoming, &mut buf)
                    .await
                    .expect("the store answers")
                    .map(|_| buf)
                    .ok_or("not the value's bytes"),
                Opened::Missing => Err("missing"),
                Opened::Changed => Err("another size"),
            }
        }
    };
    assert_eq!(read_own(r.clone()).await.as_deref(), Ok(&big[..]));
    assert_eq!(read_in_chunks(&client, &r).await.as_deref(), Ok(&big[..]));
    let longer = BlobRef {
        size: r.size + 1,
        ..r.clone()
    };
    assert_eq!(read_own(longer).await, Err("another size"));
    assert_eq!(read_own(BlobRef::of(b"never stored")).await, Err("missing"));

    // An object someone changed is refused, not returned.
    let mut changed = big.clone();
    changed[100] ^= 1;
    objects
        .put(&r.hash, Bytes::from(changed))
        .await
        .expect("the store takes a write");
    let err = client.get_blob(&r).await.unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");
    assert_eq!(read_own(r.clone()).await, Err("not the value's bytes"));
    // Read as it arrives (`warren result --raw`), the bytes pass before the
    // check ends: the end is the error, and the CLI says that what it wrote
    // is not the value.
    let streamed = read_in_chunks(&client, &r).await;
    assert!(
        streamed.as_ref().is_err_and(|e| e.contains("refused")),
        "{streamed:?}"
    );
    let out = c.warren(&["result", "--raw", f.key()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("discard them"),
        "{stderr}"
    );

    // The scheduler sweeps objects older than result_ttl_secs (4 s here,
    // so it sweeps every 4 s): within 15 s the object is gone.
    // (The object is the changed one: `get` refuses it, and it is there.)
    let deadline = Instant::now() + Duration::from_secs(15);
    while !matches!(objects.get(&r).await, Ok(None)) {
        assert!(
            Instant::now() < deadline,
            "the scheduler did not sweep an object older than result_ttl_secs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.shutdown().await;
}

/// The value `r` names, read in chunks as `warren result --raw` reads it;
/// the first error's text.
async fn read_in_chunks(client: &warren_client::Client, r: &BlobRef) -> Result<Vec<u8>, String> {
    let mut reader = client.read_blob(r).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.map_err(|e| e.to_string())? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn forgotten_values_leave_a_directory_store() {
    let (dir, env) = dir_store("forget");
    forgotten_values_leave_the_store(env).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forgotten_values_leave_an_s3_store() {
    forgotten_values_leave_the_store(s3_env()).await;
}

/// A value is deleted with the last future that holds it (`forget`,
/// `restart`), a grace after (zero here: the test reaps itself, as a
/// scheduler does every 10 s with a grace of a minute), and not while a
/// future or a pending task still refers to it.
async fn forgotten_values_leave_the_store(env: Vec<(String, String)>) {
    let c = Cluster::start_with(ClusterOptions {
        env,
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    let ns = &c.settings.namespace;
    let objects = Objects::open(&c.settings)
        .expect("the store opens")
        .expect("a store_url is set");
    let stored = |r: &BlobRef| {
        let (objects, r) = (objects.clone(), r.clone());
        async move { objects.get(&r).await.expect("the store answers") }
    };
    let store = Store::connect(&c.settings).await.expect("Redis answers");
    let reap = || {
        let store = store.clone();
        async move {
            store
                .reap_blobs(Duration::ZERO, 100)
                .await
                .expect("reap runs")
        }
    };
    let impure = SubmitOptions {
        pure: false,
        ..Default::default()
    };
    let value = |seed: u8, len: usize| {
        envelope::seal(Kind::Data, "value", b"{}", &[&vec![seed; len][..]], None).unwrap()
    };
    let identity = |r: &BlobRef, options: &SubmitOptions| {
        let (client, arg, options) = (client.clone(), r.to_json(), options.clone());
        async move {
            let f = client
                .submit_with("identity", (arg,), &options)
                .await
                .unwrap();
            if options.delay.is_none() {
                f.result().await.expect("identity finishes");
            }
            f.key().to_string()
        }
    };

    // One value, two futures: forgetting one keeps it, the other deletes it.
    let a = client.put_blob(value(1, 200_000)).await.unwrap();
    let (f1, f2) = (identity(&a, &impure).await, identity(&a, &impure).await);
    assert_eq!(client.forget(&[f1]).await.unwrap(), [Forgotten::Forgotten]);
    assert_eq!(reap().await.deleted, 0);
    assert!(stored(&a).await.is_some(), "another future holds the value");
    client.forget(&[f2]).await.unwrap();
    assert_eq!(reap().await.deleted, 1);
    assert_eq!(stored(&a).await, None, "forgotten by every future");
    assert!(
        client.get_blob(&a).await.is_err(),
        "nor in Redis, nor anywhere"
    );

    // Held again before the grace ends (a writer that stored the same bytes
    // and then referred to them): kept.
    let b = client.put_blob(value(2, 200_000)).await.unwrap();
    let f3 = identity(&b, &impure).await;
    client.forget(&[f3]).await.unwrap();
    identity(&b, &impure).await;
    let r = reap().await;
    assert_eq!((r.handled, r.deleted), (1, 0));
    assert!(stored(&b).await.is_some(), "held again: kept");

    // A pending task's argument keeps a value whose future is forgotten.
    let d = client.put_blob(value(3, 200_000)).await.unwrap();
    let f5 = identity(&d, &impure).await;
    let later = SubmitOptions {
        delay: Some(Duration::from_secs(600)),
        ..impure.clone()
    };
    identity(&d, &later).await;
    client.forget(&[f5]).await.unwrap();
    assert_eq!(reap().await.handled, 0, "nothing doomed");
    assert!(stored(&d).await.is_some(), "a pending task refers to it");

    // Restart lets go of every future's value.
    client.restart().await.unwrap();
    assert_eq!(reap().await.deleted, 1);
    assert_eq!(stored(&b).await, None, "restarted: deleted");

    // A value that is not JSON and small lives in Redis: deleted there.
    let s = client.put_blob(value(4, 100)).await.unwrap();
    let f6 = identity(&s, &impure).await;
    let mut redis = redis::Client::open(c.settings.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let blob_key = format!("{ns}:blob:{}", s.hash);
    assert!(redis.exists::<_, bool>(&blob_key).await.unwrap());
    client.forget(&[f6]).await.unwrap();
    assert_eq!(reap().await.deleted, 1);
    assert!(!redis.exists::<_, bool>(&blob_key).await.unwrap());
    c.shutdown().await;
}

/// The store `env` (`WARREN_*` settings) names, for a namespace of its own,
/// opened with the settings `more` as well.
fn objects_of(env: Vec<(String, String)>, more: &[(&str, String)]) -> Objects {
    let ns = format!(
        "it-store-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let names: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("WARREN_").to_lowercase(), v))
        .collect();
    let mut pairs: Vec<(&str, String)> =
        names.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    pairs.push(("namespace", ns));
    pairs.extend(more.iter().cloned());
    let settings = warren_core::Settings::load(None, &pairs).expect("settings");
    Objects::open(&settings)
        .expect("the store opens")
        .expect("a store_url is set")
}

#[tokio::test(flavor = "multi_thread")]
async fn values_are_sealed_into_a_directory_store_as_they_are_made() {
    let (dir, env) = dir_store("sealed");
    sealed_as_made(env).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn values_are_sealed_into_an_s3_store_as_they_are_made() {
    sealed_as_made(s3_env()).await;
}

/// [`Objects::put_sealed`]: a value of three parts and a bit stored as it
/// is made is the envelope `seal` makes, under its hash; written again, the
/// same; one that fails or changes while it is written leaves no object.
async fn sealed_as_made(env: Vec<(String, String)>) {
    let objects = objects_of(env, &[]);
    let frame: Vec<u8> = (0..(3 * warren_core::store::upload::PART_BYTES + 3))
        .map(|i| (i % 251) as u8)
        .collect();
    let whole = envelope::seal(Kind::Data, "value", b"{}", &[&frame], None).unwrap();
    let want = BlobRef::of(&whole);

    // `calls` counts the value being made; `spoil(call, envelope)` changes
    // what one call makes: cut short (an error) or other bytes.
    let put = |spoil: fn(usize, &mut Vec<u8>) -> std::io::Result<()>| {
        let (objects, frame) = (objects.clone(), frame.clone());
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut calls = 0;
            objects.put_sealed(&rt, &mut |out| {
                calls += 1;
                let mut made = Vec::new();
                envelope::seal_into(&mut made, Kind::Data, "value", b"{}", &[&frame], None)
                    .map_err(std::io::Error::other)?;
                spoil(calls, &mut made)?;
                out.write_all(&made)?;
                Ok((made.len() as u64, BlobRef::of(&made).hash))
            })
        })
    };
    let made = put(|_, _| Ok(())).await.unwrap().expect("stored");
    assert_eq!(made, (want.size, want.hash.clone()));
    let stored = objects.get(&want).await.unwrap();
    assert_eq!(stored.as_deref(), Some(&whole[..]), "the envelope, whole");
    assert_eq!(put(|_, _| Ok(())).await.unwrap().unwrap(), made, "again");
    objects.delete(&want.hash).await.unwrap();

    // One part's worth: kept from the first making, stored with one PUT.
    let small = envelope::seal(Kind::Data, "value", b"{}", &[&frame[..1 << 20]], None).unwrap();
    let r = BlobRef::of(&small);
    let (objects2, rt, bytes) = (
        objects.clone(),
        tokio::runtime::Handle::current(),
        small.clone(),
    );
    let stored_small = tokio::task::spawn_blocking(move || {
        objects2.put_sealed(&rt, &mut |out| {
            out.write_all(&bytes)?;
            Ok((bytes.len() as u64, BlobRef::of(&bytes).hash))
        })
    })
    .await
    .unwrap()
    .expect("stored");
    assert_eq!(stored_small, (r.size, r.hash.clone()));
    assert_eq!(objects.get(&r).await.unwrap().as_deref(), Some(&small[..]));
    objects.delete(&r.hash).await.unwrap();

    // Cut short on the last making (S3's upload; a directory's only one).
    let last = if objects.dir().is_some() { 1 } else { 2 };
    let failed = put(if last == 1 {
        |_, _| Err(std::io::Error::other("cut short"))
    } else {
        |call, _| match call {
            2 => Err(std::io::Error::other("cut short")),
            _ => Ok(()),
        }
    })
    .await
    .unwrap();
    assert!(
        failed.is_err_and(|e| e.to_string().contains("cut short")),
        "the error is the seal's"
    );
    assert_eq!(objects.get(&want).await.unwrap(), None, "no object");
    if last == 2 {
        // Other bytes the second time: refused, nothing under either name.
        let changed = put(|call, made| {
            if call == 2 {
                made[100] ^= 1;
            }
            Ok(())
        })
        .await
        .unwrap();
        assert!(
            changed.is_err_and(|e| e.to_string().contains("changed while it was written")),
            "a value made differently twice is refused"
        );
        assert_eq!(objects.get(&want).await.unwrap(), None, "no object");
    }
}

/// An S3 store with a cache on this machine (`cache_bytes`): a value
/// written is kept there and read from there (even once the store has lost
/// it), a changed file is a miss read from the store, and the cache stays
/// within its bound.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_stores_cache_keeps_what_was_written_within_its_bound() {
    let cache_dir = store_dir("cache");
    let env = s3_env();
    let cache = [
        ("cache_bytes", (50u64 << 20).to_string()),
        ("cache_dir", cache_dir.display().to_string()),
    ];
    let (objects, store_only) = (objects_of(env.clone(), &cache), objects_of(env, &[]));
    assert!(objects.cache().is_some() && store_only.cache().is_none());
    let value = |seed: u8| {
        let frame = vec![seed; 20 << 20];
        envelope::seal(Kind::Data, "value", b"{}", &[&frame], None).unwrap()
    };
    let put_sealed = |bytes: Vec<u8>| {
        let (objects, rt) = (objects.clone(), tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || {
            objects.put_sealed(&rt, &mut |out| {
                out.write_all(&bytes)?;
                Ok((bytes.len() as u64, BlobRef::of(&bytes).hash))
            })
        })
    };

    // Written (as a pool process writes a result): kept; read from the
    // cache even once the store has lost it.
    let a = value(1);
    let ra = BlobRef::of(&a);
    put_sealed(a.clone()).await.unwrap().expect("stored");
    assert!(cache_dir.join(&ra.hash).exists(), "kept as it was written");
    store_only.delete(&ra.hash).await.unwrap();
    assert_eq!(store_only.get(&ra).await.unwrap(), None);
    assert_eq!(objects.get(&ra).await.unwrap().as_deref(), Some(&a[..]));

    // A changed file is a miss: the store's bytes, and the file forgotten.
    store_only
        .put(&ra.hash, Bytes::from(a.clone()))
        .await
        .unwrap();
    let mut changed = a.clone();
    changed[10] ^= 1;
    std::fs::write(cache_dir.join(&ra.hash), &changed).unwrap();
    assert_eq!(objects.get(&ra).await.unwrap().as_deref(), Some(&a[..]));

    // Three values of 20 MiB in a cache of 50: the oldest goes.
    for seed in 2..5 {
        put_sealed(value(seed)).await.unwrap().expect("stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held: u64 = std::fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(
        held <= 50 << 20,
        "the cache holds {held} bytes, over its bound"
    );
    assert!(
        cache_dir.join(BlobRef::of(&value(4)).hash).exists(),
        "the newest stays"
    );
    for seed in 1..5 {
        objects
            .delete(&BlobRef::of(&value(seed)).hash)
            .await
            .unwrap();
    }
    assert_eq!(
        std::fs::read_dir(&cache_dir).unwrap().count(),
        0,
        "deleted here: forgotten here"
    );
    std::fs::remove_dir_all(&cache_dir).unwrap();
}

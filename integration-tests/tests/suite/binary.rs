//! Rust functions that take and return stored values (issue 36): a
//! `Binary` argument is read from the store by the worker, a `Binary`
//! result is stored and travels as its reference, in a thread and in a
//! child process (`--isolation process`), with values in Redis and in a
//! directory store.

use bytes::Bytes;
use serde_json::{Value, json};
use warren_client::Client;
use warren_core::binary::{self, Binary};
use warren_core::store::blobs::BlobRef;
use warren_integration_tests::{Cluster, ClusterOptions};

/// A cluster whose one worker runs tasks with `isolation`, with `env`.
async fn cluster(isolation: &str, env: Vec<(String, String)>) -> (Cluster, Client) {
    let mut c = Cluster::start_with(ClusterOptions {
        workers: 0,
        env,
        ..Default::default()
    })
    .await;
    c.start_worker_with(2, &["--isolation", isolation]);
    c.wait_for_workers(1).await;
    let client = c.client().await;
    (c, client)
}

/// The array `v` names, read and decoded as a client does.
async fn read_array(client: &Client, v: &Value) -> Binary {
    let r = BlobRef::from_json(v).unwrap_or_else(|| panic!("a stored value, got {v}"));
    let bytes = client.get_blob(&r).await.expect("the value is stored");
    binary::decode(Bytes::from(bytes), None).expect("an array")
}

fn f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn array(xs: &[f64], shape: Vec<u64>) -> Binary {
    let data: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    Binary::array(data, "<f8", shape).unwrap()
}

/// `scale` of a stored array, then `byte_count` of that result passed as a
/// future; wrong arguments are TypeErrors naming what they were.
async fn arrays_go_through_rust_functions(client: &Client, n: usize) {
    let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let stored = binary::encode(&array(&xs, vec![2, (n / 2) as u64])).unwrap();
    let r = client.put_blob(stored).await.unwrap();

    let scaled = client.submit("scale", (r.to_json(), 2.5)).await.unwrap();
    let out = read_array(client, &scaled.result().await.unwrap()).await;
    assert_eq!(out.dtype(), Some("<f8"));
    assert_eq!(out.shape(), Some(&[2, (n / 2) as u64][..]));
    let want: Vec<f64> = xs.iter().map(|x| x * 2.5).collect();
    assert_eq!(f64s(&out), want);

    let counted = client.submit("byte_count", (&scaled,)).await.unwrap();
    assert_eq!(counted.result().await.unwrap(), json!(n * 8));

    // Not a stored value: the registry's TypeError, in Python's words.
    let e = error_of(client, "scale", vec![json!([1.0, 2.0]), json!(2.0)]).await;
    assert!(
        e.contains("scale() argument 1 must be bytes or a numpy array, got list"),
        "{e}"
    );
    // A stored value that is neither bytes nor an array says what it is.
    let tuple = warren_core::envelope::seal(
        warren_core::envelope::Kind::Data,
        binary::VALUE_PURPOSE,
        br#"{"v":1,"codec":"data","root":{"$t":"tuple","v":[]},"describe":"tuple of 0"}"#,
        &[],
        None,
    )
    .unwrap();
    let t = client.put_blob(tuple).await.unwrap();
    let e = error_of(client, "byte_count", vec![t.to_json()]).await;
    assert!(
        e.contains("got a stored value") && e.contains("tuple of 0, not bytes"),
        "{e}"
    );
    // A function that takes JSON gets the reference and reads nothing.
    let same = client.submit("identity", (r.to_json(),)).await.unwrap();
    assert_eq!(same.result().await.unwrap(), r.to_json());
}

/// The error task `func(args)` ends with, as text.
async fn error_of(client: &Client, func: &str, args: Vec<Value>) -> String {
    let f = client.submit(func, args).await.unwrap();
    f.result().await.unwrap_err().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_functions_take_and_return_arrays_in_a_thread() {
    let (_c, client) = cluster("thread", Vec::new()).await;
    arrays_go_through_rust_functions(&client, 1_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_functions_take_and_return_arrays_in_a_child_process_and_a_directory_store() {
    let dir = std::env::temp_dir().join(format!(
        "warren-it-binary-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let env = vec![(
        "WARREN_STORE_URL".to_string(),
        format!("file://{}", dir.display()),
    )];
    let (_c, client) = cluster("process", env).await;
    // 8 MB: over inline_max_bytes, so in the directory store both ways,
    // and through the child's pipes both ways.
    arrays_go_through_rust_functions(&client, 1_000_000).await;
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files >= 1, "the big values are in the store");
    std::fs::remove_dir_all(&dir).unwrap();
}

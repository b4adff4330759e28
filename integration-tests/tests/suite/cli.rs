//! The notebook through the `warren` command line, and its contract: keys on
//! stdout, values as JSON, errors on stderr with exit codes.

use serde_json::{Value, json};
use warren_integration_tests::{Cluster, ok_stdout, primes_below};

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notebook_through_the_cli() {
    let c = Cluster::start(2, 1).await;

    // N = submit(count_primes_less_than, 5000000); status; result
    let n = ok_stdout(&c.warren(&["submit", "count_primes_less_than", "5000000"]));
    let n = n.trim();
    assert!(n.starts_with("count_primes_less_than-"), "{n}");
    let status = ok_stdout(&c.warren(&["status", n]));
    assert!(
        status.starts_with(&format!("{n} pending")) || status.trim() == format!("{n} finished"),
        "{status}"
    );
    let v: Value = serde_json::from_str(ok_stdout(&c.warren(&["result", n])).trim()).unwrap();
    assert_eq!(v, json!(primes_below(5_000_000)));
    assert_eq!(
        ok_stdout(&c.warren(&["status", n])).trim(),
        format!("{n} finished")
    );

    // pure by default: the same call is the same future; --no-pure is a new one.
    let again = ok_stdout(&c.warren(&["submit", "count_primes_less_than", "5000000"]));
    assert_eq!(again.trim(), n);
    let fresh = ok_stdout(&c.warren(&["submit", "--no-pure", "count_primes_less_than", "5000000"]));
    assert_ne!(fresh.trim(), n);
    let named = ok_stdout(&c.warren(&["submit", "--key", "my-inc", "inc", "1"]));
    assert_eq!(named.trim(), "my-inc");

    // futures = map(count_primes_less_than, range(3000001, 3000010)); gather
    let args: Vec<String> = (3_000_001..3_000_010).map(|i: i64| i.to_string()).collect();
    let mut map_args = vec!["map", "count_primes_less_than"];
    map_args.extend(args.iter().map(String::as_str));
    let keys = lines(&ok_stdout(&c.warren(&map_args)));
    assert_eq!(keys.len(), 9);
    let gathered = ok_stdout(&c.warren_with_stdin(&["gather", "-"], &keys.join("\n")));
    let expected: Vec<String> = (3_000_001..3_000_010)
        .map(|i| primes_below(i).to_string())
        .collect();
    assert_eq!(lines(&gathered), expected);
    let statuses = lines(&ok_stdout(
        &c.warren_with_stdin(&["status", "-"], &keys.join("\n")),
    ));
    assert_eq!(
        statuses,
        keys.iter()
            .map(|k| format!("{k} finished"))
            .collect::<Vec<_>>()
    );

    // Msum = submit(add_them, M1, M2)
    let m1 = ok_stdout(&c.warren(&["submit", "count_primes_less_than", "4000000"]));
    let m2 = ok_stdout(&c.warren(&["submit", "count_primes_less_than", "4500000"]));
    let (a1, a2) = (format!("@{}", m1.trim()), format!("@{}", m2.trim()));
    let msum = ok_stdout(&c.warren(&["submit", "add_them", &a1, &a2]));
    let total = ok_stdout(&c.warren(&["result", msum.trim()]));
    assert_eq!(
        total.trim(),
        (primes_below(4_000_000) + primes_below(4_500_000)).to_string()
    );

    // Futures nested in a list: sum([M1, M2, 1])
    let nested = format!(
        "[{{\"$future\":\"{}\"}}, {{\"$future\":\"{}\"}}, 1]",
        m1.trim(),
        m2.trim()
    );
    let s = ok_stdout(&c.warren(&["submit", "sum", &nested]));
    let total = ok_stdout(&c.warren(&["result", s.trim()]));
    assert_eq!(
        total.trim(),
        (primes_below(4_000_000) + primes_below(4_500_000) + 1).to_string()
    );

    // N = submit(goes_wrong); N.result() shows the traceback and fails.
    let bad = ok_stdout(&c.warren(&["submit", "goes_wrong"]));
    let out = c.warren(&["result", bad.trim()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ZeroDivisionError: division by zero"), "{err}");
    assert!(err.contains("Traceback (most recent call last)"), "{err}");
    assert_eq!(
        ok_stdout(&c.warren(&["status", bad.trim()])).trim(),
        format!("{} error", bad.trim())
    );
    // gather names the first failed key and exits 1.
    let out = c.warren(&["gather", m1.trim(), bad.trim()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        primes_below(4_000_000).to_string()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(bad.trim()));
    // A dependent of a failed future fails with the same error.
    let dep = ok_stdout(&c.warren(&["submit", "inc", &format!("@{}", bad.trim())]));
    let out = c.warren(&["result", dep.trim()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ZeroDivisionError"));

    // restart
    let slow = ok_stdout(&c.warren(&["submit", "sleep", "60"]));
    let out = ok_stdout(&c.warren(&["restart"]));
    assert!(out.contains("2/2 workers ready"), "{out}");
    assert_eq!(
        ok_stdout(&c.warren(&["status", slow.trim()])).trim(),
        format!("{} cancelled", slow.trim())
    );
    assert_eq!(c.warren(&["result", slow.trim()]).status.code(), Some(1));
    assert_eq!(c.queue_depth(&c.topology().work_queue("default")).await, 0);
    // After a restart the same pure call runs again, as in dask.
    let rerun = ok_stdout(&c.warren(&["submit", "count_primes_less_than", "4000000"]));
    assert_eq!(rerun.trim(), m1.trim());
    assert_eq!(
        ok_stdout(&c.warren(&["result", rerun.trim()])).trim(),
        primes_below(4_000_000).to_string()
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_detail_of_pending_futures() {
    let c = Cluster::start(1, 1).await;
    let slow = ok_stdout(&c.warren(&["submit", "sleep", "1.5"]));
    let after = ok_stdout(&c.warren(&["submit", "identity", &format!("@{}", slow.trim())]));
    std::thread::sleep(std::time::Duration::from_millis(700));
    let st = ok_stdout(&c.warren(&["status", slow.trim(), after.trim()]));
    assert_eq!(
        lines(&st),
        vec![
            format!("{} pending processing", slow.trim()),
            format!("{} pending waiting", after.trim())
        ]
    );
    // sleep returns None, as time.sleep does; identity passes it through.
    let v = ok_stdout(&c.warren(&["result", "--timeout", "30", after.trim()]));
    assert_eq!(v.trim(), "null");
    c.shutdown().await;
}

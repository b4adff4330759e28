"""Issue 11's benchmarks, side by side in one run (numbers, not asserted).

- the notebook's ``distributed_test()``: 9 x Python
  ``count_primes_less_than(1500000 + i)`` on 2 warren Python workers against
  the same function on dask with 2 single-threaded worker processes;
- 20,000 no-op Python ``inc`` tasks, ``map`` + ``gather`` from the Python
  client on Python workers, against dask's ``client.map`` + ``gather``;
- ``submit(inc).result()`` round trips and a chain of dependent ``inc``,
  both ways;
- the Python client submitting to the stock Rust ``inc`` on 2 Rust workers,
  against the Rust client (``client-cli/examples/throughput``) on the same
  stack;
- issue 32's rows: the no-op map of a function sent as code (a lambda)
  against the same of a ``@task`` function and against dask, and a map of an
  identity over 200 numpy arrays of 1 MiB, against dask.

Each row runs ``--repeat`` times (default 3), alternating warren and dask,
and prints the median. Run it with ``bash scripts/bench-python.sh``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLES = REPO / "python" / "examples"
sys.path[:0] = [str(HERE), str(EXAMPLES)]

import bench_funcs  # noqa: E402
import notebook_funcs  # noqa: E402

import warren  # noqa: E402


def median_of(n: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    values = [run() for _ in range(n)]
    return statistics.median(values), values


class WarrenStack:
    def __init__(self, bin_dir: Path) -> None:
        self.namespace = f"bench-py-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, WARREN_NAMESPACE=self.namespace)
        self.env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(EXAMPLES)])
        # Functions sent as code need the namespace key on both sides.
        key = REPO / ".warren-run" / "bench-python.key"
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [str(bin_dir / "warren"), "key", "new", "--file", str(key)],
                check=True,
                capture_output=True,
            )
        self.env["WARREN_KEY_FILE"] = os.environ["WARREN_KEY_FILE"] = str(key)
        logs = REPO / ".warren-run" / "bench-python"
        logs.mkdir(parents=True, exist_ok=True)
        self.procs = []
        argvs = [
            [str(bin_dir / "warren-scheduler")],
            [str(bin_dir / "warren-worker"), "--concurrency", "1"],
            [str(bin_dir / "warren-worker"), "--concurrency", "1"],
        ] + [
            [
                sys.executable,
                *("-m", "warren", "worker", "notebook_funcs", "bench_funcs"),
                *("--accept-code", "-c", "1"),
            ]
        ] * 2
        for i, argv in enumerate(argvs):
            log = open(logs / f"{i}.log", "wb")  # noqa: SIM115
            self.procs.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=log))
        self.client = warren.Client(namespace=self.namespace)
        deadline = time.monotonic() + 60
        while len(self.client.info()["workers"]) < 4:
            if time.monotonic() > deadline:
                raise TimeoutError("the warren stack did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=30)
        # Its values (hundreds of MiB in the array row) would otherwise stay
        # in Redis for result_ttl_secs and slow the next runs down.
        keys = subprocess.run(
            ["redis-cli", "--scan", "--pattern", f"{self.namespace}:*"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "del", *keys[i : i + 500]], capture_output=True)


def distributed_test(c, below: int) -> float:  # noqa: ANN001
    """The notebook's 9 x count_primes_less_than(below + i), on either client
    (``@task`` returns the function itself, so dask runs the same one)."""
    t = time.perf_counter()
    fs = c.map(notebook_funcs.count_primes_less_than, [below + i for i in range(9)], pure=False)
    values = c.gather(fs)
    took = time.perf_counter() - t
    if below == 1_500_000:
        assert values[-1] == 114156, values
    elif below <= 200_000:
        assert values == [count_primes(below + i) for i in range(9)], values
    return took


def count_primes(m: int) -> int:
    """Primes below `m` by a sieve: the reference for small inputs."""
    sieve = bytearray([1]) * max(m, 2)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(m**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return sum(sieve[:m])


def noop_rate(c, fn, n: int) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fs = c.map(fn, range(n), pure=False)
    values = c.gather(fs)
    assert values[0] == 1 and values[-1] == n
    return n / (time.perf_counter() - t)


def round_trip_ms(c, fn, rounds: int) -> float:  # noqa: ANN001
    lat = []
    for i in range(rounds):
        t = time.perf_counter()
        c.submit(fn, i, pure=False).result()
        lat.append(time.perf_counter() - t)
    return statistics.median(lat) * 1000


def chain_rate(c, fn, links: int) -> float:  # noqa: ANN001
    t = time.perf_counter()
    f = c.submit(fn, 0, pure=False)
    for _ in range(links - 1):
        f = c.submit(fn, f, pure=False)
    assert f.result() == links
    return links / (time.perf_counter() - t)


def arrays_wall(c, fn, arrays: list) -> float:  # noqa: ANN001
    t = time.perf_counter()
    out = c.gather(c.map(fn, arrays, pure=False))
    took = time.perf_counter() - t
    assert len(out) == len(arrays) and out[-1].shape == arrays[-1].shape
    return took


def identity(x):  # noqa: ANN001, ANN201 - the same function for both
    return x


def rust_client_rate(stack: WarrenStack, bin_dir: Path, n: int) -> float:
    out = subprocess.run(
        [str(bin_dir / "examples" / "throughput"), str(n)],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    found = re.search(r"gather: (\d+) tasks/s", out)
    assert found, out
    return float(found.group(1))


#: The rows of the comparison, as ``--only`` names them.
ROWS = ("distributed", "noop", "latency", "code", "arrays", "clients")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--links", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--primes-below", type=int, default=1_500_000)
    ap.add_argument("--arrays", type=int, default=200, help="1 MiB arrays of the array row")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a short form for the test command: every row runs, on a few hundred tasks, once",
    )
    ap.add_argument("--bin-dir", default=os.environ.get("WARREN_BIN_DIR", REPO / "target/release"))
    ap.add_argument(
        "--only",
        default=",".join(ROWS),
        help=f"the rows to run, comma-separated, of: {', '.join(ROWS)} (default: all)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(ROWS):
        ap.error(f"--only: no row {', '.join(sorted(only - set(ROWS)))}; rows: {', '.join(ROWS)}")
    if args.smoke:
        args.tasks, args.rounds, args.links, args.repeat = 200, 20, 20, 1
        args.primes_below, args.arrays = 20_000, 5
    bin_dir = Path(args.bin_dir)
    from dask.distributed import Client as DaskClient
    from dask.distributed import LocalCluster

    rows: list[tuple[str, float, float, str]] = []
    stack = WarrenStack(bin_dir)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    dask = DaskClient(cluster)
    w = stack.client
    try:
        # Warm both up (imports, connections) before anything is timed.
        w.gather(w.map(bench_funcs.inc, range(100), pure=False))
        dask.gather(dask.map(bench_funcs.inc, range(100), pure=False))
        if "distributed" in only:
            print("distributed_test() ...", file=sys.stderr)
            wt, dt = [], []
            for _ in range(args.repeat):
                wt.append(distributed_test(w, args.primes_below))
                dt.append(distributed_test(dask, args.primes_below))
            rows.append(
                (
                    "distributed_test() wall time (s)",
                    statistics.median(wt),
                    statistics.median(dt),
                    "lower",
                )
            )
            print(f"  warren {wt}, dask {dt}", file=sys.stderr)
        if "noop" in only:
            print("no-op map + gather ...", file=sys.stderr)
            wr, dr = [], []
            for _ in range(args.repeat):
                wr.append(noop_rate(w, bench_funcs.inc, args.tasks))
                dr.append(noop_rate(dask, bench_funcs.inc, args.tasks))
            rows.append(
                (
                    f"{args.tasks:,} no-op Python inc, map + gather (tasks/s)",
                    statistics.median(wr),
                    statistics.median(dr),
                    "higher",
                )
            )
            print(f"  warren {wr}, dask {dr}", file=sys.stderr)
        if "latency" in only:
            print("round trips and chains ...", file=sys.stderr)
            rows.append(
                (
                    "submit(inc).result() p50 (ms)",
                    round_trip_ms(w, bench_funcs.inc, args.rounds),
                    round_trip_ms(dask, bench_funcs.inc, args.rounds),
                    "lower",
                )
            )
            rows.append(
                (
                    f"chain of {args.links} dependent inc (tasks/s)",
                    chain_rate(w, bench_funcs.inc, args.links),
                    chain_rate(dask, bench_funcs.inc, args.links),
                    "higher",
                )
            )
        if "code" in only:
            print("functions sent as code (issue 32) ...", file=sys.stderr)
            noop = lambda x: x + 1  # noqa: E731 - a lambda is the point
            w.gather(w.map(noop, range(100), pure=False))
            cr, tr, dr2 = [], [], []
            for _ in range(args.repeat):
                cr.append(noop_rate(w, noop, args.tasks))
                tr.append(noop_rate(w, bench_funcs.inc, args.tasks))
                dr2.append(noop_rate(dask, noop, args.tasks))
            code_rows = (statistics.median(cr), statistics.median(tr), statistics.median(dr2))
            print(f"  code {cr}, @task {tr}, dask {dr2}", file=sys.stderr)
        if "arrays" in only:
            import numpy as np

            arrays = [np.full(128 * 1024, i, dtype=np.float64) for i in range(args.arrays)]
            wa, da = [], []
            for _ in range(args.repeat):
                wa.append(arrays_wall(w, identity, arrays))
                da.append(arrays_wall(dask, identity, arrays))
            rows.append(
                (
                    f"identity over {args.arrays} numpy arrays of 1 MiB, map + gather (s)",
                    statistics.median(wa),
                    statistics.median(da),
                    "lower",
                )
            )
            print(f"  warren {wa}, dask {da}", file=sys.stderr)
        if "clients" in only:
            print("Python client vs Rust client on the stock Rust inc ...", file=sys.stderr)
            pr, rr = [], []
            for _ in range(args.repeat):
                pr.append(noop_rate(w, "inc", args.tasks))
                rr.append(rust_client_rate(stack, bin_dir, args.tasks))
            print(f"  python {pr}, rust {rr}", file=sys.stderr)
    finally:
        dask.close()
        cluster.close()
        stack.stop()

    print("\n| workload | warren | dask (2 workers x 1 thread) | warren's advantage |")
    print("|---|---|---|---|")
    for name, wv, dv, better in rows:
        adv = dv / wv if better == "lower" else wv / dv
        print(f"| {name} | {wv:,.2f} | {dv:,.2f} | {adv:.2f}x |")
    if "clients" in only:
        p, r = statistics.median(pr), statistics.median(rr)
        print(
            f"\nStock Rust inc, {args.tasks:,} tasks map + gather on 2 Rust workers: Python "
            f"client {p:,.0f} tasks/s, Rust client {r:,.0f} tasks/s: {p / r:.2f}x"
        )
    if "code" in only:
        c, t, d = code_rows
        print(
            f"\n{args.tasks:,} no-op tasks, map + gather: a lambda sent as code {c:,.0f} "
            f"tasks/s, a @task function {t:,.0f} tasks/s ({c / t:.2f}x), dask with the lambda "
            f"{d:,.0f} tasks/s (code {c / d:.2f}x dask)"
        )
    print(f"(medians of {args.repeat}; warren's advantage > 1 means warren is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

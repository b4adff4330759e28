"""Issue 36's benchmark: big values, warren against dask in one run.

The workload: ``--n`` tasks each make an array of ``--mib`` MiB, ``--n``
tasks each return a new array (the input doubled), ``--n`` tasks reduce each
to its sum, and one task adds the sums; the client gathers only the final
float. It runs on 2 Python workers of 1 slot each:

- warren with a directory store (``store_url``, in the temporary directory);
- with ``--s3``, warren with an S3 store (Garage on this machine, as
  ``scripts/s3.sh`` starts it and its ``WARREN_S3_*`` settings reach it);
- warren without one (every value in Redis);
- dask's ``LocalCluster`` of 2 single-threaded worker processes.

Each stack is fresh for its run, so each process's peak resident memory
(``VmHWM``, read from ``/proc`` before it stops) is that run's. Printed:
wall time, the largest peak of any process of the stack, and for warren the
growth of Redis's memory. Before those, on the directory store, the CLI
reads one doubled array with ``warren result --raw`` (and another build's
CLI, ``--compare-cli``): its wall time and its own peak. Run it with
``bash scripts/bench-big-values.sh``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

import warren

REPO = Path(__file__).resolve().parents[2]


def make(i: int, mib: int) -> np.ndarray:
    return np.full(mib * 1024 * 1024 // 8, float(i))


def double(a: np.ndarray) -> np.ndarray:
    return a * 2


def total(a: np.ndarray) -> float:
    return float(a.sum())


def workload(c, n: int, mib: int) -> tuple[float, list]:  # noqa: ANN001
    """The run's wall time (s), checking the answer, and the doubled arrays'
    futures."""
    t = time.perf_counter()
    made = c.map(make, range(n), [mib] * n, pure=False)
    doubled = c.map(double, made, pure=False)
    sums = c.map(total, doubled, pure=False)
    answer = c.submit(sum, sums, pure=False).result()
    took = time.perf_counter() - t
    per = mib * 1024 * 1024 // 8
    assert answer == sum(2.0 * i * per for i in range(n)), answer
    return took, doubled


def raw_read(cli: Path, env: dict[str, str], key: str, size: int) -> tuple[float, float]:
    """``warren result --raw KEY > /dev/null`` by the CLI ``cli``: its wall
    time (s) and peak RSS (MiB; a wrapper's children's peak is the CLI's)."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "with open(sys.argv[1], 'wb') as out:\n"
        "    subprocess.run(sys.argv[2:], stdout=out, check=True)\n"
        "took = time.perf_counter() - t\n"
        "print(took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    with tempfile.NamedTemporaryFile(prefix="warren-raw-") as out:
        ran = subprocess.run(
            [sys.executable, "-c", wrapper, out.name, str(cli), "result", "--raw", key],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert os.path.getsize(out.name) == size, (os.path.getsize(out.name), size)
    took, peak_kib = ran.stdout.split()
    return float(took), int(peak_kib) / 1024


def peak_mib(pids: list[int]) -> dict[int, float]:
    """VmHWM of each live process among ``pids`` and their descendants."""
    seen: dict[int, float] = {}
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        hwm = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM")), "0")
        seen[pid] = int(hwm) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                todo += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                pass
    return seen


def redis_used() -> int:
    out = subprocess.run(["redis-cli", "info", "memory"], capture_output=True, text=True).stdout
    return next(int(ln.split(":")[1]) for ln in out.splitlines() if ln.startswith("used_memory:"))


def warren_run(
    bin_dir: Path, store: str, n: int, mib: int, clis: dict[str, Path] | None = None
) -> tuple[float, float, float]:
    """Wall time, the largest peak RSS and Redis's growth; with ``clis``,
    also prints each CLI's ``warren result --raw`` of one doubled array."""
    ns = f"bench-big-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, WARREN_NAMESPACE=ns, WARREN_STORE_URL=store)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    key = REPO / ".warren-run" / "bench-python.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(bin_dir / "warren"), "key", "new", "--file", str(key)], check=True)
    env["WARREN_KEY_FILE"] = str(key)
    logs = REPO / ".warren-run" / "bench-big-values"
    logs.mkdir(parents=True, exist_ok=True)
    argvs = [[str(bin_dir / "warren-scheduler")]] + [
        [sys.executable, "-m", "warren", "worker", "--accept-code", "-c", "1"]
    ] * 2
    procs = []
    for i, argv in enumerate(argvs):
        log = open(logs / f"{ns}-{i}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log))
    before = redis_used()
    c = warren.Client(namespace=ns, store_url=store, key_file=str(key))
    try:
        deadline = time.monotonic() + 60
        while len(c.info()["workers"]) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the warren stack did not start; logs in {logs}")
            time.sleep(0.2)
        took, doubled = workload(c, n, mib)
        grew = (redis_used() - before) / 2**20
        for name, cli in (clis or {}).items():
            raw = raw_read(cli, env, doubled[-1].key, mib * 1024 * 1024)
            print(f"| `warren result --raw` of {mib} MiB, {name} | {raw[0]:.2f} | {raw[1]:,.1f} |")
        peaks = peak_mib([p.pid for p in procs] + [os.getpid()])
        names = {}
        for pid in peaks:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                names[pid] = cmdline.replace(b"\0", b" ")[:80].decode()
            except OSError:
                pass
    finally:
        c.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        keys = subprocess.run(
            ["redis-cli", "--scan", "--pattern", f"{ns}:*"], capture_output=True, text=True
        ).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "del", *keys[i : i + 500]], capture_output=True)
    others = {pid: m for pid, m in peaks.items() if pid != os.getpid()}
    for pid, m in sorted(others.items(), key=lambda x: -x[1]):
        print(f"    peak {m:,.0f} MiB: {names.get(pid, '?')} (pid {pid})", file=sys.stderr)
    return took, max(others.values()), grew


def dask_run(n: int, mib: int) -> tuple[float, float]:
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = Client(cluster)
    try:
        took, _ = workload(c, n, mib)
        pids = list(c.run(os.getpid).values())
        peaks = peak_mib(pids)
    finally:
        c.close()
        cluster.close()
    return took, max(peaks.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20, help="arrays")
    ap.add_argument("--mib", type=int, default=100, help="MiB per array")
    ap.add_argument("--smoke", action="store_true", help="4 arrays of 8 MiB")
    ap.add_argument(
        "--s3", action="store_true", help="also with an S3 store (the WARREN_S3_* settings)"
    )
    ap.add_argument(
        "--tmpfs",
        action="store_true",
        help="also with the directory store on /dev/shm (memory: what the disk's writes cost)",
    )
    ap.add_argument("--skip-redis", action="store_true", help="no run with every value in Redis")
    ap.add_argument("--bin-dir", default=os.environ.get("WARREN_BIN_DIR", REPO / "target/release"))
    ap.add_argument(
        "--compare-cli",
        type=Path,
        help="another build's `warren` (an older commit's) to read a value with `result --raw`",
    )
    args = ap.parse_args()
    if args.smoke:
        args.n, args.mib = 4, 8
    bin_dir = Path(args.bin_dir)
    store_dir = Path(tempfile.mkdtemp(prefix="warren-bench-store-"))
    try:
        clis = {"this build": bin_dir / "warren"}
        if args.compare_cli:
            clis["the other build"] = args.compare_cli
        print("| read | wall (s) | CLI peak RSS (MiB) |\n|---|---|---|")
        ws = warren_run(bin_dir, store_dir.as_uri(), args.n, args.mib, clis)
        print(f"  warren, directory store: {ws}", file=sys.stderr)
        rows = [("warren, `store_url` a directory", ws)]
        if args.s3:
            bucket = os.environ.get("WARREN_TEST_S3_BUCKET", "warren-test")
            s3 = f"s3://{bucket}/bench-{uuid.uuid4().hex[:8]}"
            w3 = warren_run(bin_dir, s3, args.n, args.mib)
            print(f"  warren, S3 store: {w3}", file=sys.stderr)
            rows.append(("warren, `store_url` S3 (Garage, loopback)", w3))
        if args.tmpfs:
            shm = Path(tempfile.mkdtemp(prefix="warren-bench-store-", dir="/dev/shm"))
            try:
                wt = warren_run(bin_dir, shm.as_uri(), args.n, args.mib)
            finally:
                shutil.rmtree(shm, ignore_errors=True)
            print(f"  warren, directory store on tmpfs: {wt}", file=sys.stderr)
            rows.append(("warren, `store_url` a directory on tmpfs (/dev/shm)", wt))
        if not args.skip_redis:
            wr = warren_run(bin_dir, "", args.n, args.mib)
            print(f"  warren, values in Redis: {wr}", file=sys.stderr)
            rows.append(("warren, values in Redis", wr))
        d = dask_run(args.n, args.mib)
        print(f"  dask: {d}", file=sys.stderr)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    what = f"{args.n} arrays of {args.mib} MiB: make, double, sum each, add the sums"
    print(f"\n{what}\n")
    print("| stack | wall (s) | vs dask | peak RSS of one process (MiB) | Redis grew (MiB) |")
    print("|---|---|---|---|---|")
    for name, (took, peak, *grew) in [*rows, ("dask LocalCluster", (*d,))]:
        g = f"{grew[0]:,.0f}" if grew else "-"
        print(f"| {name} | {took:.2f} | {d[0] / took:.2f}x | {peak:,.0f} | {g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

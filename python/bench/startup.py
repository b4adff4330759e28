"""How long ``Client()`` takes to give a new user a working local cluster:
warren's (a scheduler and Python workers started by the client) against
dask's ``LocalCluster``, in the same run, alternated round by round.

Each round: construct the client with 2 workers of 1 slot, run one task
defined in this script (travelling as code), close; wall time of each step.

    python python/bench/startup.py [ROUNDS]     # default 5; --smoke: 1
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid


def square(x: int) -> int:
    return x * x


def warren_round() -> tuple[float, float, float]:
    import warren

    t0 = time.perf_counter()
    client = warren.Client(namespace=f"bench-start-{uuid.uuid4().hex[:8]}", n_workers=2)
    t1 = time.perf_counter()
    assert client.submit(square, 7).result() == 49
    t2 = time.perf_counter()
    client.close()
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def dask_round() -> tuple[float, float, float]:
    from distributed import Client

    t0 = time.perf_counter()
    client = Client(n_workers=2, threads_per_worker=1, dashboard_address=None)
    t1 = time.perf_counter()
    assert client.submit(square, 7).result() == 49
    t2 = time.perf_counter()
    client.close()
    client.cluster.close()
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def main(argv: list[str]) -> int:
    rounds = 1 if "--smoke" in argv else int(next((a for a in argv if a.isdigit()), "5"))
    # Client() starts a cluster only where no address is configured.
    os.environ.pop("WARREN_AMQP_URL", None)
    os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp(prefix="warren-bench-key-"))
    runs: dict[str, list[tuple[float, float, float]]] = {"warren": [], "dask": []}
    for _ in range(rounds):
        runs["warren"].append(warren_round())
        runs["dask"].append(dask_round())
    print(f"Client() with a local cluster of 2 workers; medians of {rounds} alternated rounds\n")
    print("| step | warren (s) | dask (s) | dask / warren |")
    print("|---|---|---|---|")
    for i, step in enumerate(["start (Client())", "first task (code)", "close"]):
        w = statistics.median(r[i] for r in runs["warren"])
        d = statistics.median(r[i] for r in runs["dask"])
        print(f"| {step} | {w:.3f} | {d:.3f} | {d / w:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

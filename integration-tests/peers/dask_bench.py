"""warren-compare's workloads on dask.distributed, for a same-run comparison.

A LocalCluster of 2 single-threaded worker processes on 127.0.0.1 (the same
shape as warren's 2 workers), then: a no-op map + gather, sequential
submit().result() round trips, and a chain of dependent submits. Prints one
JSON object on stdout.

    python dask_bench.py TASKS ROUNDS LINKS
"""

from __future__ import annotations

import json
import sys
import time

from dask.distributed import Client, LocalCluster


def inc(x: int) -> int:
    return x + 1


def main() -> None:
    tasks, rounds, links = (int(a) for a in sys.argv[1:4])
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(inc, range(1000), pure=False))  # warm up

        t = time.perf_counter()
        values = client.gather(client.map(inc, range(tasks), pure=False))
        noop = time.perf_counter() - t
        assert values[-1] == tasks

        lat = []
        for i in range(rounds):
            t = time.perf_counter()
            client.submit(inc, i, pure=False).result()
            lat.append(time.perf_counter() - t)
        lat.sort()

        t = time.perf_counter()
        f = client.submit(inc, 0, pure=False)
        for _ in range(links - 1):
            f = client.submit(inc, f, pure=False)
        assert f.result() == links
        chain = time.perf_counter() - t

    print(
        json.dumps(
            {
                "noop_tasks_per_s": tasks / noop,
                "p50_ms": lat[len(lat) // 2] * 1000,
                "p99_ms": lat[len(lat) * 99 // 100] * 1000,
                "chain_tasks_per_s": links / chain,
            }
        )
    )


if __name__ == "__main__":
    main()

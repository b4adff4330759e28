"""warren-compare's workloads on Celery (RabbitMQ broker, Redis results).

Starts a prefork worker of 2 processes (the shape of warren's 2 workers),
then: a no-op group + get, sequential delay().get() round trips, and a chain
of dependent tasks. Prints one JSON object on stdout; stops its worker.

    python celery_bench.py TASKS ROUNDS LINKS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

here = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("CELERY_QUEUE", f"warren-compare-{uuid.uuid4().hex[:8]}")
sys.path.insert(0, here)

from celery import chain, group
from celery_app import app, inc


def main() -> None:
    tasks, rounds, links = (int(a) for a in sys.argv[1:4])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "--concurrency",
            "2",
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "-Q",
            os.environ["CELERY_QUEUE"],
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=here,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        inc.delay(0).get(timeout=60)  # the worker is up
        group(inc.s(i) for i in range(200))().get(timeout=60)  # warm up

        t = time.perf_counter()
        values = group(inc.s(i) for i in range(tasks))().get(timeout=600)
        noop = time.perf_counter() - t
        assert values[-1] == tasks

        lat = []
        for i in range(rounds):
            t = time.perf_counter()
            inc.delay(i).get(timeout=60)
            lat.append(time.perf_counter() - t)
        lat.sort()

        t = time.perf_counter()
        result = chain(inc.s(0), *(inc.s() for _ in range(links - 1)))()
        assert result.get(timeout=600) == links
        chained = time.perf_counter() - t
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        app.control.purge()

    print(
        json.dumps(
            {
                "noop_tasks_per_s": tasks / noop,
                "p50_ms": lat[len(lat) // 2] * 1000,
                "p99_ms": lat[len(lat) * 99 // 100] * 1000,
                "chain_tasks_per_s": links / chained,
            }
        )
    )


if __name__ == "__main__":
    main()

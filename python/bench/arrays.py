"""Issue 32's array row on one machine as a dask user starts it: ``map`` of an
identity over numpy arrays of 1 MiB, then ``gather``, on ``warren.LocalCluster``
(its default store: a directory under ``$TMPDIR``) against dask's
``LocalCluster``, both 2 workers of 1 thread. Prints one table row.

    bash scripts/bench-arrays.sh        # or, with the stack built:
    WARREN_BIN_DIR=target/release .venv/bin/python python/bench/arrays.py

``compare.py``'s array row runs the same workload on its own stack, whose
values stay in Redis (no ``store_url``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def identity(x):  # noqa: ANN001, ANN201 - the same function for both
    return x


def wall(c, arrays: list) -> float:  # noqa: ANN001
    t = time.perf_counter()
    out = c.gather(c.map(identity, arrays, pure=False))
    took = time.perf_counter() - t
    assert len(out) == len(arrays) and float(out[-1][0]) == float(arrays[-1][0])
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arrays", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-dask", action="store_true")
    args = ap.parse_args()
    import warren

    arrays = [np.full(128 * 1024, i, dtype=np.float64) for i in range(args.arrays)]
    with (
        warren.LocalCluster(n_workers=2, threads_per_worker=1) as cluster,
        warren.Client(cluster) as w,
    ):
        w.gather(w.map(identity, arrays[:10], pure=False))
        ws = [wall(w, arrays) for _ in range(args.repeat)]
    ds = [float("nan")]
    if not args.skip_dask:
        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as dc,
            Client(dc) as d,
        ):
            d.gather(d.map(identity, arrays[:10], pure=False))
            ds = [wall(d, arrays) for _ in range(args.repeat)]
    wm, dm = statistics.median(ws), statistics.median(ds)
    print(f"warren {[round(x, 2) for x in ws]}, dask {[round(x, 2) for x in ds]}")
    print(
        f"| identity over {args.arrays} arrays of 1 MiB, map + gather (s) | {wm:.2f} | {dm:.2f} "
        f"| {dm / wm:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

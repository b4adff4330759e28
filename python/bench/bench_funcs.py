"""The benchmarks' no-op task, for warren's Python workers and dask's."""

from warren import task


@task
def inc(x: int) -> int:
    return x + 1

"""The seed notebook's functions, as a module that Python workers import.

Start workers with ``python -m warren worker notebook_funcs`` (from this
folder, or with it on ``PYTHONPATH``); the notebook imports the same module,
so ``client.submit(count_primes_less_than, 5000000)`` reads as in dask.
"""

from math import floor, sqrt

from warren import task


@task
def is_prime(n: int) -> bool:
    if n < 2:
        return False

    if n == 2:
        return True

    for i in range(floor(sqrt(n)) + 1):
        if i > 1 and n % i == 0:
            return False

    return True


@task
def count_primes_less_than(m: int) -> int:  # Count number of primes less than input n
    return sum([is_prime(i) for i in range(m)])


@task
def add_them(x: int, y: int) -> int:
    return x + y


@task
def goes_wrong() -> float:
    return 10 / 0

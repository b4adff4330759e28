"""Task functions for the tests, served by the Python workers they start."""

import os
import time
import weakref

from warren import task


@task
def inc(x: int) -> int:
    return x + 1


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(values: list, extra: dict) -> int:
    return sum(values) + sum(extra.values())


@task
def echo(x: object) -> object:
    return x


@task
def divide(a: float, b: float) -> float:
    return a / b


class Custom(Exception):
    """An exception type that is not a builtin."""


@task
def raise_custom(message: str) -> None:
    raise Custom(message)


@task
def returns_object() -> object:
    return {"fine": [1, 2, object()]}


@task
def returns_big_int() -> int:
    return 2**70


@task
def pid() -> int:
    return os.getpid()


@task
def busy(secs: float) -> int:
    """Spins a core for `secs` seconds; returns the process id."""
    end = time.monotonic() + secs
    n = 0
    while time.monotonic() < end:
        n += 1
    return os.getpid()


@task
def sleep(secs: float) -> float:
    time.sleep(secs)
    return secs


@task
def sleep_and_mark(secs: float, path: str) -> str:
    """Writes its pid to `path` when it starts, then sleeps."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(secs)
    return "slept"


@task
def ignores_sigterm(secs: float) -> str:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(secs)
    return "survived"


@task
def exits(code: int) -> None:
    os._exit(code)


@task
def prints(text: str) -> str:
    print(text)
    return text


@task(name="tests:renamed", queue="python")
def renamed() -> str:
    return "renamed"


#: Weak references to what :func:`doubled_in_sight` saw and made.
SIGHTED: list = []


@task
def doubled_in_sight(x: object) -> object:
    y = x * 2
    SIGHTED.extend([weakref.ref(x), weakref.ref(y)])
    return y

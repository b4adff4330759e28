"""``@task``: naming the functions that workers run.

No code travels: a worker runs only functions it imported itself, found by
name. ``@task`` records a module-level function under ``module:function``
(or the ``name=`` given), with the work queue its tasks go to (``python``
unless ``queue=`` says otherwise: the queue Python workers serve, apart from
the Rust workers' ``default``, so that neither is handed a task it cannot
run). The decorated function is still an ordinary function when called.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, overload

PYTHON_QUEUE = "python"

F = TypeVar("F", bound=Callable[..., Any])

#: Every function registered in this process, by name.
REGISTRY: dict[str, Task] = {}


class Task:
    """A registered function: ``.name``, ``.queue``, ``.fn``; calling it
    calls the function here."""

    def __init__(self, fn: Callable[..., Any], name: str, queue: str) -> None:
        self.fn = fn
        self.name = name
        self.queue = queue
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<warren.task {self.name} (queue {self.queue})>"


def _register(fn: Callable[..., Any], name: str | None, queue: str | None) -> Task:
    if not callable(fn):
        raise TypeError(f"@task decorates a function, not a {type(fn).__name__}")
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", ""))
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(
            f"@task needs a module-level function, and {qualname} is not: a worker "
            "finds functions by importing their module"
        )
    name = name or f"{fn.__module__}:{qualname}"
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"task name {name!r} must be non-empty and have no spaces")
    t = Task(fn, name, queue or PYTHON_QUEUE)
    REGISTRY[name] = t
    return t


@overload
def task(fn: F, /) -> Task: ...
@overload
def task(*, name: str | None = None, queue: str | None = None) -> Callable[[F], Task]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Registers a module-level function as a warren task.

    ``@task`` names it ``module:function``; ``@task(name="inc", queue="gpu")``
    chooses both. Workers started with ``python -m warren worker MODULE`` run
    the functions ``MODULE`` registers.
    """
    if fn is not None:
        return _register(fn, name, queue)
    return lambda f: _register(f, name, queue)

"""``@task``: naming the functions that workers run.

No code travels: a worker runs only functions it imported itself, found by
name. ``@task`` records a module-level function under ``module:function``
(or the ``name=`` given), with the work queue its tasks go to (``python``
unless ``queue=`` says otherwise: the queue Python workers serve, apart from
the Rust workers' ``default``, so that neither is handed a task it cannot
run).

``@task`` returns the function itself, with its registration attached as
``fn.__warren_task__``: a call from the user's own code (a task calling a
helper task, a notebook running one locally) costs exactly what an
undecorated call costs. A wrapper object's ``__call__`` added a Python frame
to every call, about 20% of the notebook's ``is_prime`` loop; and type
checkers keep seeing the function's own signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

PYTHON_QUEUE = "python"

F = TypeVar("F", bound=Callable[..., Any])

#: Every function registered in this process, by name.
REGISTRY: dict[str, Task] = {}


#: The attribute ``@task`` sets on the functions it registers.
ATTRIBUTE = "__warren_task__"


class Task:
    """A function's registration: ``.name``, ``.queue`` and ``.fn``, found
    with :func:`registration` (``fn.__warren_task__``)."""

    def __init__(self, fn: Callable[..., Any], name: str, queue: str) -> None:
        self.fn = fn
        self.name = name
        self.queue = queue

    def __repr__(self) -> str:
        return f"<warren.task {self.name} (queue {self.queue})>"


def registration(fn: object) -> Task | None:
    """The registration ``@task`` attached to `fn` (or `fn` itself, if it is
    one), else None."""
    if isinstance(fn, Task):
        return fn
    t = getattr(fn, ATTRIBUTE, None)
    return t if isinstance(t, Task) else None


def _register(fn: F, name: str | None, queue: str | None) -> F:
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
    try:
        setattr(fn, ATTRIBUTE, t)
    except (AttributeError, TypeError):
        raise TypeError(
            f"@task needs a Python function, and {qualname} takes no attributes: wrap it in a "
            "def in a module the workers import"
        ) from None
    REGISTRY[name] = t
    return fn


@overload
def task(fn: F, /) -> F: ...
@overload
def task(*, name: str | None = None, queue: str | None = None) -> Callable[[F], F]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
) -> Any:
    """Registers a module-level function as a warren task.

    ``@task`` names it ``module:function``; ``@task(name="inc", queue="gpu")``
    chooses both. Workers started with ``python -m warren worker MODULE`` run
    the functions ``MODULE`` registers. The function comes back unchanged,
    so calling it here is an ordinary call.
    """
    if fn is not None:
        return _register(fn, name, queue)
    return lambda f: _register(f, name, queue)

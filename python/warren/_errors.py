"""A task's error, raised where its result is asked for.

dask promises that a failed task comes back as "just a python traceback":
``.result()`` raises the task's exception. Here the exception crossed as
``{type, message, traceback}``, so it is rebuilt: for Python's built-in
exception types as an exception *of that type* (``except ZeroDivisionError``
works, as in dask) that is also a :class:`TaskError`; for any other type as
a :class:`TaskError` (or :class:`KilledWorker`). Either way its text holds the
worker's own traceback, with file, line and source line.
"""

from __future__ import annotations

import builtins
from typing import Any

from ._warren import UnservedFunction, WarrenError

__all__ = ["KilledWorker", "TaskError", "UnservedFunction", "WarrenError", "rebuild"]


class TaskError(Exception):
    """A task's own error: ``.type``, ``.message``, ``.traceback`` (the
    worker's text), ``.key`` (the future's) and ``.previous`` (the errors of
    earlier attempts, with ``retries=``)."""

    type: str
    message: str
    traceback: str
    key: str
    previous: list[dict[str, Any]]

    def __init__(self, failure: dict[str, Any], key: str = "") -> None:
        super().__init__(failure.get("message", ""))
        _fill(self, failure, key)

    def __str__(self) -> str:
        return _text(self)


class KilledWorker(TaskError):
    """The task's runs killed too many workers (dask's ``KilledWorker``)."""


def _fill(e: BaseException, failure: dict[str, Any], key: str) -> None:
    e.type = failure.get("type", "Error")  # type: ignore[attr-defined]
    e.message = failure.get("message", "")  # type: ignore[attr-defined]
    e.traceback = failure.get("traceback", "")  # type: ignore[attr-defined]
    e.previous = failure.get("previous", [])  # type: ignore[attr-defined]
    e.key = key  # type: ignore[attr-defined]


def _text(e: Any) -> str:
    text = e.message if e.type in _BUILTIN_CACHE else f"{e.type}: {e.message}"
    if e.traceback:
        text += "\n\n" + e.traceback.rstrip("\n")
    for i, p in enumerate(e.previous, 1):
        text += f"\n\nattempt {i} failed: {p.get('type')}: {p.get('message')}"
    return text


_BUILTIN_CACHE: dict[str, type] = {}


def _builtin_class(name: str) -> type | None:
    """A subclass of builtin exception ``name`` and of :class:`TaskError`."""
    if name in _BUILTIN_CACHE:
        return _BUILTIN_CACHE[name]
    base = getattr(builtins, name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is Exception:
        return None
    try:
        cls = type(
            name,
            (base, TaskError),
            {
                # The builtin's own constructor may want other arguments
                # (UnicodeDecodeError takes five); this one takes the failure.
                "__init__": TaskError.__init__,
                "__str__": _text,
                "__module__": "builtins",
            },
        )
        probe = cls({"type": name, "message": ""})
        del probe
    except TypeError:  # a layout that cannot be combined
        return None
    _BUILTIN_CACHE[name] = cls
    return cls


def rebuild(failure: dict[str, Any], key: str) -> TaskError:
    """The exception to raise for a task's failure."""
    kind = failure.get("type", "")
    if kind == "KilledWorker":
        return KilledWorker(failure, key)
    cls = _builtin_class(kind) if "." not in kind else None
    if cls is not None:
        return cls(failure, key)  # type: ignore[no-any-return]
    return TaskError(failure, key)

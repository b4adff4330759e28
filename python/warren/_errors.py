"""A task's error, raised where its result is asked for.

dask promises that a failed task comes back as "just a python traceback":
``.result()`` raises the task's exception. Here the exception crossed as
``{type, message, traceback}``, so it is rebuilt as an exception *of that
type* that is also a :class:`TaskError` (``except ZeroDivisionError`` or
``except MyError`` works, as in dask): for Python's built-in exception types,
and for a class this process already has (its module imported, or defined in
the notebook's ``__main__``; nothing is imported or unpickled for it);
otherwise as a :class:`TaskError` (or :class:`KilledWorker`). Either way its text holds the
worker's own traceback, with file, line and source line.
"""

from __future__ import annotations

import builtins
import sys
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
    text = e.message if e.type in _BUILTIN_CACHE and "." not in e.type else f"{e.type}: {e.message}"
    if e.traceback:
        text += "\n\n" + e.traceback.rstrip("\n")
    for i, p in enumerate(e.previous, 1):
        text += f"\n\nattempt {i} failed: {p.get('type')}: {p.get('message')}"
    return text


_BUILTIN_CACHE: dict[str, type] = {}


def _known(name: str) -> object:
    """The class ``name`` (``builtins`` name, or ``module.Qual.Name``) if
    this process has it; never imports anything for a name a worker sent."""
    if "." not in name:
        return getattr(builtins, name, None)
    module, _, qualname = name.rpartition(".")
    obj: object = sys.modules.get(module)
    # A nested class: the longest module prefix that is loaded.
    while obj is None and "." in module:
        module, _, head = module.rpartition(".")
        qualname = f"{head}.{qualname}"
        obj = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _builtin_class(name: str) -> type | None:
    """A subclass of exception class ``name`` and of :class:`TaskError`."""
    if name in _BUILTIN_CACHE:
        return _BUILTIN_CACHE[name]
    base = _known(name)
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
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
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
    cls = _builtin_class(kind) if kind else None
    if cls is not None:
        return cls(failure, key)  # type: ignore[no-any-return]
    return TaskError(failure, key)

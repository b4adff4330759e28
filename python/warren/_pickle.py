"""Pickling what no typed codec carries: functions by value (cloudpickle:
a function from a notebook cell, a lambda, a closure) and any other object.

stdlib pickle's protocol 5 with out-of-band buffers, so an object that
offers its memory (a numpy array inside a DataFrame) hands it over as a
frame instead of copying it into the stream. Futures inside become
persistent ids, numbered as dependencies. :func:`loads` takes only
:class:`~warren._signing.Verified` bytes: no path here unpickles bytes that
Rust did not check against the namespace key.
"""

from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Callable
from typing import Any

from ._signing import Verified


def dumps(
    obj: object, future_key: Callable[[object], str | None]
) -> tuple[bytes, list[Any], list[str]]:
    """``obj`` pickled by value where it must be: the pickle, its buffers, and
    the keys of the futures inside (in order)."""
    deps: list[str] = []
    buffers: list[Any] = []
    out = io.BytesIO()
    pickler = _pickler_class()(out, protocol=5, buffer_callback=buffers.append)
    pickler.future_key, pickler.deps = future_key, deps
    pickler.dump(obj)
    return out.getvalue(), [b.raw() for b in buffers], deps


# The picklers are classes made once, not per call: a class defined inside a
# function, closing over that call's values, is a reference cycle (a class
# always is one), and it held the call's buffers and dependency values,
# arrays of hundreds of MB among them, until the garbage collector ran.


@functools.cache
def _pickler_class() -> type:
    import cloudpickle  # on first use: a process that never pickles never imports it

    class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        future_key: Callable[[object], str | None]
        deps: list[str]

        def persistent_id(self, o: object) -> Any:
            key = self.future_key(o)
            if key is None:
                return None
            if key not in self.deps:
                self.deps.append(key)
            return ("warren-dep", self.deps.index(key))

    return _Pickler


class _Unpickler(pickle.Unpickler):
    """Futures' values in place of their persistent ids."""

    def __init__(self, data: Any, buffers: Any, deps: list[Any]) -> None:
        super().__init__(io.BytesIO(data), buffers=buffers)
        self.deps = deps

    def persistent_load(self, pid: Any) -> Any:
        deps = self.deps
        if (
            isinstance(pid, tuple)
            and len(pid) == 2
            and pid[0] == "warren-dep"
            and type(pid[1]) is int
            and 0 <= pid[1] < len(deps)
        ):
            return deps[pid[1]]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def loads(verified: Verified, deps: list[Any]) -> Any:
    """Unpickles checked bytes, with the futures' values in place."""
    if not isinstance(verified, Verified):
        raise TypeError("warren unpickles only what the namespace key verified")
    return _Unpickler(verified.data, verified.buffers, deps).load()

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
    import cloudpickle

    deps: list[str] = []
    buffers: list[Any] = []

    class _Pickler(cloudpickle.Pickler):
        def persistent_id(self, o: object) -> Any:
            key = future_key(o)
            if key is None:
                return None
            if key not in deps:
                deps.append(key)
            return ("warren-dep", deps.index(key))

    out = io.BytesIO()
    _Pickler(out, protocol=5, buffer_callback=lambda b: buffers.append(b.raw())).dump(obj)
    return out.getvalue(), buffers, deps


def loads(verified: Verified, deps: list[Any]) -> Any:
    """Unpickles checked bytes, with the futures' values in place."""
    if not isinstance(verified, Verified):
        raise TypeError("warren unpickles only what the namespace key verified")

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            if (
                isinstance(pid, tuple)
                and len(pid) == 2
                and pid[0] == "warren-dep"
                and type(pid[1]) is int
                and 0 <= pid[1] < len(deps)
            ):
                return deps[pid[1]]
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

    return _Unpickler(io.BytesIO(verified.data), buffers=verified.buffers).load()

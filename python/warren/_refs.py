"""Blob references inside JSON: ``{"$blob": hash, "size": n}`` (the
value's BLAKE3 hash, which the extension computes, as Rust does).

A value that is not JSON is stored once in Redis and travels as this
reference (``warren_core::store::blobs``): in a task's arguments, in a
result, in a dependency's value that the scheduler put in place of
``{"$future": key}``. The client and the pool processes swap references for
values, and values for references, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._warren import blob_hash

BLOB = "$blob"


def as_ref(v: object) -> tuple[str, int] | None:
    """``(hash, size)`` if ``v`` is exactly a reference."""
    if type(v) is not dict or len(v) != 2:
        return None
    digest, size = v.get(BLOB), v.get("size")
    if type(digest) is not str or len(digest) != 64 or type(size) is not int or size < 0:
        return None
    if any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest, size


def ref_of(data: bytes) -> dict[str, Any]:
    """The reference of ``data``."""
    return {BLOB: blob_hash(data), "size": len(data)}


def replace(v: Any, load: Callable[[str, int], Any]) -> Any:
    """``v`` with every reference replaced by ``load(hash, size)`` (each
    loaded once)."""
    return _walk(v, load, {})


def _walk(x: Any, load: Callable[[str, int], Any], loaded: dict[str, Any]) -> Any:
    # A module-level function, not a closure that calls itself: such a
    # closure is a reference cycle (function -> cell -> function) that held
    # ``loaded``, the task's argument values, until the garbage collector
    # ran; for arrays of 100 MiB that was a pool process's peak.
    r = as_ref(x)
    if r is not None:
        if r[0] not in loaded:
            loaded[r[0]] = load(*r)
        return loaded[r[0]]
    if type(x) is list:
        return [_walk(y, load, loaded) for y in x]
    if type(x) is dict:
        return {k: _walk(y, load, loaded) for k, y in x.items()}
    return x

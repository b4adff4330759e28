"""Values as they cross to warren, and back: JSON where it can be, envelopes
where it cannot.

Serialisation is kept apart from transport (as dask's ``distributed/protocol``
does): this module turns a Python object into a header and frames and back,
and never does I/O. Where the bytes go (a blob in Redis, a pipe to a pool
process) is the caller's business.

- **JSON stays JSON.** ``None``, ``bool``, ``int`` (64 bits), finite
  ``float``, ``str``, ``list`` and ``dict`` with ``str`` keys travel as
  themselves, so the CLI and Rust functions read them as always
  (:func:`plain`).
- **Typed data** (:data:`Kind` ``data``): anything else of a known type is a
  tree of tagged nodes in the envelope's JSON header, with raw frames for
  buffers: ``tuple``, ``set``, ``frozenset``, ``bytes``, ``bytearray``,
  ``datetime``/``date``/``time``/``timedelta``, ``Decimal``, ``UUID``,
  ``complex``, ints past 64 bits, non-finite floats, dicts with other keys,
  and numpy arrays and scalars (their buffer as one frame, no copy through
  JSON or base64; see ``_codec_numpy``). Decoding builds values and never
  runs code, so it needs no key.
- **Pickle** (kind ``pickle``): any other object, and functions sent by
  value (cloudpickle, protocol 5, buffers out of band as frames). The
  envelope must be signed with the namespace key, and only a process told to
  accept it opens one (``_signing``).

Futures inside a value become ``dep`` nodes (or persistent ids in a pickle)
numbered in order; the caller sends them as the task's dependencies and
hands their values back when decoding.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from . import _codec_numpy
from ._values import INT_MAX, INT_MIN, _shown

#: The marker of tagged nodes in a data header.
TAG = "$t"


def type_name(v: object) -> str:
    t = type(v)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class NeedsPickle(Exception):
    """A value (at ``where``) that no typed codec carries."""

    def __init__(self, where: str, value: object) -> None:
        super().__init__(f"{where} is a {type_name(value)} ({_shown(value)})")
        self.where = where
        self.value = value


# -- plain JSON ---------------------------------------------------------------
def plain(v: object, is_future: Callable[[object], str | None] | None = None) -> bool:
    """Whether ``v`` is exactly JSON (futures allowed where ``is_future``
    names them): then it travels as itself."""
    stack = [v]
    while stack:
        x = stack.pop()
        if x is None or isinstance(x, (bool, str)):
            continue
        if type(x) is int:
            if not INT_MIN <= x <= INT_MAX:
                return False
            continue
        if type(x) is float:
            if not math.isfinite(x):
                return False
            continue
        if type(x) is list:
            stack.extend(x)
            continue
        if type(x) is dict:
            if not all(type(k) is str for k in x) or TAG in x:
                return False
            stack.extend(x.values())
            continue
        if is_future is not None and is_future(x) is not None:
            continue
        return False
    return True


def to_json(v: Any, is_future: Callable[[object], str | None]) -> Any:
    """A plain value (see :func:`plain`) as JSON data, futures as
    ``{"$future": key}``."""
    if isinstance(v, list):
        return [to_json(x, is_future) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x, is_future) for k, x in v.items()}
    key = is_future(v)
    if key is not None:
        return {"$future": key}
    return v


# -- typed data ---------------------------------------------------------------
class Encoder:
    """Builds a data header's node tree and its frames; futures found on the
    way (``future_key``) become ``dep`` nodes, numbered in :attr:`deps`."""

    def __init__(self, future_key: Callable[[object], str | None]) -> None:
        self.frames: list[bytes | memoryview] = []
        self.deps: list[str] = []
        self._future_key = future_key

    def frame(self, data: bytes | memoryview) -> int:
        self.frames.append(data)
        return len(self.frames) - 1

    def dep(self, key: str) -> dict[str, Any]:
        if key not in self.deps:
            self.deps.append(key)
        return {TAG: "dep", "i": self.deps.index(key)}

    def node(self, v: object, where: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        t = type(v)
        if t is int:
            return v if INT_MIN <= v <= INT_MAX else {TAG: "int", "v": str(v)}
        if t is float:
            return v if math.isfinite(v) else {TAG: "float", "v": repr(v)}
        if t is list:
            return [self.node(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if t is dict:
            if all(type(k) is str for k in v) and TAG not in v:
                return {k: self.node(x, f"{where}[{k!r}]") for k, x in v.items()}
            return {
                TAG: "dict",
                "items": [
                    [self.node(k, f"{where} key"), self.node(x, f"{where}[{k!r}]")]
                    for k, x in v.items()
                ],
            }
        if t is tuple:
            return {TAG: "tuple", "items": [self.node(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if t in (set, frozenset):
            items = [self.node(x, f"{where} item") for x in v]
            return {TAG: t.__name__, "items": items}
        if t in (bytes, bytearray):
            return {TAG: t.__name__, "f": self.frame(bytes(v) if t is bytearray else v)}
        if t is _dt.datetime:
            return {TAG: "datetime", "v": v.isoformat()}
        if t is _dt.date:
            return {TAG: "date", "v": v.isoformat()}
        if t is _dt.time:
            return {TAG: "time", "v": v.isoformat()}
        if t is _dt.timedelta:
            return {TAG: "timedelta", "d": v.days, "s": v.seconds, "us": v.microseconds}
        if t is decimal.Decimal:
            return {TAG: "decimal", "v": str(v)}
        if t is uuid.UUID:
            return {TAG: "uuid", "v": v.hex}
        if t is complex:
            return {TAG: "complex", "re": repr(v.real), "im": repr(v.imag)}
        key = self._future_key(v)
        if key is not None:
            return self.dep(key)
        numpy = _codec_numpy.encode(v, self.frame)
        if numpy is not None:
            return numpy
        raise NeedsPickle(where, v)


class Decoder:
    """Rebuilds values from a data header's nodes, its frames, and the
    values of its ``dep`` nodes."""

    def __init__(self, frames: list[bytearray] | list[memoryview], deps: list[Any]) -> None:
        self.frames = frames
        self.deps = deps

    def frame(self, i: object) -> bytearray | memoryview:
        if type(i) is not int or not 0 <= i < len(self.frames):
            raise ValueError(f"a value refers to frame {i!r} of {len(self.frames)}")
        return self.frames[i]

    def value(self, n: Any) -> Any:
        if isinstance(n, list):
            return [self.value(x) for x in n]
        if not isinstance(n, dict):
            return n
        tag = n.get(TAG)
        if tag is None:
            return {k: self.value(x) for k, x in n.items()}
        build = _BUILD.get(tag)
        if build is None:
            numpy = _codec_numpy.decode(tag, n, self.frame)
            if numpy is not _codec_numpy.NOT_NUMPY:
                return numpy
            raise ValueError(f"unknown value tag {tag!r} (a newer warren sent it?)")
        return build(self, n)


def _items(d: Decoder, n: dict[str, Any]) -> list[Any]:
    items = n.get("items")
    if not isinstance(items, list):
        raise ValueError(f"a {n.get(TAG)} node without items")
    return [d.value(x) for x in items]


def _dep(d: Decoder, n: dict[str, Any]) -> Any:
    i = n.get("i")
    if type(i) is not int or not 0 <= i < len(d.deps):
        raise ValueError(f"a value refers to dependency {i!r} of {len(d.deps)}")
    return d.deps[i]


def _pairs(d: Decoder, n: dict[str, Any]) -> dict[Any, Any]:
    out = {}
    for pair in _items(d, n):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ValueError("a dict item is not a [key, value] pair")
        out[pair[0]] = pair[1]
    return out


_BUILD: dict[str, Callable[[Decoder, dict[str, Any]], Any]] = {
    "tuple": lambda d, n: tuple(_items(d, n)),
    "set": lambda d, n: set(_items(d, n)),
    "frozenset": lambda d, n: frozenset(_items(d, n)),
    "dict": _pairs,
    "bytes": lambda d, n: bytes(d.frame(n.get("f"))),
    "bytearray": lambda d, n: bytearray(d.frame(n.get("f"))),
    "int": lambda d, n: int(str(n.get("v"))),
    "float": lambda d, n: float(str(n.get("v"))),
    "complex": lambda d, n: complex(float(str(n.get("re"))), float(str(n.get("im")))),
    "datetime": lambda d, n: _dt.datetime.fromisoformat(str(n.get("v"))),
    "date": lambda d, n: _dt.date.fromisoformat(str(n.get("v"))),
    "time": lambda d, n: _dt.time.fromisoformat(str(n.get("v"))),
    "timedelta": lambda d, n: _dt.timedelta(
        days=int(n.get("d", 0)), seconds=int(n.get("s", 0)), microseconds=int(n.get("us", 0))
    ),
    "decimal": lambda d, n: decimal.Decimal(str(n.get("v"))),
    "uuid": lambda d, n: uuid.UUID(hex=str(n.get("v"))),
    "dep": _dep,
}


def describe(v: object) -> str:
    """One line for the CLI: ``numpy.ndarray int64 (5,)``, ``tuple of 3``."""
    shape = getattr(v, "shape", None)
    dtype = getattr(v, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type_name(v)} {dtype} {tuple(shape)}"
    try:
        return f"{type_name(v)} of {len(v)}"  # type: ignore[arg-type]
    except TypeError:
        return type_name(v)


def header_bytes(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode()

"""Values and calls as envelopes: the codecs (``_codec``, ``_pickle``)
meet the key (``_signing``) here.

- :func:`seal` / :func:`open_value`: one value that is not JSON (an
  argument, a result), typed data when every part of it has a codec, else a
  signed pickle.
- :func:`seal_call` / :func:`open_call`: a call's function (by value, or
  ``None`` for a registered one), positional and keyword arguments, as one
  envelope of purpose ``call``: what a task runs.

A pickle is made only with a key (it travels signed) and opened only where
``allow_pickle`` says so: a worker started with ``--accept-code``, or a
client reading a value a key holder signed.
"""

from __future__ import annotations

import inspect
import json
import linecache
import os
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _pickle
from ._codec import Decoder, Encoder, NeedsPickle, describe, header_bytes
from ._signing import CALL, VALUE, Verified


class PickleRefused(PermissionError):
    """A pickled value or function reached a process that does not load them."""


def _need_key(what: str) -> TypeError:
    return TypeError(
        f"{what}, which warren sends only as a signed pickle, and this process holds no "
        "key: make one with `warren key new` (setting key_file) and give the same key to "
        "the workers, started with --accept-code"
    )


def seal(
    obj: object, keys: Any, purpose: str, future_key: Callable[[object], str | None]
) -> tuple[bytes, list[str]]:
    """``obj`` as an envelope, and the keys of the futures inside it."""
    kind, header, frames, deps = encode(obj, keys, future_key)
    return keys.seal(kind, purpose, header, frames), deps


def encode(
    obj: object, keys: Any, future_key: Callable[[object], str | None]
) -> tuple[str, bytes, list[Any], list[str]]:
    """What :func:`seal` seals: ``(kind, header, frames, deps)``, the frames
    still the value's own buffers (so that a big one can be sealed straight
    into a store's file, ``Keys.seal_to``)."""
    enc = Encoder(future_key)
    try:
        root = enc.node(obj, "the value")
    except NeedsPickle as e:
        if keys.key_id is None:
            raise _need_key(str(e)) from None
        data, buffers, deps = _pickle.dumps(obj, future_key)
        header = header_bytes({"v": 1, "codec": "pickle", "describe": describe(obj)})
        return "pickle", header, [data, *buffers], deps
    header = header_bytes({"v": 1, "codec": "data", "root": root, "describe": describe(obj)})
    return "data", header, enc.frames, enc.deps


def at_least(header: bytes, frames: list[Any]) -> int:
    """A lower bound of the size of the envelope of ``header`` and
    ``frames`` (the envelope adds a few dozen bytes)."""
    return len(header) + sum(memoryview(f).nbytes for f in frames)


class Stored(NamedTuple):
    """An envelope read from the object store and opened there, in Rust
    (``Objects.open_envelope``, ``Client.open_blob``): its bytes were hashed
    once, for their name and their MAC together. ``opened`` is
    ``Keys.open_in``'s answer, frames as ranges of ``data``."""

    data: bytearray
    opened: tuple[str, bytes, list[tuple[int, int]], str | None]
    #: What it was opened as (``value``, ``call``).
    purpose: str


#: What the ``open_*`` functions take: an envelope's bytes, or one opened
#: as it was read.
Envelope = bytes | bytearray | Stored


def _open(
    data: Envelope,
    keys: Any,
    purpose: str,
    allow_pickle: bool,
    refusal: str | Callable[[dict[str, Any]], str],
) -> Any:
    """``(kind, header, body)`` of an envelope, opened and checked once (a
    value may carry megabytes); a pickle's body is :class:`Verified` and
    only where ``allow_pickle``, else :class:`PickleRefused` with
    ``refusal`` (or what it says of the header). An envelope opened as it
    was read (:class:`Stored`) must have been opened as ``purpose``."""
    if isinstance(data, Stored):
        if data.purpose != purpose:
            raise ValueError(f"an envelope opened as {data.purpose!r} offered as {purpose!r}")
        kind, header, ranges, signed_by = data.opened
        whole = memoryview(data.data)
        frames = [whole[a:b] for a, b in ranges]
    elif type(data) is bytearray:
        # From an object store: opened in place, each frame a view of it.
        kind, header, ranges, signed_by = keys.open_in(data, purpose)
        whole = memoryview(data)
        frames = [whole[a:b] for a, b in ranges]
    else:
        kind, header, frames, signed_by = keys.open(data, purpose)
    h = json.loads(header)
    if kind == "data":
        return "data", h, frames
    if not allow_pickle:
        raise PickleRefused(refusal if isinstance(refusal, str) else refusal(h))
    if not frames:
        raise ValueError("a pickle envelope without its pickle")
    return "pickle", h, Verified(frames[0], frames[1:], signed_by or "")


def open_value(
    data: Envelope, keys: Any, deps: list[Any] | None = None, allow_pickle: bool = True
) -> Any:
    """The value of a ``value`` envelope (a pickle only signed, and only
    where ``allow_pickle``)."""
    kind, h, body = _open(
        data,
        keys,
        VALUE,
        allow_pickle,
        "a pickled value was not loaded: this worker does not accept code "
        "(start it with --accept-code and the namespace key)",
    )
    if kind == "data":
        return Decoder(body, deps or []).value(h.get("root"))
    return _pickle.loads(body, deps or [])


def seal_call(
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    keys: Any,
    future_key: Callable[[object], str | None],
) -> tuple[bytes, list[str]]:
    """A call as an envelope: ``fn`` by value (a pickle, signed), or
    ``None`` for a function the workers registered or stored apart (then
    typed data when the arguments allow); and the futures inside, in order."""
    kind, header, frames, deps = encode_call(fn, args, kwargs, keys, future_key)
    return keys.seal(kind, CALL, header, frames), deps


def encode_call(
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    keys: Any,
    future_key: Callable[[object], str | None],
) -> tuple[str, bytes, list[Any], list[str]]:
    """What :func:`seal_call` seals: ``(kind, header, frames, deps)``, the
    frames still the arguments' own buffers (so that a big call can be
    sealed straight into an object store's file)."""
    if fn is None:
        enc = Encoder(future_key)
        try:
            root = {"args": enc.node(list(args), "args"), "kwargs": enc.node(kwargs, "kwargs")}
        except NeedsPickle as e:
            if keys.key_id is None:
                raise _need_key(str(e).replace("the value", "an argument")) from None
        else:
            header = header_bytes({"v": 1, "codec": "data", "root": root})
            return "data", header, enc.frames, enc.deps
    elif keys.key_id is None:
        name = getattr(fn, "__qualname__", repr(fn))
        raise _need_key(f"{name} is not a @warren.task function, so it travels as code")
    data, buffers, deps = _pickle.dumps((fn, tuple(args), kwargs, _sources(fn)), future_key)
    header = header_bytes({"v": 1, "codec": "pickle", "code": fn is not None})
    return "pickle", header, [data, *buffers], deps


def _sources(fn: object) -> dict[str, Any]:
    """The function's own source lines and where they start, so that the
    worker's traceback shows them (``return 10 / 0``) as dask's does: the
    client's linecache has them even for a notebook cell."""
    target = getattr(fn, "__wrapped__", fn)
    code = getattr(target, "__code__", None)
    if code is None:
        return {}
    try:
        lines, start = inspect.getsourcelines(target)
    except (OSError, TypeError):
        return {}
    return {"file": code.co_filename, "start": start, "lines": lines}


def _remember(sources: object, fn: object) -> None:
    """Puts shipped source lines where ``traceback`` looks for them, under
    the function's own file name (cloudpickle sends every function by value
    as ``<dynamic-code>``, which names no source)."""
    if not isinstance(sources, dict):
        return
    name, start, lines = sources.get("file"), sources.get("start"), sources.get("lines")
    if not (
        isinstance(name, str) and type(start) is int and start >= 1 and isinstance(lines, list)
    ):
        return
    code = getattr(fn, "__code__", None)
    if code is None or code.co_filename != "<dynamic-code>":
        return
    if not os.path.exists(name):
        # Functions of one cell or script arrive one by one: each adds its
        # own lines, where they are, to what earlier ones left.
        entry = linecache.cache.get(name)
        known = list(entry[2]) if entry is not None and len(entry) == 4 else []
        end = start - 1 + len(lines)
        known.extend(["\n"] * (end - len(known)))
        known[start - 1 : end] = [str(line) for line in lines]
        linecache.cache[name] = (sum(len(line) for line in known), None, known, name)
    fn.__code__ = code.replace(co_filename=name)  # type: ignore[attr-defined]


def need_key_for(fn: Callable[..., Any], keys: Any) -> None:
    """Raises the error that says how to get a key if ``fn`` must travel as
    code and this process holds none."""
    if keys.key_id is None:
        name = getattr(fn, "__qualname__", repr(fn))
        raise _need_key(f"{name} is not a @warren.task function, so it travels as code")


def seal_function(fn: Callable[..., Any], keys: Any) -> bytes:
    """A function alone, by value (a signed pickle, purpose ``call``), with
    its source lines for tracebacks."""
    need_key_for(fn, keys)
    data, buffers, _ = _pickle.dumps((fn, _sources(fn)), lambda _: None)
    header = header_bytes({"v": 1, "codec": "pickle", "code": True, "function": True})
    return keys.seal("pickle", CALL, header, [data, *buffers])


def open_function(data: Envelope, keys: Any, accept_code: bool) -> Callable[..., Any]:
    """The function of :func:`seal_function`'s envelope."""
    kind, h, body = _open(
        data,
        keys,
        CALL,
        accept_code,
        "a function sent as code was not run: this worker does not accept code (start it "
        "with python -m warren worker --accept-code, and the namespace key)",
    )
    if kind != "pickle" or not h.get("function"):
        raise ValueError("a function reference that holds no function")
    fn, sources = _pickle.loads(body, [])
    _remember(sources, fn)
    if not callable(fn):
        raise ValueError("a function reference that holds no function")
    return fn  # type: ignore[no-any-return]


def open_call(
    data: Envelope, keys: Any, deps: list[Any], accept_code: bool
) -> tuple[Callable[..., Any] | None, list[Any], dict[str, Any]]:
    """``(fn or None, args, kwargs)`` of a call envelope."""
    kind, h, body = _open(data, keys, CALL, accept_code, _call_refusal)
    if kind == "data":
        root = Decoder(body, deps).value(h.get("root"))
        if not isinstance(root, dict):
            raise ValueError("a call envelope without its arguments")
        args, kwargs = root.get("args", []), root.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("a call envelope with malformed arguments")
        return None, args, kwargs
    call = _pickle.loads(body, deps)
    if not isinstance(call, tuple) or len(call) not in (3, 4):
        raise ValueError("a call envelope that holds no call")
    fn, args, kwargs = call[:3]
    if len(call) == 4:
        _remember(call[3], fn)
    return fn, list(args), dict(kwargs)


def _call_refusal(h: dict[str, Any]) -> str:
    what = (
        "a function sent as code was not run"
        if h.get("code", True)
        else "a pickled argument was not loaded"
    )
    return (
        f"{what}: this worker does not accept code (start it with "
        "python -m warren worker --accept-code, and the namespace key)"
    )

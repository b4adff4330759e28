"""What ``submit`` and ``map`` send: the function, its arguments, the key.

Three ways a call travels, chosen per call:

- **Plain** (what the CLI and Rust speak): a ``@task`` function (or a
  registered name) with positional arguments that are all JSON. Futures in
  them are ``{"$future": key}``, anywhere. For a Rust function, ``bytes``
  and numpy arrays among them are stored first and travel as their
  references, which it takes as ``Binary``.
- **JSON arguments with a head** (``{"$warren_fn": <function reference or
  null>, "kwargs": {...}}``, then the positional arguments as JSON): keyword
  arguments, or a function sent as code, when every argument is JSON. The
  function is pickled and stored once per function (a signed envelope,
  content-addressed), so a ``map`` of 10,000 calls sends it once, and workers
  keep it in memory by its hash.
- **A call envelope** (``{"$warren_call": <blob reference>}``, with
  ``"$warren_fn": <function reference>`` for a function sent as code, then
  one ``{"$future": key}`` per future inside): values that are not JSON
  (tuples, bytes, numpy arrays, any object); typed data needs no key,
  pickled objects are signed. The function is stored once, as for JSON
  arguments: a ``map`` over 200 arrays pickles it once, not 200 times.

Any callable that is not a ``@task`` function (a function from a notebook
cell, a lambda, a closure, ``functools.partial``, a builtin) travels by value,
signed, to the function ``warren:call`` that only workers started with
``--accept-code`` serve.

A pure key hashes the function's code as well as its arguments (dask's
``tokenize``), so a function changed and resubmitted is a new future.
"""

from __future__ import annotations

import hashlib
import marshal
import re
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _envelopes, _refs, _signing, _values
from ._codec import plain, to_json

#: The function that runs code sent by value (``warren_core::routing::CODE_FUNC``).
CODE_FUNC = "warren:call"
#: Its queue, which only workers started with ``--accept-code`` serve
#: (``warren_core::routing::CODE_QUEUE``).
CODE_QUEUE = "code"
#: The function of a value put as it is (``client.scatter``;
#: ``warren_core::routing::VALUE_FUNC``): recorded finished, run by nobody.
VALUE_FUNC = "warren:value"
#: The head of a call whose arguments are JSON (see the module's doc).
FN_FIELD = "$warren_fn"
#: The first argument of a call sent as an envelope.
CALL_FIELD = "$warren_call"


class Call(NamedTuple):
    """One task as the Rust client takes it."""

    args: str
    key: str | None


def code_token(fn: Callable[..., Any]) -> bytes:
    """What identifies ``fn``'s code: its bytecode, constants and defaults,
    or its qualified name where it has no Python code."""
    fn = getattr(fn, "__wrapped__", fn)
    code = getattr(fn, "__code__", None)
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    if code is None:
        return name.encode()
    try:
        body = marshal.dumps(code)
    except ValueError:
        body = repr(code).encode()
    return name.encode() + b"\0" + body + b"\0" + repr(getattr(fn, "__defaults__", None)).encode()


def key_prefix(fn: object, name: str) -> str:
    """The readable part of a key: the registered name, or the function's own
    (``square``, ``lambda``)."""
    if name != CODE_FUNC:
        return name
    raw = getattr(fn, "__name__", None) or type(fn).__name__
    clean = re.sub(r"[^A-Za-z0-9_.:-]", "", raw) or "call"
    return clean[:64]


def make_key(prefix: str, pure: bool, token: bytes) -> str:
    if not pure:
        return f"{prefix}-{uuid.uuid4().hex}"
    return f"{prefix}-{hashlib.sha256(token).hexdigest()[:32]}"


def prepare(
    client: Any,
    fn: object,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    pure: bool,
    key: str | None,
    stored: dict[int, dict[str, Any]] | None = None,
) -> Call:
    """The task of ``fn(*args, **kwargs)``, for function ``name``.
    ``stored`` keeps the reference of a function sent as code across the
    calls of one ``map``: it is pickled and signed once, not per task."""
    future_key = client._future_key
    if ":" not in name:
        # A Rust function takes positional JSON, as the CLI sends it.
        if kwargs:
            raise TypeError(
                f"{name} is a Rust function: it takes positional arguments only, not "
                f"{', '.join(kwargs)}="
            )

        def binary(v: object) -> dict[str, Any] | None:
            return _binary_ref(client, v)

        data = [
            _values.encode(a, f"argument {i + 1}", future_key, binary) for i, a in enumerate(args)
        ]
        return Call(_values.dumps(data), key)
    by_value = name == CODE_FUNC
    code = code_token(fn) if callable(fn) and not isinstance(fn, str) else name.encode()
    if all(plain(a, future_key) for a in args) and plain(kwargs, future_key):
        positional = [to_json(a, future_key) for a in args]
        if not by_value and not kwargs:
            text = _values.dumps(positional)
            token = code + b"\0" + text.encode()
            return Call(text, key or make_key(key_prefix(fn, name), pure, token))
        fn_ref = _stored_function(client, fn, stored) if by_value else None
        head = {FN_FIELD: fn_ref, "kwargs": to_json(kwargs, future_key)}
        text = _values.dumps([head, *positional])
        token = (fn_ref[_refs.BLOB].encode() if fn_ref else code) + b"\0" + text.encode()
        return Call(text, key or make_key(key_prefix(fn, name), pure, token))
    fn_ref = _stored_function(client, fn, stored) if by_value else None
    kind, header, frames, deps = _envelopes.encode_call(
        None, args, kwargs, client._keys, future_key
    )
    ref = client._store_sealed(kind, _signing.CALL, header, frames)
    head = {CALL_FIELD: ref, FN_FIELD: fn_ref} if fn_ref else {CALL_FIELD: ref}
    data = [head] + [{"$future": k} for k in deps]
    fn_token = fn_ref[_refs.BLOB].encode() if fn_ref else code
    token = fn_token + b"\0" + ref[_refs.BLOB].encode() + b"\0" + "\0".join(deps).encode()
    return Call(_values.dumps(data), key or make_key(key_prefix(fn, name), pure, token))


def _binary_ref(client: Any, v: object) -> dict[str, Any] | None:
    """A ``bytes``, ``bytearray`` or numpy array (of numbers) for a Rust
    function, stored: its reference, which the function takes as a
    ``Binary`` (``warren_core::binary``). ``None`` for anything else."""
    t = type(v)
    dtype = getattr(v, "dtype", None)
    is_array = t.__module__ == "numpy" and dtype is not None and not dtype.hasobject
    if t not in (bytes, bytearray) and not is_array:
        return None
    kind, header, frames, _ = _envelopes.encode(v, client._keys, _values.no_future)
    if kind != "data":
        return None
    return client._store_sealed(kind, _signing.VALUE, header, frames)


def _stored_function(
    client: Any, fn: object, stored: dict[int, dict[str, Any]] | None
) -> dict[str, Any]:
    """The reference of ``fn`` stored as code: pickled, signed and stored
    once per ``map`` (``stored``), not per call, and kept by workers by its
    hash. Its hash covers its code (cloudpickle's bytes)."""
    memo = stored if stored is not None else {}
    ref = memo.get(id(fn))
    if ref is None:
        ref = memo[id(fn)] = client._function_ref(fn)
    return ref

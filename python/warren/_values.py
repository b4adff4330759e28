"""Values as they cross to warren: JSON-compatible Python objects.

A task's arguments and its result travel as JSON, so only what JSON keeps
exactly may cross: ``None``, ``bool``, ``int`` (64 bits), ``float`` (finite),
``str``, ``list``, ``tuple`` (it comes back a list) and ``dict`` with ``str``
keys. Anything else is refused where it is found, naming its type and its
place (``argument 2[0]['x']``), rather than sent as something else: an
``int`` past 64 bits would silently become a float in the JSON readers on
the way, so it is refused too. Futures become ``{"$future": key}``, which
makes the task depend on them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
_SHOWN = 60


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def encode(
    value: object,
    where: str,
    future_key: Callable[[object], str | None],
    stored: Callable[[object], dict[str, Any] | None] | None = None,
) -> Any:
    """``value`` as plain JSON data; ``future_key(v)`` names a future's key,
    and ``stored(v)``, where given, stores a value of another type it takes
    (bytes and numpy arrays for a Rust function) and gives its reference.

    Raises ``TypeError`` (or ``ValueError`` for a float JSON cannot carry)
    naming ``where`` and the path inside it.
    """
    return _encode(value, where, future_key, stored)


def _encode(
    v: object,
    path: str,
    future_key: Callable[[object], str | None],
    stored: Callable[[object], dict[str, Any] | None] | None = None,
) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        if not INT_MIN <= v <= INT_MAX:
            raise TypeError(
                f"{path} is an int that does not fit 64 bits ({_shown(v)}); "
                "warren carries ints from -2**63 to 2**64-1 (pass it as a str)"
            )
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{path} is {v!r}, which JSON cannot carry")
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_encode(x, f"{path}[{i}]", future_key, stored) for i, x in enumerate(v)]
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"{path} is a dict with a {type(k).__name__} key ({_shown(k)}); "
                    "warren's dicts need str keys"
                )
            out[k] = _encode(x, f"{path}[{k!r}]", future_key, stored)
        return out
    key = future_key(v)
    if key is not None:
        return {"$future": key}
    ref = stored(v) if stored is not None else None
    if ref is not None:
        return ref
    also = ", bytes, a numpy array" if stored is not None else ""
    raise TypeError(
        f"{path} is a {type(v).__module__}.{type(v).__qualname__} ({_shown(v)}), which warren "
        f"cannot send: values must be None, bool, int, float, str, list, tuple{also} or dict "
        "with str keys"
    )


def dumps(data: Any) -> str:
    """Compact JSON text of already-encoded data."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def no_future(_: object) -> str | None:
    """For results: a task cannot return a future."""
    return None

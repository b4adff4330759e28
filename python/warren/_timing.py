"""When a task may run: ``delay=``, ``at=`` and the retry policy.

The rules live in Rust (``warren_core::timing``) and in Redis's scripts: a
delayed task waits in Redis, on Redis's clock, never in RabbitMQ. This module
only turns what a Python user writes (seconds, a ``timedelta``, ``"30s"``, a
``datetime``, exception classes) into the plain numbers and names the Rust
client sends, and refuses what cannot be, naming the argument.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable
from typing import Any

#: What ``delay=`` and the retry pauses take: seconds, a timedelta, or text
#: with a unit (``"250ms"``, ``"30s"``, ``"1.5m"``, ``"2h"``, ``"1d"``).
Duration = float | int | _dt.timedelta | str

#: What ``at=`` takes: a datetime (naive ones are local time, as
#: ``datetime.timestamp`` reads them), a Unix timestamp, or ISO 8601 text.
When = _dt.datetime | float | int | str

_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_TEXT = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$")
_YEAR_MS = 366 * 24 * 3600 * 1000


def duration_ms(value: Duration, name: str) -> int:
    """``value`` in whole ms; ``name`` is the argument, for the error."""
    if isinstance(value, bool):
        raise TypeError(f"{name}= takes seconds, a timedelta or text such as '30s', not a bool")
    if isinstance(value, _dt.timedelta):
        secs = value.total_seconds()
    elif isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str):
        m = _TEXT.match(value)
        if m is None or m.group(2) not in _UNITS:
            raise ValueError(
                f"{name}={value!r} is not a duration (e.g. 30, '30s', '1.5m', '250ms')"
            )
        secs = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise TypeError(
            f"{name}= takes seconds, a timedelta or text such as '30s', not {type(value).__name__}"
        )
    if not secs >= 0 or secs * 1000 > _YEAR_MS:
        raise ValueError(f"{name}={value!r} is not between 0 and a year")
    return int(secs * 1000)


def at_ms(value: When) -> int:
    """``at=`` as Unix ms."""
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"at={value!r} is not an ISO 8601 time such as '2026-12-24T10:00:00+00:00'"
            ) from None
    if isinstance(value, _dt.datetime):
        secs = value.timestamp()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        secs = float(value)
    else:
        raise TypeError(
            f"at= takes a datetime, a Unix timestamp or ISO text, not {type(value).__name__}"
        )
    if not 0 <= secs < 4_102_444_800:
        raise ValueError(f"at={value!r} is not between 1970 and 2100")
    return int(secs * 1000)


def class_names(cls: type[BaseException]) -> list[str]:
    """The error type names a worker reports for ``cls`` and its subclasses
    this process knows (``retry_on=[ConnectionError]`` also retries a
    ``ConnectionRefusedError``, as ``except ConnectionError`` would)."""
    out: list[str] = []
    todo: list[type] = [cls]
    while todo:
        c = todo.pop()
        name = c.__qualname__ if c.__module__ == "builtins" else f"{c.__module__}.{c.__qualname__}"
        if name not in out:
            out.append(name)
            todo.extend(c.__subclasses__())
    return out


def retry_policy(
    delay: Duration | None,
    backoff: float | None,
    max_delay: Duration | None,
    jitter: bool,
    on: Iterable[type[BaseException] | str] | None,
) -> str | None:
    """The retry policy as the Rust client reads it (JSON), or ``None``
    when no retry option is given (retries are then immediate)."""
    if delay is None and backoff is None and max_delay is None and not jitter and on is None:
        return None
    policy: dict[str, Any] = {"jitter": bool(jitter)}
    if delay is not None:
        policy["delay_ms"] = duration_ms(delay, "retry_delay")
    if backoff is not None:
        if isinstance(backoff, bool):
            backoff = 2.0 if backoff else 1.0  # Celery's retry_backoff=True
        if not isinstance(backoff, (int, float)):
            raise TypeError(f"retry_backoff= takes a number, not {type(backoff).__name__}")
        policy["backoff"] = float(backoff)
    if max_delay is not None:
        policy["max_delay_ms"] = duration_ms(max_delay, "retry_max_delay")
    if on is not None:
        if isinstance(on, (str, type)):
            on = [on]
        names: list[str] = []
        for item in on:
            if item in (Exception, BaseException):
                # Every error: the same as no list.
                names = []
                break
            if isinstance(item, type) and issubclass(item, BaseException):
                names.extend(n for n in class_names(item) if n not in names)
            elif isinstance(item, str):
                names.append(item)
            else:
                raise TypeError(f"retry_on= takes exception classes or names, not {item!r}")
        if names:
            policy["on"] = names
    return json.dumps(policy)


def submit_options(
    delay: Duration | None,
    at: When | None,
    retry_delay: Duration | None,
    retry_backoff: float | None,
    retry_max_delay: Duration | None,
    retry_jitter: bool,
    retry_on: Iterable[type[BaseException] | str] | None,
) -> dict[str, Any]:
    """The Rust client's timing arguments for ``submit``'s and ``map``'s options."""
    return {
        "delay_ms": None if delay is None else duration_ms(delay, "delay"),
        "at_ms": None if at is None else at_ms(at),
        "retry": retry_policy(retry_delay, retry_backoff, retry_max_delay, retry_jitter, retry_on),
    }

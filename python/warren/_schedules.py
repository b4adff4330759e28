"""Periodic schedules from Python: ``client.schedule``, ``unschedule`` and
``schedule_runs`` (the CLI's ``warren every``/``cron``/``schedules``/``runs``).

Each tick runs exactly once, whichever scheduler is alive (see
``warren_core::periodic``); each run is an ordinary future. A schedule
outlives this client, so its function travels by name (a ``@task`` function
or a registered name) and its arguments as JSON: a function or a value sent
by reference would expire with results (``result_ttl_secs``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _timing
from ._future import Future

if TYPE_CHECKING:
    from ._client import Client


def schedule(
    client: Client,
    name: str,
    fn: Callable[..., Any] | str,
    args: tuple[Any, ...],
    every: _timing.Duration | None,
    cron: str | None,
    missed: str,
    queue: str | None,
) -> _dt.datetime:
    """Adds (or replaces) schedule ``name``; returns its first tick."""
    if (every is None) == (cron is None):
        raise TypeError("schedule() takes every= or cron=, one of them")
    target = client._resolve(fn, queue, allow_unserved=True)
    if not isinstance(fn, str) and target.name.startswith("warren:"):
        raise TypeError(
            f"schedule({name!r}, ...) needs a @task function or a registered name: a schedule "
            "outlives this client, and a function sent as code lives only as long as results"
        )
    try:
        args_json = json.dumps(list(args))
    except (TypeError, ValueError) as e:
        raise TypeError(f"a schedule's arguments must be JSON values: {e}") from None
    every_ms = None if every is None else _timing.duration_ms(every, "every")
    first = client._rust.add_schedule(
        name, target.name, args_json, target.queue, every_ms, cron, missed
    )
    return _dt.datetime.fromtimestamp(first / 1000, _dt.UTC)


def runs(client: Client, name: str) -> list[Future]:
    """The futures of schedule ``name``'s latest runs, newest first."""
    return [Future(k, client) for k in client._rust.schedule_runs(name)]

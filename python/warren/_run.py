"""``client.run(fn)``: a function once on every live worker that has it,
outside the task slots (dask's ``Client.run``: setup and inspection).

The call is prepared as a task's is (sent as code, signed, or by name),
broadcast on the control exchange, and each worker keeps its outcome in
Redis under the run's id; this module waits until every worker that was
live and had the function has answered, then decodes the values as task
results are decoded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _calls
from ._errors import rebuild

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["run"]

_ON_ERROR = ("raise", "return", "ignore")


def run(
    client: Client,
    function: Callable[..., Any] | str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workers: list[str] | None,
    wait: bool,
    on_error: str,
    timeout: float,
) -> dict[str, Any] | None:
    """See :meth:`warren.Client.run`."""
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(_ON_ERROR)}, not {on_error!r}")
    target = client._resolve(function, None, allow_unserved=False)
    call = _calls.prepare(client, function, target.name, args, kwargs, False, None)
    expected = {
        w["worker"]
        for w in client.info()["workers"]
        if w.get("functions") is None or target.name in w["functions"]
    }
    if workers is not None:
        expected &= set(workers)
    run_id = client._rust.run(target.name, call.args)
    if not wait:
        return None
    deadline = time.monotonic() + timeout
    while True:
        got = client._rust.run_outcomes(run_id)
        if expected <= set(got):
            break
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(expected - set(got)))
            raise TimeoutError(
                f"run {run_id}: no answer within {timeout}s from workers {missing} "
                "(gone since, or busy importing; `warren workers` lists the live ones)"
            )
        time.sleep(0.02)
    out: dict[str, Any] = {}
    for worker in sorted(expected):
        outcome = json.loads(got[worker])
        if "error" in outcome:
            error = rebuild(outcome["error"], run_id)
            if on_error == "raise":
                raise error
            if on_error == "return":
                out[worker] = error
            continue
        out[worker] = client._load(json.dumps(outcome["ok"]))
    return out

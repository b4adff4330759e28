"""One process of a Python worker's prefork pool (not for direct use).

The worker (Rust, in the parent process) starts one of these per slot as
``python -m warren._child MODULE...``. It imports the modules, says it is
ready, then runs task after task: a JSON line in on stdin, a JSON line out
on stdout (the protocol of ``warren_worker::prefork``). The protocol keeps
private copies of those two descriptors; the task's own ``print`` goes to
stderr (the worker's log) and its stdin reads nothing.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from typing import IO, Any

from . import _values
from ._task import REGISTRY


def _send(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n")
    out.flush()


def _type_name(e: BaseException) -> str:
    cls = type(e)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _failure(e: BaseException, skip_frames: int) -> dict[str, str]:
    tb = e.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(e), e, tb))
    if not text.startswith("Traceback"):
        text = "Traceback (most recent call last):\n" + text
    return {"type": _type_name(e), "message": str(e), "traceback": text}


def run(request: dict[str, Any]) -> dict[str, Any]:
    """One task: the function's value, checked, or its error."""
    name = request.get("func", "")
    t = REGISTRY.get(name)
    if t is None:
        served = ", ".join(sorted(REGISTRY)) or "none"
        message = f"no function named {name!r} is registered on this worker; registered: {served}"
        return {
            "error": {
                "type": "UnknownFunction",
                "message": message,
                "traceback": f"Traceback (most recent call last):\nUnknownFunction: {message}",
            }
        }
    try:
        value = t.fn(*request.get("args", []))
    except BaseException as e:  # noqa: BLE001 - a task's error is its result
        return {"error": _failure(e, skip_frames=1)}
    try:
        return {"ok": _values.encode(value, f"the result of {name}", _values.no_future)}
    except (TypeError, ValueError) as e:
        message = str(e)
        return {
            "error": {
                "type": type(e).__name__,
                "message": message,
                "traceback": f"Traceback (most recent call last):\n{type(e).__name__}: {message}",
            }
        }


def main(modules: list[str]) -> int:
    """Imports ``modules``, then serves tasks until stdin closes."""
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    # Ctrl-C is the worker's to handle (it drains): running tasks finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for m in modules:
        try:
            importlib.import_module(m)
        except BaseException as e:  # noqa: BLE001 - reported to the worker
            _send(proto_out, {"fatal": f"importing {m!r} failed:\n{_failure(e, 0)['traceback']}"})
            return 1
    _send(proto_out, {"ready": True})
    for line in proto_in:
        _send(proto_out, run(json.loads(line)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

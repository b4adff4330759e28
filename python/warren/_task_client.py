"""What a running task reaches: a client (``get_client``), and leaving and
taking back its worker slot while it waits (``secede``, ``rejoin``,
``worker_client``), with dask's names.

A task that submits tasks and waits for them holds its slot meanwhile; when
every slot is held by a waiting parent, no child can run. ``secede`` tells
the worker (a line on the pool protocol, see ``warren_worker::seat``) that
this task only waits now, so its slot serves another task; ``rejoin`` waits
until a slot is free again. The client is made in this pool process from
the settings the worker sent it when it started (kept in memory, never in
the environment), so a task connects as its worker does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["get_client", "rejoin", "secede", "worker_client"]


class _Process:
    """This pool process's link to its worker, set by ``warren._child``."""

    def __init__(self) -> None:
        self.settings: dict[str, str] | None = None
        self.proto_in: IO[bytes] | None = None
        self.proto_out: IO[bytes] | None = None
        self.client: Client | None = None
        self.seceded = False

    def say(self, message: dict[str, Any]) -> None:
        assert self.proto_out is not None
        line = json.dumps(message).encode() + b"\n"
        with PROTOCOL_LOCK:
            self.proto_out.write(line)
            self.proto_out.flush()


#: Held for each line written to the worker: a task's threads may print
#: (forwarded output) while the task says something else.
PROTOCOL_LOCK = threading.Lock()

_HERE = _Process()


def forward_output(stream: str, text: str) -> None:
    """Hands what the running task printed to the worker, which publishes
    it for clients that forward output (``Client(forward_output=True)``)."""
    if _HERE.proto_out is not None:
        _HERE.say({"output": {"stream": stream, "text": text}})


def attach(proto_in: IO[bytes], proto_out: IO[bytes], settings: dict[str, str]) -> None:
    """Called by ``warren._child`` once its worker greeted it."""
    _HERE.proto_in, _HERE.proto_out, _HERE.settings = proto_in, proto_out, settings


def task_started() -> None:
    """Called by ``warren._child`` before each task: it holds its slot."""
    _HERE.seceded = False


def get_client(timeout: float | None = None, resolve_address: bool = True) -> Client:
    """In a task, a client of the worker's namespace, made once per pool
    process; elsewhere, the client made last in this process (dask's
    ``get_client``)."""
    from ._client import Client

    del timeout, resolve_address  # dask's signature; nothing to resolve here
    if _HERE.settings is None:
        if Client._latest is None:
            raise ValueError(
                "no warren.Client yet: create one first, or pass client= (a task needs none)"
            )
        return Client._latest
    if _HERE.client is None:
        _HERE.client = Client(**_HERE.settings)
    return _HERE.client


def _in_task(what: str) -> None:
    if _HERE.proto_out is None:
        raise ValueError(f"{what}() is for a task running on a warren worker")


def secede() -> None:
    """This task only waits for other tasks now: its slot goes to the next
    task, and the worker runs one more task than its slots until
    :func:`rejoin`."""
    _in_task("secede")
    if not _HERE.seceded:
        _HERE.say({"secede": True})
        _HERE.seceded = True


def rejoin() -> None:
    """Waits until this task holds a slot again (after :func:`secede`)."""
    _in_task("rejoin")
    if not _HERE.seceded:
        return
    _HERE.say({"rejoin": True})
    assert _HERE.proto_in is not None
    line = _HERE.proto_in.readline()
    _HERE.seceded = False
    if not line:
        raise RuntimeError("the worker went away while this task waited to rejoin")


@contextmanager
def worker_client(timeout: float | None = None, separate_thread: bool = True) -> Iterator[Client]:
    """``with worker_client() as client:``: the task's client, its slot
    given up while the block runs (dask's ``worker_client``)."""
    del separate_thread  # dask's signature; a warren task is a process of its own
    client = get_client(timeout)
    secede()
    try:
        yield client
    finally:
        rejoin()

"""``Future``: a task's eventual result, as dask's.

A future is a key and the client that made it; its state lives in Redis
and its final outcome, once known, is kept here. ``await future`` waits in
a thread (see :mod:`warren._aio`), so one type serves sync and async code.
"""

from __future__ import annotations

import concurrent.futures
import html
import json
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _aio
from ._errors import rebuild

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["CancelledError", "Future", "TaskLogs"]

CancelledError = concurrent.futures.CancelledError


class Future:
    """A task's eventual result (dask's ``Future``).

    ``.key``, ``.status``, ``.done()``, ``.result(timeout)``,
    ``.exception()``, ``.traceback()``, ``.cancel()``,
    ``.add_done_callback(fn)``. Pass it (or lists and dicts holding it) as an
    argument to ``submit`` to make a task depend on it.
    """

    __slots__ = ("_client", "_final", "_lock", "key")

    def __init__(self, key: str, client: Client) -> None:
        self.key = key
        self._client = client
        self._final: tuple[str, str] | None = None
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------
    def _settle(self, final: tuple[str, str]) -> tuple[str, str]:
        with self._lock:
            if self._final is None:
                self._final = final
            return self._final

    def _outcome(self, timeout: float | None) -> tuple[str, str]:
        if self._final is not None:
            return self._final
        return self._settle(self._client._rust.outcomes([self.key], timeout)[0])

    @property
    def status(self) -> str:
        """``pending``, ``finished``, ``error`` or ``cancelled``."""
        if self._final is not None:
            return self._final[0]
        return self._client._rust.statuses([self.key])[0][0]

    def done(self) -> bool:
        """Whether the future is final."""
        return self.status != "pending"

    def result(self, timeout: float | None = None) -> Any:
        """The value; waits (Ctrl-C interrupts) up to ``timeout`` seconds.

        A failed task raises its error (see :class:`warren.TaskError`); a
        cancelled one raises ``concurrent.futures.CancelledError``.
        """
        return self._client._value(self.key, self._outcome(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's error, without raising it; ``None`` if it finished."""
        state, payload = self._outcome(timeout)
        if state == "error":
            return rebuild(json.loads(payload), self.key)
        if state == "cancelled":
            return CancelledError(f"future {self.key} was cancelled")
        return None

    def traceback(self, timeout: float | None = None) -> str | None:
        """The worker's traceback text of a failed task, else ``None``."""
        state, payload = self._outcome(timeout)
        if state == "error":
            return json.loads(payload).get("traceback") or None
        return None

    def logs(self) -> TaskLogs | None:
        """What the task printed (``stdout``, ``stderr``), as ``warren logs
        KEY`` shows it, once it ended; ``None`` if it printed nothing (or it
        expired with its result)."""
        got = self._client._rust.logs(self.key)
        return None if got is None else TaskLogs(*got)

    @property
    def type(self) -> type | None:
        """The type of the value once the task finished (``None`` before,
        and for a failed or cancelled task), as dask's ``Future.type``."""
        if self.status != "finished":
            return None
        return type(self.result())

    def cancel(self) -> None:
        """Cancels this future and everything that depends on it."""
        self._client.cancel([self])

    def release(self) -> None:
        """Drops what this object holds of the result (dask's ``release``).
        Unlike dask's, the result itself stays in Redis, for other clients
        too, until ``result_ttl_secs`` passes or ``client.forget`` deletes it:
        a warren result does not die with the last Python reference."""
        with self._lock:
            self._final = None

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Calls ``fn(future)`` once the future is final, on another thread."""

        def watch() -> None:
            try:
                self._outcome(None)
            except Exception:  # noqa: BLE001 - the callback sees the future as it is
                pass
            fn(self)

        threading.Thread(target=watch, name=f"warren-callback-{self.key}", daemon=True).start()

    # -- display -------------------------------------------------------
    def __repr__(self) -> str:
        return f"<Future: {self.status}, key: {self.key}>"

    def _repr_html_(self) -> str:
        status = self.status
        colour = {"finished": "green", "error": "red", "cancelled": "grey"}.get(status, "orange")
        return (
            f"<strong>Future: {html.escape(self.key)}</strong> "
            f'<span style="color: {colour}">status: {status}</span>'
        )

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future``: its value (or its error raised), without
        blocking the event loop."""
        return _aio.to_thread(self.result).__await__()

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Future) and other.key == self.key


class TaskLogs(NamedTuple):
    """What a task wrote: its standard output and standard error."""

    stdout: str
    stderr: str


def _final_error(key: str, final: tuple[str, str]) -> BaseException:
    state, payload = final
    if state == "error":
        return rebuild(json.loads(payload), key)
    return CancelledError(f"future {key} was cancelled")

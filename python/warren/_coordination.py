"""Coordination primitives with dask's names: ``Variable``, ``Queue``,
``Event``, ``Lock``, ``Semaphore``.

Their state lives in Redis, next to the namespace's futures (one key each,
``<namespace>:coord:<kind>:<name>``), so any client of the namespace shares
them by name, and a scheduler's death loses none of them. The Rust client
does the I/O and the waiting with the GIL released; this module encodes the
values: JSON as JSON, a future as its key, anything else as a blob sealed
with the namespace key, as a task's argument would be. ``Lock`` and
``Semaphore`` hold leases that a thread of the holder renews: a holder that
dies frees its place within one lease (``lease=`` seconds, 30 by default).
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from . import _codec, _envelopes, _signing, _task_client
from ._client import Client, Future

__all__ = ["Event", "Lock", "Queue", "Semaphore", "Variable"]

#: How a future stands in a stored value.
_FUTURE = "$future"


def _client(client: Client | None) -> Client:
    # In a task, the task's client (the worker's namespace); elsewhere the
    # client made last.
    return client if client is not None else _task_client.get_client()


def _encode(client: Client, value: Any) -> str:
    if isinstance(value, Future):
        return json.dumps({_FUTURE: value.key})
    if _codec.plain(value):
        return json.dumps(value, separators=(",", ":"))

    def no_future(v: object) -> str | None:
        if isinstance(v, Future):
            raise TypeError("a future can be stored alone, not inside another value")
        return None

    envelope, _ = _envelopes.seal(value, client._keys, _signing.VALUE, no_future)
    return json.dumps(client._put_blob(envelope))


def _decode(client: Client, text: str) -> Any:
    v = json.loads(text)
    if type(v) is dict and len(v) == 1 and type(v.get(_FUTURE)) is str:
        return Future(v[_FUTURE], client)
    return client._load(text)


class _Named:
    kind = ""

    def __init__(self, name: str | None = None, client: Client | None = None) -> None:
        self.name = name if name is not None else uuid.uuid4().hex
        self.client = _client(client)
        self._rust = self.client._rust.coordination()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


class Variable(_Named):
    """A value shared by name (dask's ``Variable``): ``set``, ``get``,
    ``delete``. It may hold a future, which then stays a future for every
    reader. Kept as long as results are (``result_ttl_secs``)."""

    def set(self, value: Any, timeout: float | None = None) -> None:
        del timeout
        self._rust.variable_set(self.name, _encode(self.client, value))

    def get(self, timeout: float | None = None) -> Any:
        """The value; waits until one is set (``TimeoutError`` after
        ``timeout`` seconds)."""
        text = self._rust.variable_get(self.name, timeout)
        if text is None:
            raise TimeoutError(f"variable {self.name!r} was not set within {timeout}s")
        return _decode(self.client, text)

    def delete(self) -> None:
        self._rust.variable_delete(self.name)


class Queue(_Named):
    """A FIFO queue shared by name (dask's ``Queue``): ``put``, ``get``,
    ``qsize``; ``maxsize`` bounds it (``put`` waits for room)."""

    def __init__(
        self, name: str | None = None, client: Client | None = None, maxsize: int = 0
    ) -> None:
        super().__init__(name, client)
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, not {maxsize}")
        self.maxsize = maxsize

    def put(self, value: Any, timeout: float | None = None) -> None:
        if not self._rust.queue_put(self.name, _encode(self.client, value), self.maxsize, timeout):
            raise TimeoutError(f"queue {self.name!r} stayed full for {timeout}s")

    def get(self, timeout: float | None = None, batch: bool | int = False) -> Any:
        """The first value; waits for one. ``batch=True``: every value there
        now (a list, perhaps empty); ``batch=n``: ``n`` values, waiting."""
        if batch is True:
            out = []
            while (text := self._rust.queue_get(self.name, 0.0)) is not None:
                out.append(_decode(self.client, text))
            return out
        if batch:
            return [self.get(timeout) for _ in range(int(batch))]
        text = self._rust.queue_get(self.name, timeout)
        if text is None:
            raise TimeoutError(f"queue {self.name!r} stayed empty for {timeout}s")
        return _decode(self.client, text)

    def qsize(self) -> int:
        return self._rust.queue_len(self.name)


class Event(_Named):
    """A flag shared by name (dask's ``Event``): ``set``, ``clear``,
    ``is_set``, ``wait``."""

    def set(self) -> None:
        self._rust.event_set(self.name, True)

    def clear(self) -> None:
        self._rust.event_set(self.name, False)

    def is_set(self) -> bool:
        return self._rust.event_wait(self.name, 0.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the event is set, once it is or ``timeout`` passed."""
        return self._rust.event_wait(self.name, timeout)


class _Lease(_Named):
    """A lease this process holds while a thread renews it."""

    def __init__(self, name: str | None, client: Client | None, lease: float) -> None:
        super().__init__(name, client)
        if not lease > 0:
            raise ValueError(f"lease must be a number of seconds > 0, not {lease}")
        self.lease = float(lease)
        self.token = uuid.uuid4().hex
        self._held = threading.Event()
        self._stop = threading.Event()

    def _take(self, timeout: float | None) -> bool:
        raise NotImplementedError

    def _give_back(self) -> bool:
        raise NotImplementedError

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Takes it, waiting (unless ``blocking=False``) up to ``timeout``;
        whether it was taken."""
        if self._held.is_set():
            raise RuntimeError(f"{self!r} is already held by this object")
        if not self._take(timeout if blocking else 0.0):
            return False
        self._held.set()
        self._stop = threading.Event()
        threading.Thread(
            target=self._renew, args=(self._stop,), name=f"warren-lease-{self.name}", daemon=True
        ).start()
        return True

    def _renew(self, stop: threading.Event) -> None:
        # Three renewals per lease: one lost to a slow Redis still leaves two.
        while not stop.wait(self.lease / 3):
            try:
                if not self._take(0.0):
                    self._held.clear()
                    return
            except Exception:  # noqa: BLE001 - retried at the next renewal
                continue

    def release(self) -> None:
        """Gives it back; ``RuntimeError`` if it was not held (or its lease
        ran out)."""
        was = self._held.is_set()
        self._stop.set()
        self._held.clear()
        if not self._give_back() or not was:
            raise RuntimeError(f"{self!r} was not held (or its lease of {self.lease}s ran out)")

    def __enter__(self) -> _Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Lock(_Lease):
    """A lock shared by name (dask's ``Lock``): ``acquire(blocking=True,
    timeout=None)``, ``release()``, ``locked()``, ``with lock:``."""

    def __init__(
        self, name: str | None = None, client: Client | None = None, *, lease: float = 30.0
    ) -> None:
        super().__init__(name, client, lease)

    def _take(self, timeout: float | None) -> bool:
        return self._rust.lock_acquire(self.name, self.token, self.lease, timeout)

    def _give_back(self) -> bool:
        return self._rust.lock_release(self.name, self.token)

    def locked(self) -> bool:
        """Whether anyone holds it."""
        return self._rust.lock_held(self.name)


class Semaphore(_Lease):
    """At most ``max_leases`` holders at once, shared by name (dask's
    ``Semaphore``): ``acquire(timeout=None)``, ``release()``, ``with``."""

    def __init__(
        self,
        max_leases: int = 1,
        name: str | None = None,
        client: Client | None = None,
        *,
        lease: float = 30.0,
    ) -> None:
        if max_leases < 1:
            raise ValueError(f"max_leases must be >= 1, not {max_leases}")
        super().__init__(name, client, lease)
        self.max_leases = max_leases

    def _take(self, timeout: float | None) -> bool:
        return self._rust.semaphore_acquire(
            self.name, self.token, self.max_leases, self.lease, timeout
        )

    def _give_back(self) -> bool:
        return self._rust.semaphore_release(self.name, self.token)

"""Waiting on many futures: ``wait``, ``as_completed``, ``fire_and_forget``.

All three read final states from the client's own reply queue (the Rust
client subscribes to each key and asks Redis when events stay silent), so
waiting on thousands of futures costs no thread per future. ``as_completed``
keeps one stream that more futures can join while it is read, which dask's
dynamic workloads rely on (``seq.add(client.submit(add, a, b))``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from . import _aio
from ._client import Client, Future, _collect

__all__ = ["DoneAndNotDoneFutures", "as_completed", "fire_and_forget", "wait"]


class DoneAndNotDoneFutures(NamedTuple):
    """What :func:`wait` returns: ``(done, not_done)``, as dask's."""

    done: set[Future]
    not_done: set[Future]


def _futures(fs: Future | Iterable[Future]) -> list[Future]:
    if isinstance(fs, Future):
        return [fs]
    out = list(fs)
    for f in out:
        if not isinstance(f, Future):
            raise TypeError(f"expected futures, got a {type(f).__name__}: {f!r}")
    return out


def _client_of(futures: list[Future]) -> Client:
    if not futures:
        raise ValueError("no futures given")
    return futures[0]._client


def wait(
    fs: Future | Iterable[Future],
    timeout: float | None = None,
    return_when: str = "ALL_COMPLETED",
) -> Any:
    """dask's ``wait``: ``(done, not_done)`` once all (or the first, with
    ``return_when="FIRST_COMPLETED"``) of one future or many are final;
    ``TimeoutError`` if ``timeout`` passes first. Futures of an
    asynchronous client get a coroutine (``await wait(fs)``)."""
    futures = _futures(fs)
    if futures and _client_of(futures).asynchronous:
        return _aio.to_thread(_wait, futures, timeout, return_when)
    return _wait(futures, timeout, return_when)


def _wait(futures: list[Future], timeout: float | None, return_when: str) -> DoneAndNotDoneFutures:
    if return_when not in ("ALL_COMPLETED", "FIRST_COMPLETED"):
        raise ValueError(
            f"return_when must be ALL_COMPLETED or FIRST_COMPLETED, not {return_when!r}"
        )
    if not futures:
        return DoneAndNotDoneFutures(set(), set())
    client = _client_of(futures)
    by_key = {f.key: f for f in futures}
    done_keys, not_done_keys = client._rust.wait(
        list(by_key), return_when == "FIRST_COMPLETED", timeout
    )
    if timeout is not None and return_when == "ALL_COMPLETED" and not_done_keys:
        raise TimeoutError(
            f"{len(not_done_keys)} of {len(by_key)} futures not done after {timeout}s"
        )
    return DoneAndNotDoneFutures({by_key[k] for k in done_keys}, {by_key[k] for k in not_done_keys})


def fire_and_forget(obj: Any) -> None:
    """Makes sure the tasks of ``obj`` (a future, or containers of them) run
    to the end even if this process exits at once (dask's
    ``fire_and_forget``). A warren task never depends on its client staying
    alive; what could be lost is a submission still being published, so this
    waits until every one is recorded by a scheduler."""
    found: list[Future] = []
    _collect(obj, found)
    for client in {id(f._client): f._client for f in found}.values():
        client._rust.flush()


class as_completed(Iterator[Any]):  # noqa: N801 - dask's name
    """Yields futures as they finish (dask's ``as_completed``).

    ``with_results=True`` yields ``(future, result)``; with ``raise_errors``
    (the default) a failed future's error is raised there, else yielded in
    place of its result. Futures may join while it is read: ``add(future)``,
    ``update(futures)``; ``count()`` says how many are still to come,
    ``has_ready()`` whether one can be taken without waiting,
    ``next_batch()`` and ``batches()`` take all that are ready at once.
    ``timeout``: seconds each wait may last before ``TimeoutError``.
    """

    def __init__(
        self,
        futures: Iterable[Future] | None = None,
        loop: Any = None,
        with_results: bool = False,
        raise_errors: bool = True,
        *,
        timeout: float | None = None,
    ) -> None:
        del loop
        self._with_results = with_results
        self._raise_errors = raise_errors
        self._timeout = timeout
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Future]] = {}
        self._ready: collections.deque[Future] = collections.deque()
        self._stream: Any = None
        if futures is not None:
            self.update(futures)

    # -- joining -------------------------------------------------------
    def add(self, future: Future) -> None:
        """Waits for ``future`` too (again, if it was added before)."""
        self.update([future])

    def update(self, futures: Iterable[Future]) -> None:
        """Waits for each of ``futures`` too."""
        fs = _futures(futures)
        if not fs:
            return
        with self._lock:
            for f in fs:
                self._waiting.setdefault(f.key, []).append(f)
            keys = [f.key for f in fs]
            if self._stream is None:
                self._stream = fs[0]._client._rust.as_completed(keys)
            else:
                self._stream.add(keys)

    def clear(self) -> None:
        """Forgets every future not yet yielded."""
        with self._lock:
            self._waiting.clear()
            self._ready.clear()

    # -- state ---------------------------------------------------------
    def count(self) -> int:
        """How many futures are still to be yielded."""
        with self._lock:
            return len(self._ready) + sum(len(v) for v in self._waiting.values())

    def is_empty(self) -> bool:
        """Whether every future was yielded."""
        return self.count() == 0

    def has_ready(self) -> bool:
        """Whether a future can be taken without waiting."""
        self._take(self._stream.ready() if self._stream is not None else [])
        with self._lock:
            return bool(self._ready)

    def _take(self, arrivals: list[tuple[str, str, str]]) -> None:
        with self._lock:
            for key, state, payload in arrivals:
                waiting = self._waiting.get(key)
                if not waiting:
                    continue  # cleared meanwhile
                f = waiting.pop(0)
                if not waiting:
                    del self._waiting[key]
                f._settle((state, payload))
                self._ready.append(f)

    # -- reading -------------------------------------------------------
    def _wait_one(self) -> bool:
        """Waits until a future is ready; ``False`` if none is to come."""
        while True:
            with self._lock:
                if self._ready:
                    return True
                if not self._waiting:
                    return False
            item = self._stream.next(self._timeout)
            if item is not None:
                self._take([item])

    def _emit(self, f: Future) -> Any:
        if not self._with_results:
            return f
        assert f._final is not None
        if f._final[0] == "finished" or self._raise_errors:
            return f, f._client._value(f.key, f._final)
        return f, f.exception()

    def __iter__(self) -> as_completed:
        return self

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        """``async for future in as_completed(...)``: the next one, waited
        for in a thread (see :mod:`warren._aio`)."""
        more, item = await _aio.to_thread(self._next_or_end)
        if not more:
            raise StopAsyncIteration
        return item

    def _next_or_end(self) -> tuple[bool, Any]:
        # StopIteration cannot cross a thread's future: say it instead.
        try:
            return True, next(self)
        except StopIteration:
            return False, None

    def __next__(self) -> Any:
        if not self._wait_one():
            raise StopIteration
        with self._lock:
            f = self._ready.popleft()
        return self._emit(f)

    def next_batch(self, block: bool = True) -> list[Any]:
        """Every future ready now; with ``block``, waits for at least one
        (an empty list only when none is to come)."""
        if block:
            self._wait_one()
        self.has_ready()
        with self._lock:
            batch = list(self._ready)
            self._ready.clear()
        return [self._emit(f) for f in batch]

    def batches(self) -> Iterator[list[Any]]:
        """Lists of futures as they become ready, until none is to come."""
        while True:
            batch = self.next_batch(block=True)
            if not batch:
                return
            yield batch

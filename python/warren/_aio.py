"""The async face of the one sync core, as dask's ``asynchronous=True``.

Every wait of warren's client is a call into Rust that releases the GIL
(``warren._warren``). Awaiting one runs that same call in a thread of the
event loop's executor, so the sync and async APIs share every line that
decides anything, as httpx's two clients share their models, and an event
loop is never blocked. A cancelled await stops waiting at once; the wait in
its thread ends with the result or its timeout, and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["maybe_async", "to_thread"]

T = TypeVar("T")


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the running loop's executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


def maybe_async(method: Callable[..., T]) -> Callable[..., T | Awaitable[T]]:
    """A client method that returns a coroutine when its client is
    asynchronous (dask's ``gather``, ``scatter``, ``cancel``, ... in an
    ``asynchronous=True`` client), and its value otherwise."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> T | Awaitable[T]:
        if getattr(self, "asynchronous", False):
            return to_thread(method, self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return wrapper

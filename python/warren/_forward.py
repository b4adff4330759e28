"""``Client(forward_output=True)``: what this client's tasks print, shown
here as they print it, each line prefixed by the task's key (as dask
forwards worker logs; on by default in Jupyter).

Workers publish what a running task prints (Redis pub/sub, see
``warren_core::store::output``); a thread of this client reads the
namespace's stream and shows the lines of the tasks this client submitted.
A task may print before ``submit`` has returned its key here, so lines of
keys not yet known wait a few seconds for their key. Live output is a
courtesy: what a task printed is kept with its result (``future.logs()``).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["Forwarder"]

#: Keys remembered (the newest), and how long an unknown key's lines wait.
_KEYS = 100_000
_EARLY_SECS = 5.0
_EARLY_MAX = 1_000


class Forwarder:
    """Shows the output of the keys it is told to watch."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._keys: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._early: collections.OrderedDict[str, list[tuple[float, str, str]]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._loop, name="warren-forward-output", daemon=True).start()

    def watch(self, keys: Iterable[str]) -> None:
        """Shows the output of ``keys`` from now on (and what came early)."""
        shown = []
        with self._lock:
            for k in keys:
                self._keys[k] = None
                self._keys.move_to_end(k)
                shown.extend((k, stream, text) for _, stream, text in self._early.pop(k, []))
            while len(self._keys) > _KEYS:
                self._keys.popitem(last=False)
        for item in shown:
            _show(*item)

    def close(self) -> None:
        self._closed.set()

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                item = self._stream.next(0.5)
            except Exception:  # noqa: BLE001 - a broken stream ends forwarding, not the client
                return
            if item is None:
                continue
            key, stream, text = item
            with self._lock:
                known = key in self._keys
                if not known:
                    self._keep_early(key, stream, text)
            if known:
                _show(key, stream, text)

    def _keep_early(self, key: str, stream: str, text: str) -> None:
        now = time.monotonic()
        self._early.setdefault(key, []).append((now, stream, text))
        while self._early and (
            len(self._early) > _EARLY_MAX
            or next(iter(self._early.values()))[0][0] < now - _EARLY_SECS
        ):
            self._early.popitem(last=False)


def _show(key: str, stream: str, text: str) -> None:
    out = sys.stderr if stream == "stderr" else sys.stdout
    out.write("".join(f"[{key}] {line}" for line in text.splitlines(keepends=True)))
    out.flush()

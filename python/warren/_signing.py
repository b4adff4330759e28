"""The bridge to the namespace key: Rust holds it, seals envelopes and
checks them; Python only ever unpickles what came back :class:`Verified`.

A process gets its keys from its settings (``key_file``; the client's come
with its connection, a pool process's from the variables its worker sets).
Opening is always by purpose (``call`` or ``value``), so a signed value
cannot be replayed as a function to run.
"""

from __future__ import annotations

import os
from typing import Any

from . import _warren

#: Purposes: what an envelope may be opened as.
CALL = "call"
VALUE = "value"


class Verified:
    """Pickle bytes that Rust checked: signed by a key this process holds,
    for the purpose asked. :func:`warren._pickle.loads` takes nothing else."""

    __slots__ = ("buffers", "data", "key_id")

    def __init__(self, data: bytes | bytearray, buffers: list[bytearray], key_id: str) -> None:
        self.data = data
        self.buffers = buffers
        self.key_id = key_id


def keys_from_environment() -> Any:
    """A pool process's keys: the files its worker named in
    ``WARREN_KEY_FILE`` / ``WARREN_PREVIOUS_KEY_FILE`` (none if empty)."""
    key_file = os.environ.get("WARREN_KEY_FILE", "")
    if not key_file:
        return _warren.Keys.none()
    return _warren.Keys(key_file, os.environ.get("WARREN_PREVIOUS_KEY_FILE", ""))


def accepts_code() -> bool:
    """Whether this pool process's worker was started with ``--accept-code``."""
    return os.environ.get("WARREN_ACCEPT_CODE", "").lower() in ("1", "true", "yes")

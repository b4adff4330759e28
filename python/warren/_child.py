"""One process of a Python worker's prefork pool (not for direct use).

The worker (Rust, in the parent process) starts one of these per slot as
``python -m warren._child MODULE...``. It imports the modules, says it is
ready, then runs task after task: a JSON line in on stdin, a JSON line out
on stdout, each followed by the raw bytes of the values that are not JSON
(the protocol of ``warren_worker::prefork``; the worker fetches and stores
them, so this process needs no connection). The protocol keeps private
copies of those two descriptors; the task's own ``print`` goes to stderr
(the worker's log), and is kept too, with what it writes to ``sys.stderr``,
for ``future.logs()`` and ``warren logs KEY``; its stdin reads nothing.

A call sent as an envelope (``{"$warren_call": ...}``) is opened with the
worker's key: typed data always, a pickle (code, or any object) only when
the worker was started with ``--accept-code`` and a key holder signed it.

Values over ``inline_max_bytes`` with a ``store_url`` set are the exception
to "the worker fetches and stores": this process reads and writes them in
the object store itself (``_warren.Objects``, from the worker's greeting),
so a value of hundreds of MB never crosses the pipe or sits in the worker.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import IO, Any

from . import _calls, _codec, _envelopes, _refs, _signing, _task_client, _warren
from ._task import REGISTRY


def _send(out: IO[bytes], message: dict[str, Any], blobs: list[bytes] = ()) -> None:  # type: ignore[assignment]
    line = json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    # Whole lines only: a task's threads may print (forwarded output) meanwhile.
    with _task_client.PROTOCOL_LOCK:
        out.write(line)
        for b in blobs:
            out.write(b)
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


def _error(kind: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "type": kind,
            "message": message,
            "traceback": f"Traceback (most recent call last):\n{kind}: {message}",
        }
    }


#: The fields a call sent as an envelope may have: the envelope, and a
#: function sent as code, stored apart.
_ENVELOPED = frozenset({_calls.CALL_FIELD, _calls.FN_FIELD})

#: Functions sent as code, opened, by the hash of their envelope.
_FUNCTIONS: dict[str, Any] = {}


class Task:
    """What one request asks for: the function and its arguments, values
    opened with this worker's key."""

    def __init__(
        self,
        request: dict[str, Any],
        blobs: dict[str, bytes],
        keys: Any,
        objects: Any = None,
    ) -> None:
        self.name = request.get("func", "")
        self.blobs = blobs
        self.keys = keys
        #: The object store (``_warren.Objects``), or None without one.
        self.objects = objects
        self.accept_code = _signing.accepts_code()
        args = request.get("args", [])
        self.args: list[Any] = args if isinstance(args, list) else []

    def value(self, v: Any) -> Any:
        """``v`` with the values it refers to opened."""
        return _refs.replace(v, self._open)

    def _open(self, sha: str, size: int) -> Any:
        data = self.envelope(sha, size, "value", _signing.VALUE)
        return _envelopes.open_value(data, self.keys, allow_pickle=self.accept_code)

    def envelope(self, sha: str, size: int, what: str, purpose: str) -> _envelopes.Envelope:
        """A stored envelope: its bytes as the worker handed them over, or
        read here from the object store where a value of ``size`` lives and
        opened as ``purpose`` on the way (hashed once, not twice)."""
        data = self.blobs.get(sha)
        if data is not None:
            return data
        if self.objects is not None and self.objects.holds(size):
            found, opened = self.objects.open_envelope(sha, size, self.keys, purpose)
            return _envelopes.Stored(found, opened, purpose)
        raise ValueError(f"the worker did not hand over {what} {sha}")

    def call(self) -> tuple[Any, list[Any], dict[str, Any]]:
        """``(fn, args, kwargs)``."""
        first = self.args[0] if self.args else None
        if isinstance(first, dict) and set(first) == {_calls.FN_FIELD, "kwargs"}:
            kwargs = self.value(first["kwargs"])
            if not isinstance(kwargs, dict):
                raise ValueError("a call whose keyword arguments are not a dict")
            args = [self.value(a) for a in self.args[1:]]
            ref = _refs.as_ref(first[_calls.FN_FIELD])
            if ref is None:
                if self.name == _calls.CODE_FUNC:
                    raise ValueError("a call of code without its function")
                return self.registered(), args, kwargs
            if self.name != _calls.CODE_FUNC:
                raise ValueError(f"{self.name} was sent a function as code")
            return self.function(*ref), args, kwargs
        if isinstance(first, dict) and _calls.CALL_FIELD in first and set(first) <= _ENVELOPED:
            r = _refs.as_ref(first[_calls.CALL_FIELD])
            if r is None:
                raise ValueError("a call without its envelope")
            envelope = self.envelope(*r, "the call's envelope", _signing.CALL)
            deps = [self.value(a) for a in self.args[1:]]
            fn, args, kwargs = _envelopes.open_call(envelope, self.keys, deps, self.accept_code)
            if _calls.FN_FIELD in first:
                ref = _refs.as_ref(first[_calls.FN_FIELD])
                if ref is None or fn is not None:
                    raise ValueError("a call whose function is not one stored function")
                if self.name != _calls.CODE_FUNC:
                    raise ValueError(f"{self.name} was sent a function as code")
                fn = self.function(*ref)
            if fn is None:
                fn = self.registered()
            elif self.name != _calls.CODE_FUNC:
                raise ValueError(f"{self.name} was sent a function as code")
            return fn, args, kwargs
        return self.registered(), [self.value(a) for a in self.args], {}

    def function(self, sha: str, size: int) -> Any:
        """The function stored as ``sha``: opened (checked against the key)
        once, then kept by its hash (the bytes of a hash never change)."""
        fn = _FUNCTIONS.get(sha)
        if fn is None:
            data = self.envelope(sha, size, "function", _signing.CALL)
            fn = _envelopes.open_function(data, self.keys, self.accept_code)
            if len(_FUNCTIONS) >= 256:
                _FUNCTIONS.clear()
            _FUNCTIONS[sha] = fn
        return fn

    def registered(self) -> Any:
        t = REGISTRY.get(self.name)
        if t is None:
            served = ", ".join(sorted(REGISTRY)) or "none"
            raise LookupError(
                f"no function named {self.name!r} is registered on this worker; registered: "
                f"{served}"
            )
        return t.fn


#: The characters of a task's stdout (and of its stderr) kept for its logs;
#: beyond them the task's output goes on to the worker's log only.
LOG_LIMIT = 1 << 20


#: How long printed text may wait before it is forwarded to clients that
#: watch (a few lines per message instead of one message per ``print``).
FORWARD_EVERY = 0.1


class _Kept(io.TextIOBase):
    """A task's ``sys.stdout`` or ``sys.stderr``: written through to the
    stream it replaces, kept up to :data:`LOG_LIMIT` characters, and
    forwarded (whole lines, at most every :data:`FORWARD_EVERY` seconds,
    the rest by :meth:`forward_pending`) to clients that watch."""

    def __init__(self, through: Any, stream: str) -> None:
        self._through = through
        self._stream = stream
        self._parts: list[str] = []
        self._size = 0
        self._cut = False
        self._pending = ""
        self._forwarded = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._through.write(text)
        room = LOG_LIMIT - self._size
        kept = text if len(text) <= room else text[: max(room, 0)]
        self._cut = self._cut or len(kept) < len(text)
        self._parts.append(kept)
        self._size += len(kept)
        if kept:
            with self._lock:
                self._pending += kept
                if "\n" in kept and time.monotonic() - self._last >= FORWARD_EVERY:
                    self._forward(self._pending.rfind("\n") + 1)
        return len(text)

    def forward_pending(self) -> None:
        """Forwards what waits (by the flusher thread, and at the task's end)."""
        with self._lock:
            self._forward(len(self._pending))

    def stop_forwarding(self) -> None:
        """The task ended: a handler that kept this stream (a logger made in
        the task) must not forward a later task's output as this one's."""
        with self._lock:
            self._forwarded = LOG_LIMIT

    def _forward(self, upto: int) -> None:
        text, self._pending = self._pending[:upto], self._pending[upto:]
        text = text[: max(LOG_LIMIT - self._forwarded, 0)]
        self._forwarded += len(text)
        if text:
            self._last = time.monotonic()
            _task_client.forward_output(self._stream, text)

    def flush(self) -> None:
        self._through.flush()

    def fileno(self) -> int:
        return self._through.fileno()

    def text(self) -> str:
        cut = f"\n[warren kept the first {LOG_LIMIT} characters]\n" if self._cut else ""
        return "".join(self._parts) + cut


class _Capture:
    """What a task prints while it runs (one task at a time per process, so
    swapping ``sys.stdout`` is safe here)."""

    #: The capture of the running task, for the flusher thread.
    current: _Capture | None = None

    def __enter__(self) -> _Capture:
        self._saved = sys.stdout, sys.stderr
        self.out, self.err = _Kept(sys.stdout, "stdout"), _Kept(sys.stderr, "stderr")
        sys.stdout, sys.stderr = self.out, self.err  # type: ignore[assignment]
        _Capture.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        _Capture.current = None
        sys.stdout, sys.stderr = self._saved
        self.forward_pending()
        self.stop_forwarding()

    def forward_pending(self) -> None:
        self.out.forward_pending()
        self.err.forward_pending()

    def stop_forwarding(self) -> None:
        self.out.stop_forwarding()
        self.err.stop_forwarding()

    def into(self, reply: dict[str, Any]) -> dict[str, Any]:
        """``reply`` with the task's output, if it wrote any."""
        out, err = self.out.text(), self.err.text()
        if out or err:
            reply["logs"] = {"stdout": out, "stderr": err}
        return reply


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def run(task: Task) -> tuple[dict[str, Any], list[bytes]]:
    """One task: the function's value (and the bytes of the values that are
    not JSON), or its error."""
    try:
        fn, args, kwargs = task.call()
    except LookupError as e:
        return _error("UnknownFunction", str(e)), []
    except _envelopes.PickleRefused as e:
        return _error("CodeNotAccepted", str(e)), []
    except _warren.BadSignature as e:
        return _error("BadSignature", str(e)), []
    except Exception as e:  # noqa: BLE001 - undecodable input is the task's error
        return {"error": _failure(e, skip_frames=0)}, []
    captured = _Capture()
    try:
        with captured:
            value = fn(*args, **kwargs)
            # An `async def` task: awaited here, on a loop of its own.
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
    except BaseException as e:  # noqa: BLE001 - a task's error is its result
        return captured.into({"error": _failure(e, skip_frames=1)}), []
    if _codec.plain(value):
        return captured.into({"ok": value}), []
    try:
        kind, header, frames, _ = _envelopes.encode(value, task.keys, lambda _: None)
        objects = task.objects
        if objects is not None and objects.holds(_envelopes.at_least(header, frames)):
            # Big: sealed straight into the store's file, never whole here.
            digest, size = task.keys.seal_to(objects, kind, _signing.VALUE, header, frames)
            return captured.into({"ok": {_refs.BLOB: digest, "size": size}}), []
        envelope = task.keys.seal(kind, _signing.VALUE, header, frames)
    except _warren.WarrenError as e:
        message = f"the result of {task.name} could not be stored: {e}"
        return captured.into(_error("WorkerError", message)), []
    except (TypeError, ValueError) as e:
        return captured.into(_error(type(e).__name__, f"the result of {task.name}: {e}")), []
    return captured.into({"ok": _refs.ref_of(envelope), "blobs": [len(envelope)]}), [envelope]


def _flusher() -> None:
    """Forwards a running task's last lines when it prints nothing more for
    a while (a line printed before a long computation)."""
    while True:
        time.sleep(FORWARD_EVERY)
        capture = _Capture.current
        if capture is not None:
            capture.forward_pending()


def _read_request(proto_in: IO[bytes]) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    line = proto_in.readline()
    if not line:
        return None
    request = json.loads(line)
    blobs = {}
    for b in request.get("blobs", []):
        data = proto_in.read(b["size"])
        blobs[b["hash"]] = data
    return request, blobs


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
    keys = _signing.keys_from_environment()
    _send(proto_out, {"ready": True})
    # The worker's greeting: the settings a task's get_client() uses.
    greeting = proto_in.readline()
    if not greeting:
        return 0
    settings = {str(k): str(v) for k, v in (json.loads(greeting).get("settings") or {}).items()}
    _task_client.attach(proto_in, proto_out, settings)
    objects = _warren.Objects.open(settings) if settings.get("store_url") else None
    threading.Thread(target=_flusher, name="warren-output", daemon=True).start()
    while True:
        request = _read_request(proto_in)
        if request is None:
            return 0
        _task_client.task_started()
        reply, blobs = run(Task(request[0], request[1], keys, objects))
        _send(proto_out, reply, blobs)
        # Nothing of the task outlives it (no reference cycle holds its
        # values: tests/test_store.py checks with the collector off).
        del reply, blobs, request


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

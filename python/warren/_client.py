"""``Client``: dask.distributed's futures API on warren.

The client is warren's Rust client (``warren._warren.Client``): submissions
are published to RabbitMQ in the background and recorded by a scheduler in
Redis; results arrive on the client's own reply queue. What is Python here
is what a Python user touches: argument checking, futures, exceptions,
reprs.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, NamedTuple

from . import (
    _aio,
    _calls,
    _cluster,
    _codec,
    _envelopes,
    _forward,
    _refs,
    _run,
    _schedules,
    _signing,
    _timing,
    _warren,
)
from ._cluster import LocalCluster, setting_text
from ._errors import UnservedFunction
from ._future import CancelledError, Future, TaskLogs, _final_error
from ._task import PYTHON_QUEUE, registration

__all__ = ["CancelledError", "Client", "Future", "TaskLogs"]

#: From this size on, a value is sealed straight into the object store (a
#: directory's file, an S3 upload) rather than into memory first (see
#: ``Client._store_sealed``).
_SEALED_INTO_FILE = 16 * 1024 * 1024

#: ``map`` publishes the calls prepared so far once their stored values
#: reach this many bytes, then twice as many each time, up to the last: the
#: first tasks start early, and a big map is still a few batches.
_FIRST_BATCH_BYTES = 2 * 1024 * 1024
_LAST_BATCH_BYTES = 32 * 1024 * 1024

#: A stored function is stored again after this long (values live
#: ``result_ttl_secs``, a day by default).
_RESTORE_AFTER = 3600.0


def _default_queue(name: str) -> str:
    # As warren_core::routing::default_queue_for: Python functions
    # (module:function) to the Python workers' queue.
    return PYTHON_QUEUE if ":" in name else "default"


class _StoredBytes(threading.local):
    """Bytes of values stored since the last publish, counted per thread:
    two threads mapping on one client do not move each other's batch
    boundaries (``map``)."""

    bytes = 0


class _Resolved(NamedTuple):
    name: str
    queue: str


class Client:
    """A connection to a warren namespace (dask's ``Client``).

    ``Client()`` reads the same settings as the ``warren`` CLI: defaults,
    ``./warren.toml`` (or ``config=``), ``WARREN_*`` variables. An AMQP URL
    as the first argument, and any setting as a keyword (``namespace=``,
    ``redis_url=``, ...), override them. ``Client(cluster)`` connects to a
    :class:`warren.LocalCluster`.

    With no address, no ``amqp_url`` and no ``config``, when no scheduler
    serves the namespace, it starts a :class:`warren.LocalCluster` as dask
    does (``n_workers=``, ``threads_per_worker=``, ``processes=`` go to it),
    which stops when the client closes or this process exits.

    ``forward_output=True`` (the default in Jupyter): what this client's
    tasks print is shown here as they print it, each line prefixed by the
    task's key.

    ``asynchronous=True``: the same client for asyncio code, as dask's.
    ``gather``, ``scatter``, ``cancel``, ``forget``, ``restart`` and
    ``close`` return coroutines; ``await future``, ``await client`` (the
    client itself), ``async with``, ``async for f in as_completed(...)``.
    """

    #: The client made last in this process: the one ``Variable``, ``Lock``
    #: and the other primitives use when given none.
    _latest: Client | None = None

    def __init__(
        self,
        address: str | LocalCluster | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        asynchronous: bool = False,
        forward_output: bool | None = None,
        **settings: Any,
    ) -> None:
        #: Whether the methods that wait return coroutines (dask's flag).
        self.asynchronous = asynchronous
        #: The local cluster this client runs on, if any (dask's ``client.cluster``).
        self.cluster: LocalCluster | None = None
        self._owns_cluster = False
        if isinstance(address, LocalCluster):
            self.cluster = address
            config = address._config if config is None else config
            settings = {**dict(address._overrides), **settings}
        elif address is not None:
            settings["amqp_url"] = address
        config = os.fspath(config) if config is not None else None
        overrides = [(k, setting_text(v)) for k, v in settings.items()]
        may_start = (
            address is None
            and config is None
            and "amqp_url" not in settings
            and "WARREN_AMQP_URL" not in os.environ
        )
        # The probe signs nothing, so it needs no key: the cluster makes one.
        if (
            may_start
            and _cluster.connect(None, [*overrides, ("key_file", "none")]).scheduler_count() == 0
        ):
            self.cluster = LocalCluster(n_workers, threads_per_worker, processes, **settings)
            self._owns_cluster = True
        self._rust = _cluster.connect(config, overrides)
        self._keys = self._rust.keys()
        #: The object store, which big values are sealed into (or None).
        self._objects = self._rust.object_store()
        # Functions sent as code that this client stored, by hash: when.
        self._stored: dict[str, float] = {}
        self._served: set[_Resolved] = set()
        self._served_lock = threading.Lock()
        #: Bytes of values stored since the last submit (see `map`).
        self._since_publish = _StoredBytes()
        if forward_output is None:
            from ._progress import _in_notebook

            forward_output = _in_notebook()
        self._forwarder = _forward.Forwarder(self._rust.output()) if forward_output else None
        Client._latest = self

    # -- submitting ----------------------------------------------------
    def submit(
        self,
        fn: Callable[..., Any] | str,
        *args: Any,
        key: str | None = None,
        pure: bool = True,
        retries: int = 0,
        priority: int = 0,
        queue: str | None = None,
        timeout: float | None = None,
        allow_unserved: bool = False,
        delay: _timing.Duration | None = None,
        at: _timing.When | None = None,
        retry_delay: _timing.Duration | None = None,
        retry_backoff: float | None = None,
        retry_max_delay: _timing.Duration | None = None,
        retry_jitter: bool = False,
        retry_on: Iterable[type[BaseException] | str] | None = None,
        concurrency_key: str | None = None,
        **kwargs: Any,
    ) -> Future:
        """Runs ``fn(*args, **kwargs)`` on a worker; returns its
        :class:`Future` at once (dask's ``submit``).

        ``fn`` is any callable: a ``@task`` function travels by name to the
        workers that imported it; anything else (a function from a notebook
        cell, a lambda, a closure, a builtin) travels as code, signed with the
        namespace key, to workers started with ``--accept-code``. A registered
        name (the stock Rust ``"inc"``) works too. Arguments may be any value
        (JSON travels as JSON; tuples, bytes, numpy arrays and other objects
        as values of their own type); futures among them, nested too, are
        dependencies. ``pure`` (default): the same function and arguments give
        the same future. ``retries``: runs again after a failure. ``timeout``:
        seconds before it fails with ``TimeoutError``. Unless
        ``allow_unserved``, a function that no live worker runs is refused
        here, naming what is served.

        When it runs (Celery's ``countdown``/``eta``): ``delay`` (seconds, a
        ``timedelta`` or ``"30s"``) or ``at`` (a ``datetime``) keeps it
        ``pending`` in Redis until then; ``cancel`` works meanwhile. Retries
        wait ``retry_delay``, growing ``retry_backoff`` times per retry up to
        ``retry_max_delay`` (10 minutes), a random part of it with
        ``retry_jitter``, and happen only for the exception classes (or
        names) in ``retry_on``. ``concurrency_key``: at most the limit
        ``warren limits set --key`` gives it of the tasks sharing it run at
        once, across the cluster.
        """
        target = self._resolve(fn, queue, allow_unserved)
        when = _timing.submit_options(
            delay, at, retry_delay, retry_backoff, retry_max_delay, retry_jitter, retry_on
        )
        call = _calls.prepare(self, fn, target.name, args, kwargs, pure, key)
        publish = self._publisher(target, pure, retries, priority, timeout, concurrency_key, when)
        keys = publish([call]).keys()
        self._watch(keys)
        return Future(keys[0], self)

    def _publisher(
        self,
        target: _Resolved,
        pure: bool,
        retries: int,
        priority: int,
        timeout: float | None,
        concurrency_key: str | None,
        when: dict[str, Any],
    ) -> Callable[[list[_calls.Call]], _warren.Publishing]:
        """What publishes a batch of calls to ``target`` with these options,
        in the background (its ``keys()`` waits)."""

        options = _warren.Submission(
            pure,
            retries,
            priority,
            target.queue,
            timeout,
            concurrency_key=concurrency_key,
            **when,
        )

        def publish(calls: list[_calls.Call]) -> _warren.Publishing:
            self._since_publish.bytes = 0
            return self._rust.submit(
                target.name, [c.args for c in calls], [c.key for c in calls], options
            )

        return publish

    def map(
        self,
        fn: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        key: str | list[str] | None = None,
        pure: bool = True,
        retries: int = 0,
        priority: int = 0,
        queue: str | None = None,
        timeout: float | None = None,
        allow_unserved: bool = False,
        delay: _timing.Duration | None = None,
        at: _timing.When | None = None,
        retry_delay: _timing.Duration | None = None,
        retry_backoff: float | None = None,
        retry_max_delay: _timing.Duration | None = None,
        retry_jitter: bool = False,
        retry_on: Iterable[type[BaseException] | str] | None = None,
        concurrency_key: str | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """One task per item (several iterables are zipped, as in ``map``);
        ``kwargs`` go to every call. ``key``: a list of keys, one per task.
        The other options are :meth:`submit`'s, for every task. Calls with
        big arguments (arrays) start while later ones are prepared; an
        argument that cannot be sent still fails the whole ``map``, and the
        tasks already sent are cancelled."""
        if not iterables:
            raise TypeError("map() needs at least one iterable of arguments")
        target = self._resolve(fn, queue, allow_unserved)
        when = _timing.submit_options(
            delay, at, retry_delay, retry_backoff, retry_max_delay, retry_jitter, retry_on
        )
        # dask's map stops at the shortest iterable, as zip does.
        items = list(zip(*iterables, strict=False))
        keys: list[str | None] = [None] * len(items)
        if isinstance(key, list):
            if len(key) != len(items):
                raise ValueError(f"{len(key)} keys for {len(items)} tasks")
            keys = list(key)
        elif key is not None:
            raise TypeError("map(key=...) takes a list of keys, one per task")
        stored: dict[int, dict[str, Any]] = {}

        publish = self._publisher(target, pure, retries, priority, timeout, concurrency_key, when)

        # Calls whose arguments are stored values (arrays, say) are
        # published in growing batches as they are prepared, in the
        # background, so workers start on the first while the client seals
        # the rest (issue 32's array row); calls of JSON arguments store
        # nothing and go in one batch.
        batches: list[_warren.Publishing] = []
        calls: list[_calls.Call] = []
        publish_at = _FIRST_BATCH_BYTES
        self._since_publish.bytes = 0
        failed: BaseException | None = None
        try:
            for args, k in zip(items, keys, strict=True):
                calls.append(_calls.prepare(self, fn, target.name, args, kwargs, pure, k, stored))
                if self._since_publish.bytes >= publish_at:
                    batches.append(publish(calls))
                    calls = []
                    publish_at = min(2 * publish_at, _LAST_BATCH_BYTES)
            if calls or not batches:
                batches.append(publish(calls))
        except BaseException as e:
            failed = e
        made: list[str] = []
        for batch in batches:
            try:
                made += batch.keys()
            except BaseException as e:
                failed = failed or e
        if failed is not None:
            # An argument that cannot be sent fails the whole map, as it did
            # before batches: what was already published is cancelled.
            if made:
                self._rust.cancel(made)
            raise failed
        self._watch(made)
        return [Future(k, self) for k in made]

    def schedule(
        self,
        name: str,
        fn: Callable[..., Any] | str,
        *args: Any,
        every: _timing.Duration | None = None,
        cron: str | None = None,
        missed: str = "run-once",
        queue: str | None = None,
    ) -> Any:
        """Runs ``fn(*args)`` every ``every`` (seconds, a timedelta, ``"5m"``)
        or at the times of ``cron`` (``"0 * * * *"``, UTC), each tick once,
        as schedule ``name``; returns the first tick's datetime. ``missed``:
        a tick missed while no scheduler ran, ``"run-once"`` or ``"skip"``."""
        return _schedules.schedule(self, name, fn, args, every, cron, missed, queue)

    def unschedule(self, name: str) -> bool:
        """Removes schedule ``name`` (its runs stay); whether it existed."""
        return self._rust.remove_schedule(name)

    def schedule_runs(self, name: str) -> list[Future]:
        """The futures of schedule ``name``'s latest runs, newest first."""
        return _schedules.runs(self, name)

    def _watch(self, keys: list[str]) -> None:
        if self._forwarder is not None:
            self._forwarder.watch(keys)

    @_aio.maybe_async
    def scatter(
        self,
        data: Any,
        workers: Any = None,
        broadcast: bool = False,
        direct: bool | None = None,
        hash: bool = True,  # noqa: A002 - dask's name
        timeout: float | None = None,
    ) -> Any:
        """Futures that hold ``data`` (dask's ``scatter``): one future for a
        value, a list for a list, a dict of futures for a dict. With ``hash``
        (the default) a future's key is the hash of its value, so scattering
        the same data again gives the same future. The values live in Redis
        (large or not JSON: stored once, by reference), which every worker
        reads, so ``workers``, ``broadcast`` and ``direct`` change nothing here.
        """
        del workers, broadcast, direct
        if isinstance(data, dict):
            keys = list(data)
            made = self._scatter([data[k] for k in keys], hash, timeout)
            return dict(zip(keys, made, strict=True))
        if isinstance(data, (list, tuple, set, frozenset)) or hasattr(data, "__next__"):
            return self._scatter(list(data), hash, timeout)
        return self._scatter([data], hash, timeout)[0]

    def _scatter(self, values: list[Any], hashed: bool, timeout: float | None) -> list[Future]:
        def no_future(v: object) -> str | None:
            if isinstance(v, Future):
                raise TypeError("scatter() takes data, not futures: pass the futures themselves")
            return None

        args, keys = [], []
        for v in values:
            if _codec.plain(v):
                arg = v
                token = json.dumps(v, sort_keys=True).encode()
            else:
                kind, header, frames, _ = _envelopes.encode(v, self._keys, no_future)
                arg = self._store_sealed(kind, _signing.VALUE, header, frames)
                token = arg[_refs.BLOB].encode()
            args.append(json.dumps([arg], separators=(",", ":")))
            prefix = re.sub(r"[^A-Za-z0-9_.-]", "", type(v).__name__) or "value"
            keys.append(_calls.make_key(prefix, hashed, token))
        options = _warren.Submission(timeout=timeout)
        made = self._rust.submit(_calls.VALUE_FUNC, args, keys, options).keys()
        return [Future(k, self) for k in made]

    # -- values --------------------------------------------------------
    def _future_key(self, v: object) -> str | None:
        return v.key if isinstance(v, Future) else None

    def _function_ref(self, fn: Callable[..., Any]) -> dict[str, Any]:
        """A function sent as code, stored once: its envelope's reference
        (pickled each time, which is cheap; stored again only when new here,
        or older than an hour, well within ``result_ttl_secs``)."""
        envelope = _envelopes.seal_function(fn, self._keys)
        ref = _refs.ref_of(envelope)
        digest = ref[_refs.BLOB]
        now = time.monotonic()
        if now - self._stored.get(digest, -_RESTORE_AFTER) >= _RESTORE_AFTER:
            self._put_blob(envelope)
            if len(self._stored) > 4096:
                self._stored.clear()
            self._stored[digest] = now
        return ref

    def _put_blob(self, data: bytes) -> dict[str, Any]:
        digest, size = self._rust.put_blob(data)
        return {_refs.BLOB: digest, "size": size}

    def _store_sealed(
        self, kind: str, purpose: str, header: bytes, frames: list[Any]
    ) -> dict[str, Any]:
        """The reference of the envelope of ``header`` and ``frames``. A
        value of :data:`_SEALED_INTO_FILE` or more, with an object store, is
        sealed straight into it: the client never holds it twice.
        Anything smaller is sealed, then stored in the background while the
        next is sealed (faster for many values: measured in BENCHMARKS.md)."""
        objects = self._objects
        size = _envelopes.at_least(header, frames)
        if objects is not None and size >= _SEALED_INTO_FILE and objects.holds(size):
            digest, size = self._keys.seal_to(objects, kind, purpose, header, frames)
            self._since_publish.bytes += size
            return {_refs.BLOB: digest, "size": size}
        return self._put_blob_later(self._keys.seal(kind, purpose, header, frames))

    def _put_blob_later(self, data: bytes) -> dict[str, Any]:
        """``data``'s reference, while it is stored in the background: the
        next message this client publishes waits until it is stored."""
        digest, size = self._rust.put_blob_later(data)
        self._since_publish.bytes += size
        return {_refs.BLOB: digest, "size": size}

    def _load(self, payload: str) -> Any:
        """A value as stored: JSON, with references to values that are not
        JSON fetched and opened (a pickle only if a key holder signed it)."""

        def load(digest: str, size: int) -> Any:
            # From the object store, opened as it is read (hashed once);
            # from Redis, or if the store has not got it, the general path.
            found = self._rust.open_blob(digest, size, self._keys, _signing.VALUE)
            if found is not None:
                data = _envelopes.Stored(*found, _signing.VALUE)
                return _envelopes.open_value(data, self._keys)
            return _envelopes.open_value(self._rust.get_blob(digest, size), self._keys)

        return _refs.replace(json.loads(payload), load)

    def _value(self, key: str, final: tuple[str, str]) -> Any:
        if final[0] == "finished":
            return self._load(final[1])
        raise _final_error(key, final)

    def _resolve(
        self, fn: Callable[..., Any] | str, queue: str | None, allow_unserved: bool
    ) -> _Resolved:
        registered = registration(fn)
        if registered is not None:
            target = _Resolved(registered.name, queue or registered.queue)
        elif isinstance(fn, str):
            target = _Resolved(fn, queue or _default_queue(fn))
        elif callable(fn):
            # Without a key no worker could run it, whoever serves the queue:
            # say first what the user must fix.
            _envelopes.need_key_for(fn, self._keys)
            target = _Resolved(_calls.CODE_FUNC, queue or _calls.CODE_QUEUE)
        else:
            raise TypeError(f"submit() needs a callable or a name, not {type(fn).__name__}")
        if not allow_unserved and target not in self._served:
            try:
                self._rust.check_served(target.name, target.queue)
            except UnservedFunction as e:
                hint = ""
                if target.name.startswith("__main__:"):
                    hint = (
                        "\n(functions defined in a notebook or a script run as __main__ cannot "
                        "be imported by a worker: put them in a module and start "
                        "python -m warren worker MODULE)"
                    )
                if target.name == _calls.CODE_FUNC:
                    raise UnservedFunction(
                        f"no live worker on queue {target.queue!r} runs functions sent as code: "
                        "start one with `python -m warren worker --accept-code` (it needs the "
                        "namespace key, `warren key new`, and so does this client), decorate "
                        "the function with @warren.task in a module the workers import, or "
                        "pass allow_unserved=True to submit for a worker that comes later"
                    ) from None
                text = str(e).replace("pass --allow-unserved", "pass allow_unserved=True")
                text = text.replace("pass --queue (queue= in Python)", "pass queue=")
                raise UnservedFunction(f"{text}{hint}") from None
            with self._served_lock:
                self._served.add(target)
        return target

    # -- reading -------------------------------------------------------
    @_aio.maybe_async
    def gather(self, futures: Any, errors: str = "raise", direct: bool | None = None) -> Any:
        """The values of ``futures`` (a future, or lists, tuples, sets and
        dicts of them, nested), in the same shape; the first error in input
        order is raised (``errors="skip"`` leaves failed ones out of lists
        and sets). An iterator gives an iterator of values, gathered as it is
        read (as dask's does). ``direct`` changes nothing: values come from
        Redis or the object store, never from a worker; big ones are read as
        their tasks end, while later ones still run."""
        del direct
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        if isinstance(futures, Iterator):
            return (self.gather(f, errors) for f in futures)
        found: list[Future] = []
        _collect(futures, found)
        # Futures are equal by key, yet each object holds its own outcome:
        # every object of a key is settled (map of a pure function over
        # equal arguments gives several).
        by_key: dict[str, list[Future]] = {}
        for f in found:
            if f._final is None:
                by_key.setdefault(f.key, []).append(f)
        loaded: dict[str, Any] = {}
        if by_key:
            self._settle_as_they_end(by_key, loaded)
        return _fill(futures, errors, self, loaded)

    def _settle_as_they_end(self, by_key: dict[str, list[Future]], loaded: dict[str, Any]) -> None:
        """Settles every future of ``by_key``. While the values that arrive
        are stored ones (references, ``"$blob"``), each is read into
        ``loaded`` as its task ends, while later tasks still run: a
        ``gather`` of big values ends soon after the last task does, not
        after reading every value in turn (issue 32's array row). At the
        first small value the rest is waited for at once: a wake-up per
        task would cost a no-op ``map`` more than reading saves."""
        stream = self._rust.as_completed(list(by_key))
        left = dict(by_key)
        while left:
            arrivals = stream.ready()
            if not arrivals:
                one = stream.next(None)
                if one is None:
                    break
                arrivals = [one]
            small = False
            for key, state, payload in arrivals:
                final = (state, payload)
                for f in left.pop(key, ()):
                    f._settle(final)
                if state == "finished" and _refs.BLOB in payload:
                    # A value that cannot be read now is read again, and its
                    # error raised, in input order, by `_fill`.
                    with contextlib.suppress(Exception):
                        loaded[key] = self._load(payload)
                else:
                    small = True
            if small:
                break
        if left:
            finals = self._rust.outcomes(list(left), None)
            for same, final in zip(left.values(), finals, strict=True):
                for f in same:
                    f._settle(final)

    @_aio.maybe_async
    def cancel(self, futures: Iterable[Future] | Future) -> None:
        """Cancels futures and everything that depends on them."""
        fs = [futures] if isinstance(futures, Future) else list(futures)
        self._rust.cancel([f.key for f in fs])

    @_aio.maybe_async
    def forget(self, futures: Iterable[Future] | Future) -> int:
        """Drops final futures' records and results from Redis."""
        fs = [futures] if isinstance(futures, Future) else list(futures)
        return self._rust.forget([f.key for f in fs])

    @_aio.maybe_async
    def restart(self) -> dict[str, int]:
        """Cancels every future of the namespace and empties its queues."""
        epoch, expected, ready = self._rust.restart()
        return {"epoch": epoch, "workers_expected": expected, "workers_ready": ready}

    @_aio.maybe_async
    def run(
        self,
        function: Callable[..., Any] | str,
        *args: Any,
        workers: list[str] | None = None,
        wait: bool = True,
        nanny: bool = False,
        on_error: str = "raise",
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Runs ``function(*args, **kwargs)`` once on every live worker
        that has it (a function sent as code: the workers that accept code),
        outside their task slots; returns ``{worker: value}`` (dask's
        ``run``). ``workers``: only these (``host:pid``). ``on_error``:
        ``raise`` the first error, ``return`` it as the worker's value, or
        ``ignore`` that worker. ``timeout``: seconds to wait for every
        answer. ``nanny`` is dask's and changes nothing."""
        del nanny
        return _run.run(self, function, args, kwargs, workers, wait, on_error, timeout)

    def future(self, key: str) -> Future:
        """A future for a key made elsewhere (the CLI, another client)."""
        return Future(key, self)

    @_aio.maybe_async
    def close(self) -> None:
        """Waits until every submission is recorded (the connection closes
        with the client); stops the local cluster this client started."""
        self._close()

    def _close(self) -> None:
        if self._forwarder is not None:
            self._forwarder.close()
        self._rust.flush()
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def __await__(self) -> Generator[Any, None, Client]:
        """``await Client(asynchronous=True)``: the client, connected."""

        async def ready() -> Client:
            return self

        return ready().__await__()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await _aio.to_thread(self._close)

    # -- display -------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Schedulers, live workers (slots, queues, functions), counters."""
        return json.loads(self._rust.info())

    @property
    def namespace(self) -> str:
        return self._rust.namespace

    @property
    def dashboard_link(self) -> str:
        """The RabbitMQ management UI of this client's broker."""
        host = urllib.parse.urlsplit(self._rust.amqp_url).hostname or "127.0.0.1"
        return f"http://{host}:15672/#/queues"

    def __repr__(self) -> str:
        try:
            i = self.info()
        except Exception as e:  # noqa: BLE001 - a repr must not raise
            return f"<Client: namespace={self.namespace!r} (unreachable: {e})>"
        slots = sum(w.get("concurrency", 0) for w in i["workers"])
        return (
            f"<Client: namespace={self.namespace!r} schedulers={i['schedulers']} "
            f"workers={len(i['workers'])} slots={slots} pending={i['pending']}>"
        )

    def _repr_html_(self) -> str:
        i = self.info()
        rows = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                html.escape(w["worker"]),
                w["concurrency"],
                html.escape(", ".join(w["queues"])),
                html.escape(", ".join(w.get("functions") or ["(any)"])),
            )
            for w in i["workers"]
        )
        link = html.escape(self.dashboard_link)
        local = f"<li>Local cluster: {html.escape(repr(self.cluster))}</li>" if self.cluster else ""
        return (
            f"<div><h3>warren.Client</h3><ul>"
            f"<li>Namespace: <code>{html.escape(self.namespace)}</code></li>"
            f"<li>Broker: <code>{html.escape(self._rust.amqp_url)}</code></li>"
            f"<li>Schedulers: {i['schedulers']}</li>"
            f"<li>Workers: {len(i['workers'])}, slots: "
            f"{sum(w['concurrency'] for w in i['workers'])}</li>"
            f"<li>Pending futures: {i['pending']}</li>"
            f'<li>Dashboard: <a href="{link}" target="_blank">{link}</a></li>{local}</ul>'
            f"<table><tr><th>worker</th><th>slots</th><th>queues</th><th>functions</th></tr>"
            f"{rows}</table></div>"
        )


def _collect(x: Any, out: list[Future]) -> None:
    if isinstance(x, Future):
        out.append(x)
    elif isinstance(x, (list, tuple, set, frozenset)):
        for y in x:
            _collect(y, out)
    elif isinstance(x, dict):
        for y in x.values():
            _collect(y, out)


def _failed(x: Any) -> bool:
    return isinstance(x, Future) and x._final is not None and x._final[0] != "finished"


def _fill(x: Any, errors: str, client: Client, loaded: dict[str, Any]) -> Any:
    if isinstance(x, Future):
        assert x._final is not None
        if x.key in loaded and x._final[0] == "finished":
            return loaded[x.key]
        return client._value(x.key, x._final)
    if isinstance(x, (list, tuple, set, frozenset)):
        out = [_fill(y, errors, client, loaded) for y in x if not (errors == "skip" and _failed(y))]
        if isinstance(x, (set, frozenset)):
            return type(x)(out)
        return type(x)(out) if isinstance(x, tuple) else out
    if isinstance(x, dict):
        return {k: _fill(v, errors, client, loaded) for k, v in x.items()}
    return x

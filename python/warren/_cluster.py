"""``LocalCluster``: a scheduler and Python workers on this machine, as
dask's ``LocalCluster`` gives them, started by ``Client()`` when nothing
serves its namespace.

The processes are warren's own programs (``warren-scheduler``, ``python -m
warren worker --accept-code``), each logging to a file in ``log_dir``, in a
session of its own so that a Ctrl-C in the terminal reaches only the
script. They stop when the cluster closes, when the client that started it
closes, when the interpreter exits, and, through a lifeline pipe (see
``warren_core::lifeline``), when this process dies in any other way (a
SIGKILL, a Jupyter kernel restart).

RabbitMQ and Redis are not started here: they are system services
(``broker-config/up.sh``, or the command the error names).
"""

from __future__ import annotations

import html
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from . import _binaries, _services, _warren

__all__ = ["LocalCluster", "connect"]

#: How long ``close`` lets processes drain after SIGTERM before SIGKILL.
_STOP_WITHIN = 10.0
#: How often a start that waits says so.
_SAY_EVERY = 5.0


def setting_text(v: Any) -> str:
    """A setting's value as warren's settings read it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def connect(config: str | None, overrides: list[tuple[str, str]]) -> _warren.Client:
    """A Rust client; when RabbitMQ or Redis does not answer,
    :class:`ServiceNotRunning`, naming which, where, and how to start it."""
    try:
        return _warren.Client(config, overrides)
    except _warren.WarrenError as e:
        _ns, amqp, redis, _key, _store = _warren.resolved_settings(config, overrides)
        down = _services.missing(amqp, redis)
        if down:
            raise _services.ServiceNotRunning(_services.explain(down)) from e
        raise


class LocalCluster:
    """A scheduler and ``n_workers`` Python workers on this machine (dask's
    ``LocalCluster``).

    ``n_workers`` (default: the cores) workers with ``threads_per_worker``
    task slots each (default 1; each slot is a Python process, so CPU-bound
    code uses the cores). ``processes=False``: one worker with all the
    slots. The workers run functions sent as code, so the cluster needs the
    namespace key: it makes one (``key_file``, by default
    ``~/.config/warren/key``) if none exists. Settings (``namespace=``,
    ``amqp_url=``, ...) and ``config=`` are as for :class:`warren.Client`.
    Values over ``inline_max_bytes`` (64 KiB) are kept in a directory, not
    in Redis's memory: ``store_url`` if set, else one under the temporary
    directory. Logs go to ``log_dir`` (default: a new directory it names).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        *,
        config: str | os.PathLike[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 60.0,
        **settings: Any,
    ) -> None:
        cores = os.cpu_count() or 1
        n = cores if n_workers is None else n_workers
        threads = 1 if threads_per_worker is None else threads_per_worker
        if n < 0 or threads < 1:
            raise ValueError(
                f"LocalCluster(n_workers={n_workers!r}, threads_per_worker="
                f"{threads_per_worker!r}): need n_workers >= 0 and threads_per_worker >= 1"
            )
        if not processes:
            n, threads = min(n, 1), max(n, 1) * threads
        self._threads = threads
        self._config = os.fspath(config) if config is not None else None
        self._overrides = [(k, setting_text(v)) for k, v in settings.items()]
        self.namespace, _amqp, _redis, _key, store = _warren.resolved_settings(
            self._config, self._overrides
        )
        if not store:
            # Values over inline_max_bytes go to a directory rather than
            # into Redis's memory: every process of the cluster and its
            # clients is on this machine.
            self._overrides.append(("store_url", _default_store().as_uri()))
        self.key_file, self.key_id, made = _warren.ensure_key(self._config, self._overrides)
        if made:
            print(
                f"warren: made namespace key {self.key_id} in {self.key_file} (mode 0600)",
                file=sys.stderr,
            )
        self._rust = connect(self._config, self._overrides)
        self.log_dir = Path(
            log_dir
            if log_dir is not None
            else tempfile.mkdtemp(prefix=f"warren-{self.namespace}-", dir=_runtime_dir())
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The lifeline: children hold the read end, only this process the
        # write end (os.pipe's descriptors are not inherited unless passed).
        self._lifeline_read, self._lifeline = os.pipe()
        self._scheduler = self._spawn("scheduler", [_binaries.find("warren-scheduler")])
        self._workers: list[subprocess.Popen[bytes]] = []
        self._labels: dict[int, str] = {self._scheduler.pid: "scheduler"}
        self._started = 0
        self._finalizer = weakref.finalize(
            self, _stop, [self._scheduler], self._workers, self._lifeline, _STOP_WITHIN
        )
        try:
            self.scale(n, timeout=start_timeout)
        except BaseException:
            self.close()
            raise

    # -- processes -----------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, value in self._overrides:
            env[f"WARREN_{name.upper()}"] = value
        if self._config is not None:
            env["WARREN_CONFIG"] = self._config
        env["WARREN_KEY_FILE"] = self.key_file
        env["WARREN_LIFELINE_FD"] = str(self._lifeline_read)
        return env

    def _spawn(self, label: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{label}.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            return subprocess.Popen(
                argv,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self._lifeline_read,),
                start_new_session=True,
            )
        finally:
            log.close()

    def _spawn_worker(self) -> subprocess.Popen[bytes]:
        self._started += 1
        label = f"worker-{self._started}"
        argv = [sys.executable, "-m", "warren", "worker", "--accept-code"]
        argv += ["--concurrency", str(self._threads)]
        p = self._spawn(label, argv)
        self._labels[p.pid] = label
        return p

    def scale(self, n: int, timeout: float = 60.0) -> None:
        """Runs ``n`` workers: starts more, or stops the newest (they drain:
        running tasks finish first). Returns once they serve."""
        if n < 0:
            raise ValueError(f"scale({n}): a number of workers >= 0")
        self._check_open()
        while len(self._workers) < n:
            self._workers.append(self._spawn_worker())
        while len(self._workers) > n:
            w = self._workers.pop()
            _stop([], [w], None, _STOP_WITHIN)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        start = time.monotonic()
        said = start
        want = {p.pid for p in self._workers}
        while True:
            for p in [self._scheduler, *self._workers]:
                if p.poll() is not None:
                    label = self._labels[p.pid]
                    raise RuntimeError(
                        f"the local {label} exited at start (status {p.returncode}); "
                        f"its log, {self.log_dir / (label + '.log')}, ends:\n"
                        + _tail(self.log_dir / f"{label}.log")
                    )
            info = json.loads(self._rust.info())
            serving = {w["pid"] for w in info["workers"]} & want
            if info["schedulers"] >= 1 and serving == want:
                return
            now = time.monotonic()
            if now - start > timeout:
                raise TimeoutError(
                    f"after {timeout:.0f}s, {len(serving)} of {len(want)} local workers serve "
                    f"namespace {self.namespace!r} and {info['schedulers']} schedulers: see the "
                    f"logs in {self.log_dir}"
                )
            if now - said > _SAY_EVERY:
                said = now
                print(
                    f"warren: waiting for the local cluster ({len(serving)}/{len(want)} workers, "
                    f"{info['schedulers']} schedulers; logs in {self.log_dir})",
                    file=sys.stderr,
                )
            time.sleep(0.1)

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("this LocalCluster is closed")

    # -- dask's API ----------------------------------------------------
    @property
    def workers(self) -> dict[int, dict[str, Any]]:
        """The cluster's live workers by pid, as the namespace reports them."""
        mine = {p.pid for p in self._workers}
        info = json.loads(self._rust.info())
        return {w["pid"]: w for w in info["workers"] if w["pid"] in mine}

    @property
    def pids(self) -> list[int]:
        """The scheduler's and the workers' process ids."""
        return [self._scheduler.pid] + [w.pid for w in self._workers]

    @property
    def scheduler_address(self) -> str:
        """The broker the cluster's processes use (password hidden)."""
        return self._rust.amqp_url

    @property
    def dashboard_link(self) -> str:
        """The RabbitMQ management UI."""
        from urllib.parse import urlsplit

        host = urlsplit(self._rust.amqp_url.split(",")[0]).hostname or "127.0.0.1"
        return f"http://{host}:15672/#/queues"

    def close(self, timeout: float | None = None) -> None:
        """Stops the scheduler and the workers (SIGTERM, then SIGKILL after
        ``timeout`` seconds, default 10)."""
        if self._finalizer.alive:
            self._finalizer.detach()
            _stop(
                [self._scheduler],
                self._workers,
                self._lifeline,
                _STOP_WITHIN if timeout is None else timeout,
            )
            os.close(self._lifeline_read)

    @property
    def status(self) -> str:
        """``running`` or ``closed``, as dask's."""
        return "running" if self._finalizer.alive else "closed"

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        slots = len(self._workers) * self._threads
        return (
            f"LocalCluster(namespace={self.namespace!r}, workers={len(self._workers)}, "
            f"threads={slots}, status={self.status}, logs={str(self.log_dir)!r})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(w['worker'])}</td><td>{w['concurrency']}</td>"
            f"<td>{len(w.get('running', []))}</td></tr>"
            for w in self.workers.values()
        )
        link = html.escape(self.dashboard_link)
        return (
            f"<div><h3>warren.LocalCluster</h3><ul>"
            f"<li>Namespace: <code>{html.escape(self.namespace)}</code>, "
            f"status: {self.status}</li>"
            f"<li>Workers: {len(self._workers)}, slots: {len(self._workers) * self._threads}</li>"
            f"<li>Logs: <code>{html.escape(str(self.log_dir))}</code></li>"
            f'<li>Dashboard: <a href="{link}" target="_blank">{link}</a></li></ul>'
            f"<table><tr><th>worker</th><th>slots</th><th>running</th></tr>{rows}</table></div>"
        )


def _default_store() -> Path:
    """This user's directory for a local cluster's big values (on disk, not
    in a RAM-backed runtime directory: values may be gigabytes)."""
    d = Path(tempfile.gettempdir()) / f"warren-{os.getuid()}" / "store"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def _runtime_dir() -> str | None:
    d = os.environ.get("XDG_RUNTIME_DIR")
    return d if d and os.path.isdir(d) else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(unreadable: {e})"


def _stop(
    schedulers: list[subprocess.Popen[bytes]],
    workers: list[subprocess.Popen[bytes]],
    lifeline: int | None,
    within: float,
) -> None:
    """SIGTERM (workers first, so their reports still find a scheduler),
    then SIGKILL to each process group left after ``within`` seconds."""
    for group in (workers, schedulers):
        for p in group:
            if p.poll() is None:
                _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + within
        for p in group:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in group:
            # The group: a worker's pool processes too.
            _signal_group(p.pid, signal.SIGKILL)
            p.wait()
    if lifeline is not None:
        try:
            os.close(lifeline)
        except OSError:
            pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

"""A live warren stack for the tests: real RabbitMQ and Redis, the release
binaries (``WARREN_BIN_DIR``, default ``target/release``) and Python workers
started as a user starts them (``python -m warren worker funcs``).

Each stack has a namespace of its own, so tests never see each other's
queues or futures."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import nbformat
import nbformat.v4
import pytest
from nbclient import NotebookClient

import warren

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("WARREN_BIN_DIR", REPO / "target" / "release"))
TESTS = Path(__file__).resolve().parent
EXAMPLES = REPO / "python" / "examples"
LOGS = REPO / ".warren-run" / "pytest"

#: The namespace key of the test run: every client and worker the tests start
#: holds it (tests of what happens without one start their processes with
#: ``WARREN_KEY_FILE`` pointing elsewhere).
KEY_FILE = LOGS / "namespace.key"
LOGS.mkdir(parents=True, exist_ok=True)
if not KEY_FILE.exists():
    subprocess.run(
        [str(BIN / "warren"), "key", "new", "--file", str(KEY_FILE)],
        check=True,
        capture_output=True,
    )
os.environ["WARREN_KEY_FILE"] = str(KEY_FILE)
# The tests start their stacks themselves: a Client() made before a stack's
# scheduler consumes must not start a local cluster (test_cluster.py unsets it).
os.environ.setdefault("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


class Stack:
    """Processes of one namespace; stopped (and reaped) by :meth:`stop`."""

    def __init__(self, name: str, **settings: str) -> None:
        self.namespace = f"py-{name}-{uuid.uuid4().hex[:8]}"
        self.settings = settings
        self.procs: list[subprocess.Popen[bytes]] = []
        LOGS.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["WARREN_NAMESPACE"] = self.namespace
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(EXAMPLES)])
        for k, v in self.settings.items():
            env[f"WARREN_{k.upper()}"] = v
        return env

    def _start(self, label: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(LOGS / f"{self.namespace}-{label}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen(argv, env=self.env(), cwd=TESTS, stdout=log, stderr=log)
        self.procs.append(p)
        return p

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self._start("scheduler", [str(BIN / "warren-scheduler")])

    def rust_worker(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        return self._start(
            "rust-worker", [str(BIN / "warren-worker"), "--concurrency", str(concurrency)]
        )

    def python_worker(
        self, *modules: str, concurrency: int = 1, accept_code: bool = False
    ) -> subprocess.Popen[bytes]:
        if not modules and not accept_code:
            modules = ("funcs",)
        argv = [sys.executable, "-m", "warren", "worker", *modules]
        if accept_code:
            argv.append("--accept-code")
        return self._start("py-worker", [*argv, "--concurrency", str(concurrency)])

    def client(self) -> warren.Client:
        return warren.Client(namespace=self.namespace, **self.settings)

    def wait_for_workers(self, client: warren.Client, n: int, within: float = 60) -> None:
        """Until `n` workers announce themselves (their pools are up)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            live = [w for w in client.info()["workers"] if not w.get("draining")]
            if len(live) >= n:
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args} exited with {p.returncode}; logs in {LOGS}")
            time.sleep(0.1)
        raise TimeoutError(f"{n} workers did not start within {within}s; logs in {LOGS}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@contextmanager
def serving(s: Stack, workers: int) -> Iterator[Stack]:
    """``s`` once ``workers`` of its workers serve; stopped on the way out.
    For the module fixtures: ``with serving(s, 2): yield s``."""
    try:
        s.wait_for_workers(s.client(), workers)
        yield s
    finally:
        s.stop()


def run_cell(source: str) -> nbformat.NotebookNode:
    """A notebook of one code cell, executed in a Jupyter kernel (nbclient)
    whose working directory is the tests'."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(TESTS)}}
    ).execute()
    return nb


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A scheduler, one Rust worker and two Python workers (1 slot each)."""
    s = Stack("main")
    s.scheduler()
    s.rust_worker()
    s.python_worker()
    s.python_worker()
    with serving(s, 3):
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> warren.Client:
    return stack.client()


def alive(pid: int) -> bool:
    """Whether a process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


# What a shell gives a job it starts in the background (`cmd &`, SIGINT and
# SIGQUIT ignored) or under nohup (SIGHUP ignored): a test that signals a child
# must not depend on the disposition the suite itself was started with.
BACKGROUND_IGNORES = (signal.SIGINT, signal.SIGHUP)


@contextmanager
def child(
    argv: Sequence[str],
    *,
    ignored: Sequence[signal.Signals] = (),
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """A child process, with `ignored` signals set to SIG_IGN and every other
    signal of `BACKGROUND_IGNORES` reset to its default, as it would inherit
    them; it is killed and reaped on every way out of the block (an assertion,
    a timeout, an exception), so no test leaves a process behind."""

    def dispositions() -> None:
        for sig in BACKGROUND_IGNORES:
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)

    p = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=dispositions,
    )
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
        try:
            p.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def read_line(p: subprocess.Popen[str], within: float) -> str:
    """The child's next line of standard output; fails naming what it wrote
    to standard error if none comes within `within` seconds."""
    assert p.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=within):
            p.kill()
            _, err = p.communicate(timeout=10)
            raise AssertionError(f"no line from {p.args[:2]} within {within}s; stderr: {err}")
    return p.stdout.readline()


def finish(p: subprocess.Popen[str], within: float) -> tuple[str, str]:
    """The child's remaining output once it exits; past `within` seconds it is
    killed and the failure says what it had printed."""
    try:
        return p.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        raise AssertionError(
            f"{p.args[:2]} did not exit within {within}s; it was killed. "
            f"stdout: {out!r} stderr: {err!r}"
        ) from None

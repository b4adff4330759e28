"""Python workers as processes: cores, crashes, kills, limits, command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import funcs
import pytest
from conftest import TESTS, Stack, alive

import warren


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().split(") ", 1)[1].split()[1])


def wait_until(cond, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {within}s")
        time.sleep(0.05)


def test_n_slots_run_python_in_n_processes_at_once():
    s = Stack("cores")
    s.scheduler()
    s.python_worker(concurrency=2)
    try:
        c = s.client()
        s.wait_for_workers(c, 1)
        marks = [str(TESTS / f".cores-{s.namespace}-{i}") for i in range(2)]
        fs = [c.submit(funcs.sleep_and_mark, 1.5, m, pure=False) for m in marks]
        # Both marks are written while both tasks sleep: they run at once,
        # in two different processes.
        wait_until(lambda: all(os.path.exists(m) for m in marks), 10, "both tasks started")
        pids = {int(open(m).read().split()[0]) for m in marks}
        assert len(pids) == 2
        assert all(not f.done() for f in fs)
        assert c.gather(fs) == ["slept", "slept"]
        for m in marks:
            os.remove(m)
    finally:
        s.stop()


def test_a_crashing_task_is_its_error_and_the_worker_goes_on(client):
    e = client.submit(funcs.exits, 3, pure=False).exception(timeout=30)
    assert isinstance(e, warren.TaskError) and e.type == "TaskCrashed"
    assert "status 3" in e.message
    assert client.submit(funcs.inc, 41, pure=False).result(timeout=30) == 42


def test_a_time_limit_ends_a_task_that_ignores_sigterm(client, stack):
    f = client.submit(funcs.ignores_sigterm, 60, timeout=1, pure=False)
    e = f.exception(timeout=30)
    assert isinstance(e, TimeoutError), e
    # The slot's process was ended and replaced: the worker serves again.
    assert client.gather(client.map(funcs.inc, range(4), pure=False)) == [1, 2, 3, 4]


def test_a_python_worker_killed_mid_task_leaves_no_orphan_and_the_task_runs_elsewhere():
    s = Stack("kill", allowed_failures="1")
    s.scheduler()
    workers = [s.python_worker(), s.python_worker()]
    mark = TESTS / f".kill-{s.namespace}"
    try:
        c = s.client()
        s.wait_for_workers(c, 2)
        f = c.submit(funcs.sleep_and_mark, 1.5, str(mark), pure=False)
        wait_until(lambda: mark.exists() and mark.read_text().strip(), 20, "the first run")
        first_child = int(mark.read_text().split()[0])
        first_worker = parent_of(first_child)
        assert first_worker in [w.pid for w in workers]
        os.kill(first_worker, signal.SIGKILL)
        # Its pool process dies with it (PR_SET_PDEATHSIG): no orphan.
        wait_until(lambda: not alive(first_child), 10, "the killed worker's task process to end")
        assert f.result(timeout=60) == "slept"
        runs = mark.read_text().split()
        assert len(runs) == 2 and runs[1] != runs[0]

        # A task whose runs kill more than allowed_failures (1) workers: KilledWorker.
        for w in workers:
            if w.pid == first_worker:
                w.wait()
        s.python_worker()
        s.wait_for_workers(c, 2)
        mark.unlink()
        g = c.submit(funcs.sleep_and_mark, 60, str(mark), pure=False)
        for n in (1, 2):
            wait_until(
                lambda n=n: mark.exists() and len(mark.read_text().split()) >= n, 30, f"run {n}"
            )
            os.kill(parent_of(int(mark.read_text().split()[n - 1])), signal.SIGKILL)
        # The next worker to take it finds two runs that died with their
        # workers, and ends it instead of running it a third time.
        s.python_worker()
        e = g.exception(timeout=60)
        assert isinstance(e, warren.KilledWorker), e
    finally:
        s.stop()
        if mark.exists():
            mark.unlink()


def test_sigterm_drains_a_python_worker_letting_its_task_finish():
    s = Stack("drain")
    s.scheduler()
    w = s.python_worker()
    try:
        c = s.client()
        s.wait_for_workers(c, 1)
        mark = TESTS / f".drain-{s.namespace}"
        f = c.submit(funcs.sleep_and_mark, 1.5, str(mark), pure=False)
        wait_until(mark.exists, 10, "the task to start")
        w.send_signal(signal.SIGTERM)
        assert f.result(timeout=30) == "slept"
        assert w.wait(timeout=30) == 0
        mark.unlink()
    finally:
        s.stop()


def run_cli(*args: str, cwd=TESTS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "warren", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_worker_command_line_says_what_is_wrong():
    r = run_cli("worker", "no_such_module")
    assert r.returncode == 2 and "cannot import module 'no_such_module'" in r.stderr
    r = run_cli("worker", "conftest")
    assert r.returncode == 2 and "registered no functions" in r.stderr
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr
    r = run_cli("worker", "--help")
    assert r.returncode == 0 and "python -m warren worker funcs" in r.stdout
    # Options anywhere on the line.
    r = run_cli("worker", "--list-functions", "funcs", "--concurrency", "2")
    assert r.returncode == 0
    assert "funcs:inc\t(queue python)" in r.stdout and "tests:renamed\t(queue python)" in r.stdout


def test_no_code_is_shipped_a_worker_runs_only_what_it_imported(client):
    # A name that looks like a function of an importable module, but that
    # the workers did not register, is not run.
    with pytest.raises(warren.UnservedFunction):
        client.submit("os:getcwd")
    e = client.submit("os:getcwd", allow_unserved=True).exception(timeout=30)
    assert e.type == "UnknownFunction"


class _StackWith(Stack):
    """A stack whose workers also import modules from ``path``."""

    def __init__(self, name: str, path: object) -> None:
        super().__init__(name)
        self.path = str(path)

    def env(self) -> dict[str, str]:
        env = super().env()
        env["PYTHONPATH"] = os.pathsep.join([self.path, env["PYTHONPATH"]])
        return env


def test_restart_makes_workers_import_an_edited_module_afresh(tmp_path):
    # The notebook loop: run, edit the module, client.restart(), run again.
    mod = tmp_path / "edited_mod.py"
    mod.write_text("from warren import task\n\n@task\ndef version():\n    return 1\n")
    s = _StackWith("restart", tmp_path)
    s.scheduler()
    s.python_worker("edited_mod", concurrency=2)
    try:
        c = s.client()
        s.wait_for_workers(c, 1)
        assert c.submit("edited_mod:version", pure=False).result(timeout=60) == 1
        # Another size, so that no cached bytecode can pass for the new file.
        mod.write_text("from warren import task\n\n@task\ndef version():\n    return 222\n")
        assert c.submit("edited_mod:version", pure=False).result(timeout=60) == 1
        assert c.restart()["workers_ready"] == 1
        assert [
            c.submit("edited_mod:version", pure=False).result(timeout=60) for _ in range(4)
        ] == [222] * 4
    finally:
        s.stop()

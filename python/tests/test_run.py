"""``client.run`` (issue 34): a function once on every live worker that has
it, outside the task slots, answers by worker."""

from __future__ import annotations

import os

import pytest
from conftest import Stack, serving


@pytest.fixture(scope="module")
def stack():
    s = Stack("run")
    s.scheduler()
    s.rust_worker()
    s.python_worker(accept_code=True)
    s.python_worker(accept_code=True)
    with serving(s, 3):
        yield s


@pytest.fixture(scope="module")
def c(stack):
    return stack.client()


def _workers(c, has):
    return sorted(w["worker"] for w in c.info()["workers"] if has in (w.get("functions") or []))


def test_code_runs_once_on_each_worker_that_accepts_code(c):
    got = c.run(lambda x, y=0: (x + y, os.getppid()), 1, y=2)
    assert sorted(got) == _workers(c, "warren:call")
    # Each answer comes from a pool process of the worker that names it.
    for worker, (value, parent) in got.items():
        assert value == 3
        assert worker.endswith(f":{parent}")


def test_a_registered_name_runs_where_it_is_registered(c):
    assert c.run("inc", 41) == {w: 42 for w in _workers(c, "inc")}


def test_errors_are_raised_returned_or_ignored(c):
    with pytest.raises(ZeroDivisionError):
        c.run(lambda: 1 / 0)
    got = c.run(lambda: 1 / 0, on_error="return")
    assert len(got) == 2 and all(isinstance(e, ZeroDivisionError) for e in got.values())
    assert c.run(lambda: 1 / 0, on_error="ignore") == {}
    with pytest.raises(ValueError, match="on_error"):
        c.run(len, on_error="maybe")


def test_workers_selects_and_wait_false_returns_at_once(c):
    one = _workers(c, "warren:call")[0]
    assert c.run(lambda: "here", workers=[one]) == {one: "here"}
    assert c.run(lambda: "later", wait=False) is None

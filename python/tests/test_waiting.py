"""Waiting on many futures as dask users do (issue 34): ``as_completed``
that futures join while it is read, ``wait`` on one future, ``gather`` of
sets and iterators, ``Future.type`` and ``fire_and_forget``. Functions are
defined here and travel as code, as a notebook's would."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Stack

import warren


@pytest.fixture(scope="module")
def c():
    s = Stack("waiting")
    s.scheduler()
    s.python_worker(accept_code=True, concurrency=2)
    try:
        client = s.client()
        s.wait_for_workers(client, 1)
        client.stack = s  # the fire-and-forget test starts its own client
        yield client
    finally:
        s.stop()


def add(a, b):
    return a + b


def slow_inc(x, secs):
    time.sleep(secs)
    return x + 1


def test_the_example_notebooks_dynamic_summation(c):
    # dask's "Custom Workloads with Futures", as written there: pairs are
    # added up as they finish, each sum joining the same as_completed.
    zs = c.map(lambda x: x * 10, range(20))
    seq = warren.as_completed(zs)
    assert seq.count() == 20
    while seq.count() > 2:
        a = next(seq)
        b = next(seq)
        new = c.submit(add, a, b, pure=False)
        seq.add(new)
    assert seq.count() == 2
    final = c.submit(add, next(seq), next(seq), pure=False)
    assert final.result(timeout=60) == sum(x * 10 for x in range(20))
    assert seq.is_empty()


def test_iteration_sees_futures_added_while_it_runs(c):
    first = c.submit(slow_inc, 0, 0, pure=False)
    seq = warren.as_completed([first], with_results=True)
    seen = []
    for _future, value in seq:
        seen.append(value)
        if value < 3:
            seq.add(c.submit(slow_inc, value, 0, pure=False))
    assert seen == [1, 2, 3]
    assert seq.is_empty() and seq.count() == 0


def test_batches_and_has_ready(c):
    fs = c.map(slow_inc, range(6), [0] * 6, pure=False)
    warren.wait(fs)
    seq = warren.as_completed(fs)
    deadline = time.monotonic() + 30
    while not seq.has_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seq.has_ready()
    got = [f for batch in seq.batches() for f in batch]
    assert sorted(f.result() for f in got) == [1, 2, 3, 4, 5, 6]
    assert seq.next_batch(block=True) == []


def test_errors_are_raised_or_yielded_as_asked(c):
    bad = c.submit(lambda: 1 / 0, pure=False)
    with pytest.raises(ZeroDivisionError):
        list(warren.as_completed([bad], with_results=True))
    ((f, e),) = list(warren.as_completed([bad], with_results=True, raise_errors=False))
    assert f is bad and isinstance(e, ZeroDivisionError)
    # Without results, a failed future is yielded like any other.
    assert list(warren.as_completed([bad])) == [bad]


def test_wait_takes_one_future_and_gather_keeps_sets_and_iterators(c):
    f = c.submit(slow_inc, 1, 0, pure=False)
    done, not_done = warren.wait(f)
    assert done == {f} and not_done == set()
    assert warren.wait([f]).done == {f}
    g = c.submit(slow_inc, 2, 0, pure=False)
    assert c.gather({f, g}) == {2, 3}
    assert c.gather(frozenset([f])) == frozenset([2])
    values = c.gather(iter([f, g]))
    assert not isinstance(values, list)
    assert list(values) == [2, 3]
    assert c.gather({"a": [f, (g,)]}) == {"a": [2, (3,)]}


def test_future_type_is_known_once_finished(c):
    slow = c.submit(slow_inc, 1, 2, pure=False)
    assert slow.type is None
    assert slow.result(timeout=60) == 2
    assert slow.type is int
    t = c.submit(lambda: b"xyz", pure=False)
    warren.wait(t)
    assert t.type is bytes


def test_fire_and_forget_work_outlives_the_script_that_submitted_it(c, tmp_path):
    # The script submits a chain whose last task writes a file, calls
    # fire_and_forget and exits at once; the chain still runs to its end.
    out = tmp_path / "done.txt"
    script = tmp_path / "fire.py"
    script.write_text(
        "import sys, time, warren\n"
        "from pathlib import Path\n"
        "def slow(x):\n"
        "    time.sleep(1)\n"
        "    return x + 1\n"
        "def write(x, path):\n"
        "    Path(path).write_text(str(x))\n"
        f"c = warren.Client(namespace={c.namespace!r})\n"
        "f = c.submit(slow, 1, pure=False)\n"
        "g = c.submit(slow, f, pure=False)\n"
        "warren.fire_and_forget(c.submit(write, g, sys.argv[1], pure=False))\n"
    )
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(script), str(out)],
        check=True,
        timeout=60,
        env=c.stack.env(),
        cwd=str(tmp_path),
    )
    assert not out.exists(), "the script should not wait for the chain"
    deadline = started + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Path(out).read_text() == "3"


def test_gather_settles_every_handle_of_one_key(c):
    # A pure function over equal arguments gives one key and several Future
    # objects; gather fills each of them.
    fs = c.map(add, [1, 1, 2], [2, 2, 2])
    assert fs[0].key == fs[1].key
    assert c.gather(fs) == [3, 3, 4]

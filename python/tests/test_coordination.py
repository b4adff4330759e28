"""Coordination primitives (issue 34): ``Variable``, ``Queue``, ``Event``,
``Lock`` and ``Semaphore`` with dask's names, their state in Redis, shared by
name between clients of a namespace and lost by no scheduler."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from conftest import Stack

import warren


@pytest.fixture(scope="module")
def stack():
    s = Stack("coord")
    s.scheduler()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def c(stack):
    return stack.client()


@pytest.fixture(scope="module")
def other(stack):
    # A second client of the namespace, as another process's would be.
    return stack.client()


def later(secs, fn, *args):
    t = threading.Timer(secs, fn, args)
    t.start()
    return t


def test_a_variable_is_shared_by_name_and_keeps_types_and_futures(c, other):
    v = warren.Variable("v1", client=c)
    with pytest.raises(TimeoutError, match="v1"):
        v.get(timeout=0.2)
    later(0.3, warren.Variable("v1", client=other).set, {"a": [1, 2]})
    assert v.get(timeout=10) == {"a": [1, 2]}
    v.set((1, b"x"))
    assert warren.Variable("v1", client=other).get() == (1, b"x")
    f = c.scatter(41)
    v.set(f)
    got = warren.Variable("v1", client=other).get()
    assert isinstance(got, warren.Future) and got.key == f.key and got.result() == 41
    v.delete()
    with pytest.raises(TimeoutError):
        v.get(timeout=0.1)


def test_a_queue_is_fifo_bounded_and_carries_futures(c, other):
    q = warren.Queue("q1", client=c, maxsize=2)
    q.put(1)
    q.put("two")
    assert q.qsize() == 2
    with pytest.raises(TimeoutError, match="full"):
        q.put(3, timeout=0.2)
    r = warren.Queue("q1", client=other)
    assert [r.get(), r.get()] == [1, "two"]
    with pytest.raises(TimeoutError, match="empty"):
        r.get(timeout=0.2)
    later(0.3, q.put, c.scatter(7))
    f = r.get(timeout=10)
    assert isinstance(f, warren.Future) and f.result() == 7
    for i in range(2):
        q.put(i)
    assert r.get(batch=True) == [0, 1]
    assert r.get(batch=True) == []


def test_an_event_wakes_its_waiters(c, other):
    e = warren.Event("e1", client=c)
    assert not e.is_set()
    assert e.wait(timeout=0.2) is False
    later(0.3, warren.Event("e1", client=other).set)
    started = time.monotonic()
    assert e.wait(timeout=10) is True
    assert time.monotonic() - started < 5
    e.clear()
    assert not e.is_set()


def test_a_lock_has_one_holder_at_a_time(c, other):
    a = warren.Lock("l1", client=c)
    b = warren.Lock("l1", client=other)
    assert a.acquire()
    assert a.locked() and b.locked()
    assert b.acquire(timeout=0.2) is False
    assert b.acquire(blocking=False) is False
    later(0.3, a.release)
    assert b.acquire(timeout=10)
    b.release()
    with pytest.raises(RuntimeError, match="not held"):
        b.release()
    with a:
        assert not b.acquire(blocking=False)
    assert not a.locked()


def test_a_lock_outlives_its_lease_while_held(c, other):
    # The holder's thread renews the lease: held for three leases, still held.
    a = warren.Lock("l2", client=c, lease=0.5)
    assert a.acquire()
    time.sleep(1.6)
    assert not warren.Lock("l2", client=other).acquire(blocking=False)
    a.release()


def test_a_lock_whose_holder_is_killed_frees_within_its_lease(stack, c):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time, warren\n"
            f"c = warren.Client(namespace={stack.namespace!r})\n"
            "lock = warren.Lock('l3', lease=2)\n"
            "assert lock.acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
        ],
        env=stack.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = warren.Lock("l3", client=c)
        assert not lock.acquire(blocking=False)
        holder.kill()
        holder.wait(10)
        started = time.monotonic()
        assert lock.acquire(timeout=10)
        assert time.monotonic() - started < 3, "freed within the 2-s lease"
        lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_a_semaphore_admits_max_leases_holders(c, other):
    s1 = warren.Semaphore(max_leases=2, name="s1", client=c)
    s2 = warren.Semaphore(max_leases=2, name="s1", client=other)
    s3 = warren.Semaphore(max_leases=2, name="s1", client=other)
    assert s1.acquire() and s2.acquire()
    assert s3.acquire(timeout=0.2) is False
    later(0.3, s1.release)
    assert s3.acquire(timeout=10)
    s2.release()
    s3.release()
    with warren.Semaphore(max_leases=1, name="s2", client=c):
        assert not warren.Semaphore(max_leases=1, name="s2", client=other).acquire(timeout=0.1)


def test_bad_names_and_arguments_are_refused_with_what_was_wrong(c):
    with pytest.raises(ValueError, match="name"):
        warren.Variable("x" * 300, client=c).set(1)
    with pytest.raises(ValueError, match="name"):
        warren.Queue("a\nb", client=c).put(1)
    with pytest.raises(ValueError, match="max_leases"):
        warren.Semaphore(max_leases=0, client=c)
    with pytest.raises(ValueError, match="lease"):
        warren.Lock("x", client=c, lease=0)
    with pytest.raises(ValueError, match="timeout"):
        warren.Event("x", client=c).wait(timeout=-1)

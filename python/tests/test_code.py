"""Python as dask users write it (issue 32): functions from ``__main__`` and
lambdas travel as signed code, keyword arguments reach the function, values
of any type come back as themselves, and nothing unsigned is ever loaded.

The stack: a scheduler, a worker started with ``--accept-code`` (it serves
the ``code`` queue and ``funcs``), and a worker that does not accept code.
Every process holds the test run's key (``conftest.KEY_FILE``)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import funcs
import numpy as np
import pandas as pd
import pytest
from conftest import BIN, LOGS, TESTS, Stack, serving

import warren
from warren import _envelopes, _refs, _warren


def _publish(c: warren.Client, func: str, args: str, queue: str) -> list[str]:
    """Publishes one call as the client's Rust half takes it, past every
    check the Python client makes before it (a forged or relabelled call)."""
    return c._rust.submit(func, [args], [None], _warren.Submission(False, queue=queue)).keys()


@pytest.fixture(scope="module")
def code_stack():
    s = Stack("code")
    s.scheduler()
    s.python_worker("funcs", accept_code=True, concurrency=2)
    s.python_worker("funcs")
    with serving(s, 2):
        yield s


@pytest.fixture(scope="module")
def c(code_stack):
    return code_stack.client()


def square(x):
    return x * x


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Scaler:
    def __init__(self, k: int) -> None:
        self.k = k

    def scale(self, x: int) -> int:
        return self.k * x


def test_any_callable_runs_as_dask_runs_it(c):
    assert c.submit(square, 7).result(timeout=60) == 49
    assert c.submit(lambda x: x + 1, 1).result(timeout=60) == 2
    k = 5
    assert c.submit(lambda x: x * k, 3).result(timeout=60) == 15  # a closure
    assert c.submit(functools.partial(pow, 2), 10).result(timeout=60) == 1024
    assert c.submit(Scaler(3).scale, 4).result(timeout=60) == 12  # a bound method
    assert c.submit(sum, [1, 2, 3]).result(timeout=60) == 6  # the example notebook's
    assert c.submit(max, 3, 9, 4).result(timeout=60) == 9
    assert c.submit(math.sqrt, 16).result(timeout=60) == 4.0
    assert c.submit(np.mean, [1.0, 2.0, 3.0]).result(timeout=60) == 2.0
    # Futures as arguments, through code and back.
    a = c.submit(square, 3)
    assert c.submit(lambda x, y: x + y, a, 1).result(timeout=60) == 10
    assert c.gather(c.map(square, range(5))) == [0, 1, 4, 9, 16]


def test_keyword_arguments_reach_the_function(c):
    def f(x, y=0, *, z=1):
        return (x, y, z)

    assert c.submit(f, 1, y=2, z=3).result(timeout=60) == (1, 2, 3)
    assert c.gather(c.map(f, [1, 2], z=5)) == [(1, 0, 5), (2, 0, 5)]
    # A @task function gets them too (by name: no code travels).
    assert c.submit(funcs.add, 40, y=2).result(timeout=60) == 42
    dep = c.submit(square, 4)
    assert c.submit(f, 0, z=dep).result(timeout=60) == (0, 0, 16)


def test_a_changed_function_is_a_new_future(c):
    def g(x):
        return x + 1

    first = c.submit(g, 1)
    assert first.result(timeout=60) == 2

    def g(x):  # noqa: F811 - the fix a user makes, and resubmits
        return x + 100

    second = c.submit(g, 1)
    assert second.key != first.key and second.result(timeout=60) == 101
    assert c.submit(g, 1).key == second.key, "the same code and arguments: the same future"
    # @task functions hash their code too.
    assert c.submit(funcs.inc, 1).key == c.submit(funcs.inc, 1).key


@pytest.mark.parametrize(
    "value",
    [
        b"\x00\x01binary\xff",
        bytearray(b"abc"),
        (1, "two", (3.0, None)),
        {1, 2, 3},
        frozenset({"a"}),
        datetime.datetime(2026, 12, 24, 10, 0, 30, 5),
        datetime.date(2026, 12, 24),
        datetime.time(10, 30),
        datetime.timedelta(days=2, seconds=3, microseconds=4),
        decimal.Decimal("3.14159265358979323846"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        complex(1.5, -2),
        2**100,
        -(2**80),
        float("inf"),
        {(1, 2): "tuple key", 3: "int key"},
        {"$t": "a key that looks like a tag"},
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        np.float64(2.5),
        np.array(7),
        Point(1, 2),
        pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        pd.Series([1.5, 2.5], name="s"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_every_value_comes_back_as_its_own_type(c, value):
    back = c.submit(lambda v: v, value, pure=False).result(timeout=60)
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        np.testing.assert_array_equal(back, value)
    elif isinstance(value, (pd.DataFrame, pd.Series)):
        assert back.equals(value)
    else:
        assert back == value
    # And as an argument to a @task function, by name (typed data, which
    # every Python worker loads; a pickled one needs --accept-code).
    if not isinstance(value, (np.ndarray, pd.DataFrame, pd.Series, Point)):
        assert c.submit(funcs.echo, value, pure=False).result(timeout=60) == value


def test_an_8_mib_array_goes_in_and_out_as_raw_bytes(c):
    big = np.random.default_rng(1).random(1024 * 1024)  # 8 MiB of float64
    out = c.submit(lambda a: a * 2, big).result(timeout=120)
    np.testing.assert_array_equal(out, big * 2)
    # The value travelled by reference: the result a task stored is its
    # envelope in Redis, not JSON, and its size is the array's plus a header.
    f = c.submit(lambda a: a, big)
    state, payload = f._outcome(120)
    ref = _refs.as_ref(__import__("json").loads(payload))
    assert state == "finished" and ref is not None
    assert 8 * 1024 * 1024 <= ref[1] < 8 * 1024 * 1024 + 4096


def test_frames_are_sealed_from_buffers_and_a_strided_one_is_refused():
    # A frame is copied into the envelope from the array's own memory; the
    # envelope is byte for byte what sealing the same bytes gives.
    keys = _warren.Keys.none()
    a = np.arange(1000, dtype=np.int64)
    view = memoryview(a.view("u1"))
    assert keys.seal("data", "value", b"{}", [view]) == keys.seal(
        "data", "value", b"{}", [a.tobytes()]
    )
    with pytest.raises(TypeError, match="C-contiguous"):
        keys.seal("data", "value", b"{}", [memoryview(bytes(10))[::2]])


def _add_one_in_place(a):
    a += 1
    return a


def test_arrays_arrive_writable_as_dasks_do(c):
    # As an argument (inside a pickled call) and as a result (typed data),
    # an array owns writable memory, as the sender's did: in-place updates
    # work in the task and on what gather gives back.
    a = np.zeros(1000)
    out = c.submit(_add_one_in_place, a, pure=False).result(timeout=60)
    np.testing.assert_array_equal(out, np.ones(1000))
    out += 1
    np.testing.assert_array_equal(out, np.full(1000, 2.0))
    np.testing.assert_array_equal(a, np.zeros(1000))


def test_a_task_error_is_the_functions_own_and_reads_like_dask(c):
    def goes_wrong():
        return 10 / 0

    f = c.submit(goes_wrong)
    with pytest.raises(ZeroDivisionError):
        f.result(timeout=60)
    tb = f.traceback()
    # The function's own line, under its own file, and no warren frames.
    assert "return 10 / 0" in tb and "test_code.py" in tb and "in goes_wrong" in tb, tb
    assert "warren/_child.py" not in tb and "<dynamic-code>" not in tb, tb


def test_a_worker_that_does_not_accept_code_runs_none(code_stack, c):
    # The client refuses code when no live worker of its queue accepts it...
    plain = Stack("nocode")
    plain.scheduler()
    plain.python_worker("funcs")
    try:
        pc = plain.client()
        plain.wait_for_workers(pc, 1)
        with pytest.raises(warren.UnservedFunction, match="--accept-code"):
            pc.submit(square, 2)
        # ... and sent anyway to such a worker, it is refused by name.
        e = pc.submit(square, 2, queue="python", allow_unserved=True).exception(timeout=60)
        assert e.type == "CodeNotAccepted", e
        # A pickled value (not code) is not loaded there either.
        e = pc.submit(funcs.echo, Point(1, 2)).exception(timeout=60)
        assert e.type == "CodeNotAccepted" and "--accept-code" in str(e), e
        # Typed data needs no code: it crosses.
        assert pc.submit(funcs.echo, (1, b"x")).result(timeout=60) == (1, b"x")
    finally:
        plain.stop()


def forged_call(c, keys, marker: Path) -> warren.Future:
    """A call that writes `marker`, sealed with `keys`, submitted by hand."""
    import cloudpickle

    def owned():
        marker.write_text("ran")

    envelope = keys.seal(
        "pickle", "call", b'{"v":1,"codec":"pickle"}', [cloudpickle.dumps((owned, (), {}))]
    )
    ref = c._put_blob(envelope)
    args = __import__("json").dumps([{"$warren_call": ref}])
    (key,) = _publish(c, "warren:call", args, "code")
    return warren.Future(key, c)


def test_forged_and_unsigned_code_runs_nothing(c, tmp_path):
    other_key = tmp_path / "other.key"
    subprocess.run([str(BIN / "warren"), "key", "new", "--file", str(other_key)], check=True)
    marker = tmp_path / "owned"
    # Signed with a key the workers do not hold.
    e = forged_call(c, _warren.Keys(str(other_key), ""), marker).exception(timeout=60)
    assert e.type == "BadSignature" and "does not hold" in str(e), e
    # A data envelope relabelled as a pickle: unsigned.
    data = _warren.Keys.none().seal("data", "call", b"{}", [b"x"])
    relabelled = data[:5] + b"\x01" + data[6:]
    ref = c._put_blob(relabelled)
    args = __import__("json").dumps([{"$warren_call": ref}])
    (key,) = _publish(c, "warren:call", args, "code")
    e = warren.Future(key, c).exception(timeout=60)
    assert e.type == "BadSignature" and "not signed" in str(e), e
    # Any flipped byte of a good one.
    good = c._keys.seal("pickle", "call", b"{}", [b"x" * 100])
    for i in (10, len(good) // 2, len(good) - 1):
        bad = bytearray(good)
        bad[i] ^= 1
        with pytest.raises(_warren.BadSignature):
            c._keys.open(bytes(bad), "call")
    assert not marker.exists()
    # The client does not unpickle a value signed with another key either.
    alien = _warren.Keys(str(other_key), "").seal("pickle", "value", b"{}", [b"x"])
    with pytest.raises(_warren.BadSignature):
        _envelopes.open_value(alien, c._keys)


def test_a_stored_function_beside_a_call_envelope_is_checked_like_one_inside(c, tmp_path):
    # A map over values that are not JSON stores its function once and
    # refers to it beside each call's envelope: that function is verified
    # against the key as one inside the envelope is, and a task of a
    # registered name may not carry one.
    other_key = tmp_path / "other.key"
    subprocess.run([str(BIN / "warren"), "key", "new", "--file", str(other_key)], check=True)
    marker = tmp_path / "owned"

    def owned(*_):
        marker.write_text("ran")

    alien = _envelopes.seal_function(owned, _warren.Keys(str(other_key), ""))
    fn_ref = c._put_blob(alien)
    envelope, _ = _envelopes.seal_call(None, (b"x",), {}, c._keys, c._future_key)
    call = {"$warren_call": c._put_blob(envelope), "$warren_fn": fn_ref}
    args = __import__("json").dumps([call])
    (key,) = _publish(c, "warren:call", args, "code")
    e = warren.Future(key, c).exception(timeout=60)
    assert e.type == "BadSignature" and "does not hold" in str(e), e
    # A registered function's task with a stored function beside it.
    mine = {"$warren_call": call["$warren_call"], "$warren_fn": c._function_ref(owned)}
    args = __import__("json").dumps([mine])
    (key,) = _publish(c, "funcs:echo", args, "python")
    e = warren.Future(key, c).exception(timeout=60)
    assert "funcs:echo was sent a function as code" in str(e), e
    assert not marker.exists()
    # The same function signed with the right key runs, with its argument.
    assert c.submit(lambda b: b + b"y", b"x").result(timeout=60) == b"xy"


def test_without_a_key_a_client_sends_no_code_and_says_what_to_do():
    # A namespace without a key: messages are not signed, and typed data
    # still crosses, but no code and no pickle.
    s = Stack("nokey", key_file="none")
    s.scheduler()
    s.python_worker("funcs")
    try:
        c = s.client()
        s.wait_for_workers(c, 1)
        assert c.submit(funcs.echo, (1, b"x")).result(timeout=60) == (1, b"x")
        with pytest.raises(TypeError, match="warren key new") as e:
            c.submit(lambda x: x, 1)
        assert "signed pickle" in str(e.value)
        with pytest.raises(TypeError, match="warren key new"):
            c.submit(funcs.echo, Point(1, 2))
    finally:
        s.stop()


def test_a_client_without_the_namespaces_key_is_refused_by_its_scheduler(code_stack):
    # Every message is signed where a key is held: an unsigned submit is
    # refused (and dead-lettered), and the client hears why.
    c = warren.Client(namespace=code_stack.namespace, key_file="none")
    with pytest.raises(warren.WarrenError, match="unsigned submit message"):
        c.submit(funcs.echo, 1).result(timeout=60)


def test_a_worker_asked_to_accept_code_without_a_key_refuses_to_start(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), WARREN_KEY_FILE="")
    env.pop("XDG_CONFIG_HOME", None)
    r = subprocess.run(
        [sys.executable, "-m", "warren", "worker", "--accept-code"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TESTS,
    )
    assert r.returncode == 2, r.stderr
    assert "--accept-code needs the namespace key" in r.stderr and "key_file" in r.stderr


def test_the_key_file_is_private():
    from conftest import KEY_FILE

    assert KEY_FILE.stat().st_mode & 0o777 == 0o600
    assert LOGS in KEY_FILE.parents


def test_the_cli_describes_a_value_that_is_not_json_and_writes_its_bytes(code_stack, c):
    a = np.arange(5, dtype=np.int64)
    f = c.submit(lambda v: v, a)
    f.result(timeout=60)
    env = code_stack.env()
    shown = subprocess.run(
        [str(BIN / "warren"), "result", f.key], env=env, capture_output=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    line = shown.stdout.decode()
    assert line.startswith("<numpy.ndarray int64 (5,), ") and "--raw" in line, line
    raw = subprocess.run(
        [str(BIN / "warren"), "result", "--raw", f.key], env=env, capture_output=True, timeout=60
    )
    assert raw.returncode == 0 and raw.stdout == a.tobytes(), raw.stderr


def test_scatter_gives_finished_futures_usable_as_arguments(c):
    big = np.arange(1000, dtype=np.float64)
    f = c.scatter(big)
    assert f.status == "finished" and f.key.startswith("ndarray-")
    assert c.scatter(big).key == f.key, "hash=True: the same data, the same future"
    np.testing.assert_array_equal(f.result(timeout=30), big)
    assert c.submit(lambda a: float(a.sum()), f).result(timeout=60) == float(big.sum())
    xs = c.scatter([1, (2, 3), "four"])
    assert [x.result(timeout=30) for x in xs] == [1, (2, 3), "four"]
    d = c.scatter({"a": 1, "b": b"bytes"})
    assert c.gather(d) == {"a": 1, "b": b"bytes"}
    # As the example notebook does: submit(sum, futures).
    assert c.submit(sum, c.scatter([1, 2, 3])).result(timeout=60) == 6
    assert c.scatter(5, hash=False).key != c.scatter(5, hash=False).key
    with pytest.raises(TypeError, match="not futures"):
        c.scatter(c.submit(square, 2))


def noisy(n):
    import sys

    print(f"working on {n}")
    print("a warning", file=sys.stderr)
    if n < 0:
        raise ValueError("negative")
    return n * 2


def test_what_a_task_prints_is_kept_with_its_result(c, code_stack):
    # As a program task's output is: future.logs() and `warren logs KEY`,
    # for a task that failed too.
    f = c.submit(noisy, 21, pure=False)
    assert f.result(timeout=60) == 42
    assert f.logs() == warren.TaskLogs("working on 21\n", "a warning\n")
    out = subprocess.run(
        [str(BIN / "warren"), "logs", f.key],
        env=code_stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "working on 21\n", "a warning\n")
    bad = c.submit(noisy, -1, pure=False)
    with pytest.raises(ValueError, match="negative"):
        bad.result(timeout=60)
    assert bad.logs().stdout == "working on -1\n"
    quiet = c.submit(square, 3, pure=False)
    assert quiet.result(timeout=60) == 9
    assert quiet.logs() is None

"""Big values in an object store (issue 36): with ``store_url``, a value over
``inline_max_bytes`` is written once to the store's directory and travels as
a reference, so an array far over the old 8 MiB ``max_payload_bytes`` goes
through a task and a dependent (64 MiB, and 1 GiB on a directory and on
S3), and twenty dependents of one value read one object."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import funcs
import numpy as np
import pytest
from conftest import BIN, LOGS, Stack, serving

import warren
from warren import WarrenError, _child, _envelopes, _pickle, _refs, _signing, _warren

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def stack(store: Path):
    s = Stack("store", store_url=store.as_uri())
    s.scheduler()
    s.python_worker("funcs", accept_code=True, concurrency=2)
    with serving(s, 1):
        yield s


def _objects(store: Path, namespace: str) -> dict[str, int]:
    blobs = store / namespace / "blobs"
    return {p.name: p.stat().st_size for p in blobs.iterdir()} if blobs.exists() else {}


def test_a_pool_process_frees_a_tasks_values_as_it_ends_not_at_a_collection():
    """No reference cycle holds a task's argument or result in a pool
    process: both are freed when the task ends, with the collector off. (A
    cycle did, and the process grew by ~200 MiB per task of 100 MiB arrays
    until Python's collector ran.) No services: the task runs in-process."""
    keys = _warren.Keys.none()
    envelope, _ = _envelopes.seal(np.ones(MIB), keys, _signing.VALUE, lambda _: None)
    ref = _refs.ref_of(envelope)
    request = {"func": "funcs:doubled_in_sight", "args": [ref]}
    funcs.SIGHTED.clear()
    gc.disable()
    try:
        reply, made = _child.run(_child.Task(request, {ref["$blob"]: envelope}, keys))
        assert "ok" in reply and len(made) == 1, reply
        assert len(funcs.SIGHTED) == 2
        assert [w() for w in funcs.SIGHTED] == [None, None]
    finally:
        gc.enable()
    value = _envelopes.open_value(made[0], keys)
    np.testing.assert_array_equal(value, np.full(MIB, 2.0))


def test_pickling_and_unpickling_hold_nothing_after_they_return():
    """The picklers' classes are made once: one made per call closed over
    the call's buffers and dependency values in a reference cycle."""

    class Big:
        pass

    dep, inside = Big(), np.ones(1024)
    seen_dep, seen_inside = weakref.ref(dep), weakref.ref(inside)
    gc.disable()
    try:
        data, buffers, _ = _pickle.dumps({"a": inside}, lambda _: None)
        copies = [bytearray(b) for b in buffers]
        del buffers, inside
        assert seen_inside() is None
        loaded = _pickle.loads(_signing.Verified(data, copies, "k"), [dep])
        del dep
        assert seen_dep() is None
    finally:
        gc.enable()
    assert loaded["a"].shape == (1024,)


def test_a_64_mib_array_goes_through_a_dependent_by_reference(stack, store):
    c = stack.client()
    big = np.arange(8 * MIB, dtype=np.float64)  # 64 MiB
    a = c.submit(lambda x: x + 1, big)
    b = c.submit(lambda x: x * 2, a)
    np.testing.assert_array_equal(b.result(timeout=180), (big + 1) * 2)
    # The argument, a's value and b's value: three objects of the array's
    # size and a header, each written once.
    large = [n for n in _objects(store, stack.namespace).values() if n >= 64 * MIB]
    assert len(large) == 3, large


def test_twenty_dependents_of_one_value_read_one_object(stack, store):
    c = stack.client()
    before = set(_objects(store, stack.namespace))
    base = c.submit(lambda n: np.ones(n), 1 * MIB, pure=False)
    sums = c.map(lambda a, i: float(a.sum()) + i, [base] * 20, range(20))
    assert c.gather(sums) == [float(MIB) + i for i in range(20)]
    new = {k: v for k, v in _objects(store, stack.namespace).items() if k not in before}
    # base's 8 MiB value, once; the sums are floats, JSON in Redis.
    assert [v for v in new.values() if v >= 8 * MIB] == [pytest.approx(8 * MIB, abs=4096)]


def test_pool_processes_read_big_values_from_the_store_and_refuse_changed_ones(stack, store):
    """A big argument goes from the store to the pool process that reads it
    (not through the worker), checked against its hash there: a changed
    object or a missing one fails the task, naming the store."""
    c = stack.client()
    before = set(_objects(store, stack.namespace))
    # A value no other test makes: objects are named by their content.
    a = c.submit(lambda n: np.full(n, 3.25), MIB, pure=False)
    a.result(timeout=60)
    (made,) = set(_objects(store, stack.namespace)) - before
    path = store / stack.namespace / "blobs" / made
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    changed = c.submit(lambda x: float(x.sum()), a, pure=False)
    with pytest.raises(Exception, match="in the object store .* not the value.s"):
        changed.result(timeout=60)
    # A client reads the file into its own buffer, and refuses it too.
    with pytest.raises(WarrenError, match="not the value.s: refused"):
        warren.Future(a.key, stack.client()).result(timeout=60)
    path.unlink()
    gone = c.submit(lambda x: float(x.sum()), a, pure=False)
    with pytest.raises(Exception, match=f"value {made} .* is not in the object store"):
        gone.result(timeout=60)


def test_a_worker_killed_while_writing_a_big_result_leaves_no_partial_value(store, tmp_path):
    """A pool process writes a big result under a temporary name and renames
    it into place: its worker SIGKILLed mid-write leaves nothing under the
    value's name, the task runs again on another worker, and the value kept
    is the rerun's, whole."""
    s = Stack("killed-writer", store_url=store.as_uri())
    s.scheduler()
    first = s.python_worker(accept_code=True)
    with serving(s, 1):
        c = s.client()
        blobs = store / s.namespace / "blobs"
        runs = tmp_path / "runs"

        def big(path: str) -> np.ndarray:
            with open(path, "a") as f:
                f.write(f"{os.getpid()}\n")
            return np.full(32 * MIB, 7.0)  # 256 MiB: a write long enough to land in

        f = c.submit(big, str(runs), pure=False)
        deadline = time.monotonic() + 60
        while not any("#w" in p.name for p in blobs.glob("*")):
            assert time.monotonic() < deadline, "the pool process never began to write"
            time.sleep(0.002)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        s.python_worker(accept_code=True)
        np.testing.assert_array_equal(f.result(timeout=120), np.full(32 * MIB, 7.0))
    assert len(runs.read_text().split()) == 2, "the task ran once more, elsewhere"
    for p in blobs.iterdir():
        if "#" not in p.name:
            assert _warren.blob_hash(p.read_bytes()) == p.name, f"{p.name} is not its value"


def test_a_maps_arguments_are_stored_in_the_background_and_all_before_it_is_sent(stack, store):
    """``map`` stores each call's envelope while it seals the next, at most
    256 MiB at once: 40 arguments of 8 MiB (320 MiB) all arrive, each task
    reading its own; a store that fails fails the ``map`` that needed it,
    naming the store, and sends none of its tasks."""
    c = stack.client()
    arrays = [np.full(MIB, float(i)) for i in range(40)]
    sums = c.gather(c.map(lambda a: float(a[0]) * a.size, arrays, pure=False))
    assert sums == [float(i) * MIB for i in range(40)]
    blobs = store / stack.namespace / "blobs"
    aside = blobs.with_name("blobs-aside")
    blobs.rename(aside)
    try:
        # A file where the store's directory was: every write fails, even
        # for root, so the background stores fail.
        blobs.write_bytes(b"")
        before = submitted(c)
        with pytest.raises(WarrenError, match=re.escape(store.as_uri())):
            c.map(lambda a: a, [np.full(MIB, -1.0), np.full(MIB, -2.0)], pure=False)
        c._rust.flush()
        assert submitted(c) == before, "no task was sent"
    finally:
        blobs.unlink()
        aside.rename(blobs)
    # The client goes on: the next call stores and runs.
    assert c.submit(lambda a: float(a.sum()), np.ones(MIB), pure=False).result(timeout=60) == MIB


def test_a_map_of_stored_values_starts_early_and_fails_whole(stack):
    """``map`` publishes calls whose arguments are stored values in growing
    batches, so the first tasks are sent while later arguments are still
    sealed; an argument that cannot be sent still fails the whole ``map``:
    the batches already published are cancelled."""
    c = stack.client()
    arrays = [np.full(MIB // 8, float(i)) for i in range(24)]  # 1 MiB each
    before = submitted(c)
    fs = c.map(lambda a: float(a[0]), arrays, pure=False)
    assert c.gather(fs) == [float(i) for i in range(24)]
    assert submitted(c) - before == 24
    keys = [f"early-{i}-{time.time_ns()}" for i in range(5)]
    unsendable = threading.Lock()
    before = submitted(c)
    with pytest.raises(TypeError, match="lock"):
        c.map(lambda a: a, [*arrays[:4], unsendable], key=keys, delay=120)
    # The first batch (2 MiB of values) was published before the lock was
    # met, and is cancelled; the rest was never sent.
    c._rust.flush()
    assert submitted(c) - before == 2
    assert [s for s, _ in c._rust.statuses(keys[:2])] == ["cancelled", "cancelled"]


def submitted(c) -> int:  # noqa: ANN001
    """Tasks the namespace has recorded."""
    return json.loads(c._rust.info())["stats"].get("submitted", 0)


def _gib_through_a_dependent(stack: Stack) -> None:
    c = stack.client()
    big = np.arange(128 * MIB, dtype=np.float64)  # 1 GiB
    a = c.submit(lambda x: x + 1, big, pure=False)
    del big
    b = c.submit(lambda x: x * 2, a, pure=False)
    out = b.result(timeout=600)
    assert out.shape == (128 * MIB,) and out.dtype == np.float64
    probe = np.arange(0, 128 * MIB, 4099)
    np.testing.assert_array_equal(out[probe], (probe + 1.0) * 2)
    assert out[-1] == (128 * MIB) * 2.0
    del out
    # A task's argument (1 GiB, read into place) and its result (1 GiB,
    # sealed into the store as it is made) are all a pool process holds:
    # a result sealed in memory first would add a third GiB.
    peak = max(_pool_peaks_mib(stack))
    assert peak < 2600, f"a pool process peaked at {peak} MiB for 1 GiB in and out"
    _cli_streams_the_raw_bytes(stack, b.key, lambda i: (i + 1.0) * 2)


def _pool_peaks_mib(stack: Stack) -> list[int]:
    """The peak memory (VmHWM) of each pool process of the stack's workers."""
    workers = {p.pid for p in stack.procs if "worker" in p.args}
    peaks = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) not in workers:
                continue
            status = (entry / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) // 1024)
    assert peaks, f"no pool process of workers {workers} was found"
    return peaks


def _cli_streams_the_raw_bytes(stack: Stack, key: str, element) -> None:  # noqa: ANN001
    """`warren result --raw KEY > FILE` of the 1 GiB result writes the
    array's buffer as it arrives: the file is the array, and the CLI's peak
    is a few chunks, not the value (a wrapper process's children's peak RSS
    is the CLI's own)."""
    out_file = LOGS / f"raw-{key[:16]}.bin"
    wrapper = (
        "import resource, subprocess, sys\n"
        "with open(sys.argv[1], 'wb') as out:\n"
        "    done = subprocess.run(sys.argv[2:], stdout=out)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", wrapper, str(out_file), str(BIN / "warren"), "result", "--raw", key],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        code, peak_kib = ran.stdout.split()
        assert code == "0", ran.stderr
        assert out_file.stat().st_size == 128 * MIB * 8
        written = np.memmap(out_file, dtype=np.float64, mode="r")
        probe = np.arange(0, 128 * MIB, 4099)
        np.testing.assert_array_equal(written[probe], element(probe))
        assert written[-1] == element(128 * MIB - 1)
        del written
        assert int(peak_kib) < 128 * 1024, (
            f"`warren result --raw` of a 1 GiB value peaked at {int(peak_kib) // 1024} MiB"
        )
    finally:
        out_file.unlink(missing_ok=True)


def test_a_gib_array_goes_through_a_dependent_on_a_directory_store(stack):
    _gib_through_a_dependent(stack)


def test_a_client_holds_a_big_argument_once(stack):
    """A 1 GiB argument is sealed straight into a directory store's file: the
    client's peak is the array and the interpreter, not the array twice."""
    script = """
import resource
import numpy as np
import warren
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
c = warren.Client()
big = np.arange(128 * 1024 * 1024, dtype=np.float64)
before = peak()
f = c.submit(lambda x: float(x[-1]), big, pure=False)
print(peak() - before, before, f.result(timeout=600))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], env=stack.env(), capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr
    grew_kib, before_kib, last = out.stdout.split()
    assert float(last) == 128 * MIB - 1
    # Sealed into memory first, the envelope would add another GiB.
    assert int(grew_kib) < 256 * 1024, (
        f"submitting a 1 GiB array grew the client's peak by {int(grew_kib) // 1024} MiB "
        f"(from {int(before_kib) // 1024} MiB)"
    )


def _s3_settings() -> dict[str, str]:
    """The S3 store of scripts/s3.sh (Garage), unless WARREN_TEST_S3_* name
    another."""
    env = os.environ.get
    return {
        "store_url": f"s3://{env('WARREN_TEST_S3_BUCKET', 'warren-test')}/py-{os.getpid()}",
        "s3_endpoint": env("WARREN_TEST_S3_ENDPOINT", "http://127.0.0.1:3900"),
        "s3_region": env("WARREN_TEST_S3_REGION", "garage"),
        "s3_access_key_id": env("WARREN_TEST_S3_ACCESS_KEY_ID", "GK0000000000000000000000a1"),
        "s3_secret_access_key": env(
            "WARREN_TEST_S3_SECRET_ACCESS_KEY",
            "776172726e0000000000000000000000000000000000000000000000000000b1",
        ),
    }


def test_a_chain_on_one_machine_keeps_its_s3_values_in_the_cache(tmp_path):
    """With `cache_bytes`, a pool process keeps the result it writes to S3
    on this machine's disk too, and the dependent and the client read it
    from there (the store's copy is the durable one)."""
    cache = tmp_path / "cache"
    s = Stack("cache-s3", cache_bytes=str(64 * MIB), cache_dir=str(cache), **_s3_settings())
    s.scheduler()
    s.python_worker(accept_code=True)
    with serving(s, 1):
        c = s.client()
        made = c.submit(lambda: np.arange(MIB, dtype=np.float64), pure=False)
        total = c.submit(lambda a: float(a.sum()), made, pure=False)
        assert total.result(timeout=60) == float(MIB * (MIB - 1) // 2)
        np.testing.assert_array_equal(made.result(timeout=60), np.arange(MIB, dtype=np.float64))
        kept = [f for f in cache.iterdir() if re.fullmatch(r"[0-9a-f]{64}", f.name)]
        assert [f.stat().st_size > 8 * MIB for f in kept] == [True], kept


def test_a_gib_array_goes_through_a_dependent_on_an_s3_store():
    """The same on a real S3-compatible server (Garage, which scripts/s3.sh
    starts; scripts/test.sh runs it first)."""
    s = Stack("gib-s3", **_s3_settings())
    s.scheduler()
    s.python_worker(accept_code=True)
    with serving(s, 1):
        _gib_through_a_dependent(s)

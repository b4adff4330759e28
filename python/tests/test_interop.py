"""Python and the CLI read each other's futures; Ctrl-C interrupts a wait;
restart reaches every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import funcs
import pytest
from conftest import BACKGROUND_IGNORES, BIN, TESTS, child, finish, read_line

import warren


def cli(stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "warren"), *args], env=stack.env(), capture_output=True, text=True, timeout=60
    )


def test_the_cli_reads_a_future_python_made_and_python_one_the_cli_made(client, stack):
    f = client.submit(funcs.add, 40, 2, pure=False)
    f.result(timeout=30)
    r = cli(stack, "result", f.key)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    r = cli(stack, "submit", "inc", "41")
    assert r.returncode == 0, r.stderr
    assert client.future(r.stdout.strip()).result(timeout=30) == 42
    # A Python function from the CLI goes to the Python workers' queue.
    r = cli(stack, "submit", "funcs:inc", "1")
    assert r.returncode == 0, r.stderr
    assert client.future(r.stdout.strip()).result(timeout=30) == 2
    # And a Python error reads the same there.
    bad = client.submit(funcs.divide, 1, 0)
    bad.exception(timeout=30)
    r = cli(stack, "result", bad.key)
    assert r.returncode != 0 and "return a / b" in r.stderr, r.stderr


def test_numpy_arrays_and_bytes_go_to_rust_functions_and_back(client, stack):
    np = pytest.importorskip("numpy")
    a = np.arange(6.0).reshape(2, 3)
    # The stock Rust `scale` takes a Binary (the array's buffer, dtype and
    # shape) and returns one: a numpy array comes back, not JSON.
    scaled = client.submit("scale", a, 2.0)
    out = scaled.result(timeout=30)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (2, 3)
    assert (out == a * 2.0).all()
    # Its result as another Rust function's argument, and bytes from here.
    assert client.submit("byte_count", scaled).result(timeout=30) == 48
    assert client.submit("byte_count", b"hello").result(timeout=30) == 5
    assert client.submit("byte_count", bytearray(3)).result(timeout=30) == 3
    # The CLI describes it and writes its bytes.
    r = cli(stack, "result", scaled.key)
    assert r.returncode == 0 and "numpy.ndarray float64 (2, 3)" in r.stdout, r.stdout + r.stderr
    raw = subprocess.run(
        [str(BIN / "warren"), "result", "--raw", scaled.key],
        env=stack.env(),
        capture_output=True,
        timeout=60,
    )
    assert raw.returncode == 0 and raw.stdout == (a * 2.0).tobytes(), raw.stderr
    # A Rust function's error names what it got; a value Rust cannot take
    # is refused here, naming it.
    e = client.submit("scale", np.arange(3), 2.0).exception(timeout=30)
    assert "numpy array of float64, got numpy.ndarray int64 (3,)" in str(e), e
    with pytest.raises(TypeError, match=r"argument 1 is a builtins.set .*bytes, a numpy array"):
        client.submit("byte_count", {1, 2})


@pytest.mark.parametrize("started", ["in a terminal", "in the background"])
def test_ctrl_c_interrupts_result_with_keyboard_interrupt(stack, started):
    # A background job or nohup starts the child with SIGINT (and SIGHUP)
    # ignored, and Python then installs no KeyboardInterrupt handler: the
    # script sets the disposition it relies on itself, as a user's script
    # that wants Ctrl-C must.
    script = f"""
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {str(TESTS)!r})
import funcs, warren
c = warren.Client(namespace={stack.namespace!r})
f = c.submit(funcs.sleep, 30, pure=False)
print("waiting", flush=True)
t = time.monotonic()
try:
    f.result()
except KeyboardInterrupt:
    print("interrupted after %.1f" % (time.monotonic() - t), flush=True)
    f.cancel()
"""
    ignored = BACKGROUND_IGNORES if started == "in the background" else ()
    with child([sys.executable, "-c", script], ignored=ignored) as p:
        assert read_line(p, 30).strip() == "waiting"
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = finish(p, 20)
    assert p.returncode == 0, err
    assert out.startswith("interrupted after"), (out, err)
    assert float(out.split()[-1]) < 5


def test_restart_cancels_everything_and_every_worker_confirms():
    from conftest import Stack

    s = Stack("restart")
    s.scheduler()
    s.rust_worker()
    s.python_worker()
    try:
        c = s.client()
        s.wait_for_workers(c, 2)
        f = c.submit(funcs.sleep, 30, pure=False)
        g = c.submit("sleep", 30.0, pure=False)
        time.sleep(0.5)
        r = c.restart()
        assert r["workers_expected"] == 2 and r["workers_ready"] == 2, r
        assert f.status == "cancelled" and g.status == "cancelled"
        with pytest.raises(warren.CancelledError):
            f.result(timeout=5)
        assert c.submit(funcs.inc, 1, pure=False).result(timeout=30) == 2
    finally:
        s.stop()


def test_a_client_sees_settings_from_the_environment(stack, monkeypatch):
    monkeypatch.setenv("WARREN_NAMESPACE", stack.namespace)
    c = warren.Client()
    assert c.namespace == stack.namespace
    assert c.submit(funcs.inc, 7).result(timeout=30) == 8
    assert os.environ["WARREN_NAMESPACE"] == stack.namespace

"""Tasks that run later (issue 37), as a Python user writes them:
``delay=`` and ``at=`` (Celery's ``countdown`` and ``eta``), ``cancel``
before the time, and retries that back off (``retry_delay``,
``retry_backoff``, ``retry_on`` with exception classes). The function is
defined here and travels as code, as a notebook's would."""

from __future__ import annotations

import builtins
import datetime as dt
import time
from pathlib import Path

import pytest
from conftest import Stack


@pytest.fixture(scope="module")
def c():
    s = Stack("later")
    s.scheduler()
    s.python_worker(accept_code=True, concurrency=2)
    try:
        client = s.client()
        s.wait_for_workers(client, 1)
        yield client
    finally:
        s.stop()


def stamp(path, failures, kind):
    """Appends this run's time to ``path``; raises the built-in exception
    ``kind`` while the file holds at most ``failures`` lines."""
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
    runs = len(Path(path).read_text().splitlines())
    if runs <= failures:
        raise getattr(builtins, kind)(f"failure {runs} of {failures}")
    return runs


def runs(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def test_delay_and_at_hold_a_task_until_its_time(c, tmp_path):
    log = tmp_path / "delay"
    submitted = time.time()
    f = c.submit(stamp, str(log), 0, "ValueError", delay="1.5s", pure=False)
    assert f.status == "pending"
    time.sleep(0.5)
    assert runs(log) == [], "it ran before its time"
    assert f.result(timeout=30) == 1
    late = runs(log)[0] - submitted
    assert 1.5 <= late < 2.5, late

    log2 = tmp_path / "at"
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.2)
    g = c.submit(stamp, str(log2), 0, "ValueError", at=due, pure=False)
    assert g.result(timeout=30) == 1
    ran = runs(log2)[0]
    assert due.timestamp() <= ran < due.timestamp() + 1.0, ran - due.timestamp()

    # A timedelta, and map's tasks all wait.
    log3 = tmp_path / "map"
    start = time.time()
    fs = c.map(stamp, [str(log3)] * 3, [0] * 3, ["ValueError"] * 3, delay=dt.timedelta(seconds=1))
    # A pure function over equal arguments: one future, three handles.
    assert len({f.key for f in fs}) == 1
    assert c.gather(fs) == [1, 1, 1]
    assert len(runs(log3)) == 1
    assert runs(log3)[0] - start >= 1.0


def test_cancel_before_its_time_means_it_never_runs(c, tmp_path):
    log = tmp_path / "never"
    f = c.submit(stamp, str(log), 0, "ValueError", delay=1.5, pure=False)
    f.cancel()
    time.sleep(2.0)
    assert f.status == "cancelled"
    assert runs(log) == []


def test_retries_back_off_and_retry_only_the_listed_exceptions(c, tmp_path):
    log = tmp_path / "backoff"
    # ConnectionRefusedError is a ConnectionError: retried, as `except
    # ConnectionError` would catch it.
    f = c.submit(
        stamp,
        str(log),
        2,
        "ConnectionRefusedError",
        retries=3,
        retry_delay=0.3,
        retry_backoff=2,
        retry_on=[ConnectionError],
        pure=False,
    )
    assert f.result(timeout=60) == 3
    times = runs(log)
    pauses = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(pauses) == 2
    for pause, formula in zip(pauses, [0.3, 0.6], strict=False):
        assert formula <= pause < formula + 0.8, pauses

    other = tmp_path / "other"
    g = c.submit(
        stamp, str(other), 2, "ValueError", retries=3, retry_on=[ConnectionError], pure=False
    )
    with pytest.raises(ValueError):
        g.result(timeout=60)
    assert len(runs(other)) == 1, "an exception not in retry_on is final at once"


def test_bad_timing_arguments_are_refused_by_name(c):
    with pytest.raises(ValueError, match="delay='soon'"):
        c.submit(stamp, "x", 0, "ValueError", delay="soon")
    with pytest.raises(ValueError, match="delay=-1"):
        c.submit(stamp, "x", 0, "ValueError", delay=-1)
    with pytest.raises(TypeError, match="at="):
        c.submit(stamp, "x", 0, "ValueError", at=[1])
    with pytest.raises(TypeError, match="retry_on="):
        c.submit(stamp, "x", 0, "ValueError", retries=1, retry_on=[42])
    with pytest.raises(ValueError, match="backoff"):
        c.submit(stamp, "x", 0, "ValueError", retries=1, retry_backoff=0.5)


def test_a_concurrency_key_reaches_the_scheduler_and_is_checked(c, tmp_path):
    log = tmp_path / "ck"
    f = c.submit(stamp, str(log), 0, "ValueError", concurrency_key="tenant-42", pure=False)
    assert f.result(timeout=30) == 1
    with pytest.raises(ValueError, match="concurrency key"):
        c.submit(stamp, "x", 0, "ValueError", concurrency_key="two words")


def test_a_schedule_from_python_ticks_and_refuses_code_and_ambiguity(c):
    first = c.schedule("py-every", "inc", 1, every="1s")
    assert first.tzinfo is not None
    time.sleep(2.6)
    runs = c.schedule_runs("py-every")
    assert len(runs) >= 2
    assert all(r.key.startswith("py-every-") for r in runs)
    assert c.unschedule("py-every") is True
    assert c.unschedule("py-every") is False
    with pytest.raises(TypeError, match="@task function or a registered name"):
        c.schedule("py-code", lambda: 1, every=5)
    with pytest.raises(TypeError, match="every= or cron="):
        c.schedule("py-both", "inc", every=5, cron="* * * * *")
    with pytest.raises(ValueError, match="minute"):
        c.schedule("py-cron", "inc", cron="61 * * * *")

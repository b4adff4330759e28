"""Big values in an object store (issue 36): with ``store_url``, a value over
``inline_max_bytes`` is written once to the store's directory and travels as
a reference, so an array far over the old 8 MiB ``max_payload_bytes`` goes
through a task and a dependent, and twenty dependents of one value read one
object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import Stack, serving

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

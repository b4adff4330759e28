"""Tasks that submit tasks (issue 34): ``get_client`` in a task, and
``secede``/``rejoin``/``worker_client`` giving a waiting task's slot to its
children, on one worker with one slot, where holding it would deadlock."""

from __future__ import annotations

import pytest
from conftest import Stack, serving

import warren
from warren import get_client, rejoin, secede, worker_client


@pytest.fixture(scope="module")
def one_slot():
    s = Stack("tasks")
    s.scheduler()
    s.python_worker(accept_code=True, concurrency=1)
    with serving(s, 1):
        yield s


@pytest.fixture(scope="module")
def c(one_slot):
    return one_slot.client()


def times_ten(x):
    return x * 10


def fan_out(n):
    with worker_client() as client:
        return sum(client.gather(client.map(times_ten, range(n))))


def by_hand(n):
    client = get_client()
    futures = client.map(times_ten, range(n), pure=False)
    secede()
    values = client.gather(futures)
    rejoin()
    return values


def fib(n):
    if n < 2:
        return n
    with worker_client() as client:
        a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
        return a.result() + b.result()


def test_a_task_maps_and_gathers_10_children_on_the_only_slot(c):
    assert c.submit(fan_out, 10).result(timeout=120) == sum(x * 10 for x in range(10))


def test_secede_and_rejoin_by_hand(c):
    assert c.submit(by_hand, 3).result(timeout=120) == [0, 10, 20]


def test_recursion_through_the_client_finishes(c):
    # fib(5): 15 calls, up to 4 waiting parents at once on a 1-slot worker.
    assert c.submit(fib, 5).result(timeout=180) == 5


def test_the_tasks_client_is_the_workers_namespace_with_no_password_in_its_environment(c, one_slot):
    def where():
        with open("/proc/self/environ", "rb") as f:
            environ = f.read()
        return get_client().namespace, b"WARREN_AMQP_URL" in environ

    assert c.submit(where, pure=False).result(timeout=60) == (one_slot.namespace, False)


def test_outside_a_task(c):
    with pytest.raises(ValueError, match="for a task running on a warren worker"):
        secede()
    with pytest.raises(ValueError, match="for a task running on a warren worker"):
        rejoin()
    assert isinstance(get_client(), warren.Client)


def tell(name):
    warren.Variable(name).set("from a task")
    return warren.Queue(name).get(timeout=30)


def test_primitives_in_a_task_use_the_tasks_client(c):
    name = f"handshake-{id(c)}"
    f = c.submit(tell, name, pure=False)
    assert warren.Variable(name, client=c).get(timeout=30) == "from a task"
    warren.Queue(name, client=c).put("from the client")
    assert f.result(timeout=30) == "from the client"


def hand_over(name):
    client = get_client()
    warren.Queue(name).put(client.submit(times_ten, 7, pure=False))
    return "handed over"


def test_a_queue_carries_futures_from_tasks_to_the_client(c):
    name = f"futures-{id(c)}"
    assert c.submit(hand_over, name, pure=False).result(timeout=60) == "handed over"
    got = warren.Queue(name, client=c).get(timeout=30)
    assert isinstance(got, warren.Future)
    assert got.result(timeout=60) == 70

"""The async API (issue 34): ``Client(asynchronous=True)`` in an asyncio
program and in a Jupyter cell, ``await future``, ``await client.gather``,
``async for`` over ``as_completed``, ``async with``, and ``async def``
functions run as tasks."""

from __future__ import annotations

import asyncio
import time

import nbformat
import pytest
from conftest import Stack, run_cell, serving

import warren


@pytest.fixture(scope="module")
def stack():
    s = Stack("async")
    s.scheduler()
    s.python_worker(accept_code=True, concurrency=2)
    with serving(s, 1):
        yield s


def slow_square(x):
    time.sleep(0.3)
    return x * x


async def async_inc(x):
    await asyncio.sleep(0.05)
    return x + 1


def test_the_async_api_in_an_asyncio_program(stack):
    async def main():
        async with await warren.Client(namespace=stack.namespace, asynchronous=True) as client:
            assert client.asynchronous
            assert await client.submit(slow_square, 3) == 9
            fs = client.map(slow_square, range(4), pure=False)
            assert await client.gather(fs) == [0, 1, 4, 9]
            [scattered] = await client.scatter([{"a": 1}])
            assert await scattered == {"a": 1}
            seen = [f.key async for f in warren.as_completed(client.map(slow_square, [5, 6]))]
            assert len(seen) == 2
            done, not_done = await warren.wait(client.map(slow_square, [7, 8]))
            assert len(done) == 2 and not not_done
            # The loop is never blocked: a ticker runs while futures are awaited.
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.02)
                    ticks += 1

            t = asyncio.create_task(ticker())
            pair = client.map(slow_square, [10, 11], pure=False)
            assert await asyncio.gather(*pair) == [100, 121]
            t.cancel()
            assert ticks >= 5, f"the event loop ticked {ticks} times in 0.3 s or more"
            # An error is raised by the await.
            with pytest.raises(ZeroDivisionError):
                await client.submit(lambda: 1 / 0)
            await client.cancel(client.submit(slow_square, 12, pure=False))

    asyncio.run(main())


def test_an_async_def_function_runs_as_a_task(stack):
    client = stack.client()
    assert client.submit(async_inc, 41).result(timeout=60) == 42
    assert client.gather(client.map(async_inc, range(3))) == [1, 2, 3]


def test_the_async_api_in_a_jupyter_cell(stack):
    nb = run_cell(
        "import warren\n"
        f"client = await warren.Client(namespace={stack.namespace!r}, asynchronous=True)\n"
        "f = client.submit(lambda x: x * 7, 6)\n"
        "print(await f, await client.gather(client.map(lambda x: -x, [1, 2])))"
    )
    outputs = nb.cells[0].outputs
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == ["42 [-1, -2]\n"]
    nbformat.validate(nb)


def chatty(n):
    import sys

    print(f"step 1 of {n}")
    time.sleep(1.5)
    print("step 2", file=sys.stderr)
    time.sleep(0.5)
    return n


def test_forward_output_shows_what_a_task_prints_while_it_runs(stack, capsys):
    client = warren.Client(namespace=stack.namespace, forward_output=True)
    other = warren.Client(namespace=stack.namespace)  # its tasks are not this client's
    quiet = other.submit(chatty, 0, pure=False)
    f = client.submit(chatty, 2, pure=False)
    deadline = time.monotonic() + 30
    out = ""
    while f"[{f.key}] step 1 of 2" not in out and time.monotonic() < deadline:
        time.sleep(0.05)
        out += capsys.readouterr().out
    assert f"[{f.key}] step 1 of 2\n" in out
    assert not f.done(), "the line came only once the task had finished"
    assert f.result(timeout=30) == 2
    assert quiet.result(timeout=30) == 0
    time.sleep(0.5)
    captured = capsys.readouterr()
    assert f"[{f.key}] step 2\n" in captured.err
    assert quiet.key not in out + captured.out + captured.err, "another client's task was shown"
    # And it is kept with the result as before.
    assert f.logs().stdout == "step 1 of 2\n"

"""A program ends well while warren's threads still wait.

CPython (before 3.14) ends a thread that takes the GIL back during
finalisation with ``pthread_exit``; a thread waiting in warren's Rust code
took it back through PyO3's trampoline, and glibc aborted the whole process
("FATAL: exception not rethrown", exit 134) after the program had finished:
the Python suite itself died so once all its tests had passed. The script
below keeps finalisation busy after the interpreter began it (a module
global's ``__del__`` sleeps), so a thread still in warren then would wake
into it every time, not by chance."""

from __future__ import annotations

import sys
import textwrap

from conftest import Stack, child, finish

import warren

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import warren
    from funcs import sleep

    client = warren.Client(namespace=sys.argv[1], forward_output=True)
    slow = client.submit(sleep, 60)
    slow.add_done_callback(lambda f: None)
    threading.Thread(target=slow.result, daemon=True).start()
    time.sleep(0.5)  # every thread is inside a wait now

    class SlowToFinalise:
        def __del__(self):
            time.sleep(1.0)  # releases the GIL while the interpreter finalises

    keep = SlowToFinalise()
    print(slow.key, flush=True)
    """
)


def test_exit_with_threads_waiting_in_warren_is_clean(stack: Stack, client: warren.Client) -> None:
    with child([sys.executable, "-c", SCRIPT, stack.namespace], env=stack.env()) as p:
        out, err = finish(p, within=60)
    key = out.strip()
    assert key, err
    client.cancel(warren.Future(key, client))  # the sleeping task is not the test's
    assert "FATAL" not in err, err
    assert p.returncode == 0, f"exit {p.returncode}; stderr: {err}"

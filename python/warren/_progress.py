"""``progress``: a bar that follows futures until they are all final.

On a terminal it redraws one line; in a Jupyter notebook it updates one
HTML output in place (IPython's ``display(..., display_id=True)``, no widget
library needed). It returns when every future is final.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any

from ._client import Future
from ._waiting import as_completed

_WIDTH = 40


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _line(done: int, total: int, errors: int, elapsed: float) -> str:
    filled = int(_WIDTH * done / total) if total else _WIDTH
    bar = "#" * filled + " " * (_WIDTH - filled)
    pct = 100 * done // total if total else 100
    err = f", {errors} errors" if errors else ""
    return f"[{bar}] | {pct:3d}% Completed | {done}/{total}{err} | {elapsed:.1f}s"


def _html(done: int, total: int, errors: int, elapsed: float) -> str:
    pct = 100 * done / total if total else 100.0
    colour = "#d9534f" if errors else "#5cb85c"
    err = f", {errors} errors" if errors else ""
    return (
        '<div style="width: 400px; border: 1px solid #999; height: 14px">'
        f'<div style="width: {pct:.1f}%; background: {colour}; height: 14px"></div></div>'
        f"<span>{done}/{total} completed{err} in {elapsed:.1f}s</span>"
    )


def progress(
    *futures: Iterable[Future] | Future, notebook: bool | None = None, **kwargs: Any
) -> None:
    """Shows how many of ``futures`` are final, live, until all are (dask's
    ``progress(*futures)``: futures, or iterables of them, in any mix).
    dask's display options (``multi=``, ``complete=``, ...) are accepted
    and change nothing: there is one bar."""
    del kwargs
    fs: list[Future] = []
    for f in futures:
        fs.extend([f] if isinstance(f, Future) else f)
    total = len(fs)
    notebook = _in_notebook() if notebook is None else notebook
    started = time.monotonic()
    done = errors = 0
    handle: Any = None
    last = 0.0

    def show(final: bool = False) -> None:
        nonlocal handle, last
        now = time.monotonic()
        if not final and now - last < 0.1:
            return
        last = now
        elapsed = now - started
        if notebook:
            from IPython.display import HTML, display  # type: ignore[import-not-found]

            if handle is None:
                handle = display(HTML(_html(done, total, errors, elapsed)), display_id=True)
            else:
                handle.update(HTML(_html(done, total, errors, elapsed)))
        else:
            sys.stderr.write("\r" + _line(done, total, errors, elapsed))
            if final:
                sys.stderr.write("\n")
            sys.stderr.flush()

    show(final=total == 0)
    if total:
        for f in as_completed(fs):
            done += 1
            if f.status != "finished":
                errors += 1
            show(final=done == total)

"""Where warren's programs are: ``warren``, ``warren-scheduler``, ``warren-worker``.

The wheel installs them as scripts, next to the Python that runs this code
(the venv's ``bin/``), as ruff and maturin ship theirs; a source checkout
names its build with ``WARREN_BIN_DIR``; else the ``PATH`` has them.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

__all__ = ["PROGRAMS", "find"]

#: The programs the wheel carries.
PROGRAMS = ("warren", "warren-scheduler", "warren-worker")


def _candidates(name: str) -> list[str]:
    dirs = [
        os.environ.get("WARREN_BIN_DIR", ""),
        sysconfig.get_path("scripts") or "",
        os.path.dirname(sys.executable),
    ]
    return [os.path.join(d, name) for d in dirs if d]


def find(name: str) -> str:
    """The path of program ``name``; ``FileNotFoundError`` saying where it
    looked and how to get it."""
    for path in _candidates(name):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    on_path = shutil.which(name)
    if on_path:
        return on_path
    looked = ", ".join(os.path.dirname(p) for p in _candidates(name))
    raise FileNotFoundError(
        f"{name} not found (looked in {looked} and the PATH): the warren wheel installs it "
        "(`bash scripts/wheel.sh`, then `pip install target/wheels/warren-*.whl`); from a "
        "source checkout, `cargo build --release --bins` and set WARREN_BIN_DIR=target/release"
    )

"""``python -m warren COMMAND``: warren's programs, from Python.

``worker`` is Python's own (it serves Python functions); ``scheduler``,
``up``, ``down`` and ``key`` run the programs the wheel installs next to
this Python (``warren-scheduler``, ``warren``), so that a user who has only
``pip install``-ed warren reaches all of it through ``python -m warren``.
"""

from __future__ import annotations

import os
import sys

from . import _binaries, _worker

__all__ = ["main"]

#: command -> (program, leading arguments)
_PROGRAMS = {
    "scheduler": ("warren-scheduler", []),
    "up": ("warren", ["up"]),
    "down": ("warren", ["down"]),
    "key": ("warren", ["key"]),
}

USAGE = """usage: python -m warren COMMAND [ARG...]

commands:
  worker     serve Python functions: @task functions of modules, or code clients send
  scheduler  run a scheduler (warren-scheduler)
  up         start a scheduler and workers in the background (warren up)
  down       stop what `up` started (warren down)
  key        make or show the namespace key (warren key new | show)

examples:
  python -m warren worker --accept-code      # run functions clients send as signed code
  python -m warren up --workers 2            # a local stack in the background
  python -m warren key new                   # the key that signs code and values

`python -m warren COMMAND --help` says more; the `warren` program has every
other command (submit, map, gather, status, info, top, ...).
"""


def main(argv: list[str]) -> int:
    """Runs the command line; returns the exit status (or never returns,
    for the commands that become a warren program)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "worker":
        return _worker.main(rest)
    if command not in _PROGRAMS:
        print(f"error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    program, lead = _PROGRAMS[command]
    try:
        path = _binaries.find(program)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execv(path, [path, *lead, *rest])

"""``python -m warren worker [--accept-code] [MODULE...]``: a Python worker.

It imports the modules, collects the functions they registered with
``@task``, and runs warren's worker runtime (Rust) serving them (and, with
``--accept-code``, functions that clients send as code, signed with the
namespace key), with N
slots backed by N Python processes that imported the same modules (so
CPU-bound Python really uses N cores). SIGTERM or Ctrl-C drains: no new
tasks, running ones finish and are reported, then it exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import _warren
from ._calls import CODE_QUEUE
from ._task import REGISTRY

EXAMPLES = """\
examples:
  python -m warren worker funcs                    # serve the @task functions of funcs.py
  python -m warren worker --accept-code            # run functions clients send as signed code
  python -m warren worker --accept-code funcs      # both
  python -m warren worker funcs more --concurrency 4
  python -m warren worker funcs --namespace test --amqp-url amqp://guest:guest@host:5672/%2f

Settings come from warren.toml (or --config) and WARREN_* variables, as for
warren-worker; these flags override them.
"""


def _parser() -> argparse.ArgumentParser:
    w = argparse.ArgumentParser(
        prog="python -m warren worker",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("modules", nargs="*", metavar="MODULE", help="modules to import")
    w.add_argument(
        "--accept-code",
        action="store_true",
        help="run functions sent as code and load pickled values, once checked against the "
        "namespace key (setting key_file; `warren key new`); refused without a key",
    )
    w.add_argument("-c", "--concurrency", type=int, help="task slots (default: the cores)")
    w.add_argument("--queues", help="work queues, comma-separated (default: the functions')")
    w.add_argument("--config", help="a TOML settings file (default: ./warren.toml)")
    w.add_argument("--namespace", help="prefix of every queue and Redis key")
    w.add_argument("--amqp-url", help="RabbitMQ URL")
    w.add_argument("--redis-url", help="Redis URL")
    w.add_argument("--drain-timeout", type=int, metavar="SECS", help="drain limit (default 30)")
    w.add_argument("--log-format", default="human", choices=["human", "json"])
    w.add_argument("--list-functions", action="store_true", help="list them and exit")
    return w


def main(argv: list[str]) -> int:
    """Runs ``python -m warren worker ARGV...``; returns the exit status."""
    # Options anywhere on the line, before, between or after the modules.
    args = _parser().parse_intermixed_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        print("error: --concurrency must be at least 1", file=sys.stderr)
        return 2
    # The modules are found as `python -m` finds them: from the current directory.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for m in args.modules:
        try:
            importlib.import_module(m)
        except ImportError as e:
            print(f"error: cannot import module {m!r}: {e}", file=sys.stderr)
            return 2
    if not args.modules and not args.accept_code:
        print(
            "error: name the modules whose @task functions to serve, or pass --accept-code "
            "to run functions that clients send as code",
            file=sys.stderr,
        )
        return 2
    if not REGISTRY and not args.accept_code:
        mods = ", ".join(args.modules)
        print(
            f"error: {mods} registered no functions: decorate them with @warren.task",
            file=sys.stderr,
        )
        return 2
    if args.list_functions:
        for name, t in sorted(REGISTRY.items()):
            print(f"{name}\t(queue {t.queue})")
        return 0
    queues = (
        [q for q in args.queues.split(",") if q]
        if args.queues
        else sorted(
            {t.queue for t in REGISTRY.values()} | ({CODE_QUEUE} if args.accept_code else set())
        )
    )
    overrides = [
        (name, str(value))
        for name, value in [
            ("namespace", args.namespace),
            ("amqp_url", args.amqp_url),
            ("redis_url", args.redis_url),
            ("drain_timeout_secs", args.drain_timeout),
            ("accept_code", "true" if args.accept_code else None),
        ]
        if value is not None
    ]
    # The runtime hears SIGTERM and SIGINT itself and drains; Python's own
    # handlers must not raise in the meantime.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        _warren.run_worker(
            sorted(REGISTRY),
            sys.executable,
            ["-m", "warren._child", *args.modules],
            queues,
            args.concurrency,
            args.config,
            overrides,
            args.log_format,
        )
    except ValueError as e:
        # Settings it cannot start with (no key for --accept-code, say).
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0

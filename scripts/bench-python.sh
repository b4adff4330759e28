#!/usr/bin/env bash
# Issue 11's benchmarks: warren's Python client and workers against dask on
# the same workloads, in one run (python/bench/compare.py). Makes .venv with
# warren's package and dask from PyPI, and builds what it runs.
#   bash scripts/bench-python.sh            # the table BENCHMARKS.md quotes
#   bash scripts/bench-python.sh --smoke    # every row, on a few hundred tasks
# WARREN_SKIP_BUILD=1 uses the binaries and the .venv as they are (the test
# command, which has just built both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
# The stack is started here, so Client() must connect to it and never start
# a local cluster of its own (which it does when no scheduler answers yet).
export WARREN_AMQP_URL="${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
if [ "${WARREN_SKIP_BUILD:-}" != 1 ]; then
  echo "== cargo build --release --bins --examples"
  cargo build --release --bins --examples
  bash scripts/python-env.sh
fi
.venv/bin/python3 -m pip -q --disable-pip-version-check install "dask[distributed]" numpy
exec .venv/bin/python3 python/bench/compare.py "$@"

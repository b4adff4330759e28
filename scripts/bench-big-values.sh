#!/usr/bin/env bash
# Issue 36's benchmark: 20 arrays of 100 MiB made, doubled and reduced, on
# warren with a directory store, warren with every value in Redis, and dask,
# in one run (python/bench/big_values.py): wall time and peak memory.
#   bash scripts/bench-big-values.sh            # the table BENCHMARKS.md quotes
#   bash scripts/bench-big-values.sh --smoke    # 4 arrays of 8 MiB
# WARREN_SKIP_BUILD=1 uses the binaries and the .venv as they are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
export WARREN_AMQP_URL="${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
if [ "${WARREN_SKIP_BUILD:-}" != 1 ]; then
  echo "== cargo build --release --bins --examples"
  cargo build --release --bins --examples
  bash scripts/python-env.sh
fi
.venv/bin/python3 -m pip -q --disable-pip-version-check install "dask[distributed]" numpy
exec .venv/bin/python3 python/bench/big_values.py "$@"

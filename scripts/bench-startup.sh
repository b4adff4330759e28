#!/usr/bin/env bash
# Issue 35's benchmark: Client() starting a local cluster, warren against
# dask's LocalCluster, in one run (python/bench/startup.py).
#   bash scripts/bench-startup.sh [ROUNDS]     # the table BENCHMARKS.md quotes (default 5)
#   bash scripts/bench-startup.sh --smoke      # one round
# WARREN_SKIP_BUILD=1 uses the binaries and the .venv as they are.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
if [ "${WARREN_SKIP_BUILD:-}" != 1 ]; then
  cargo build --release --bins
  bash scripts/python-env.sh
fi
.venv/bin/python3 -m pip -q --disable-pip-version-check install "dask[distributed]"
# The programs of this build, as the wheel would put them next to python.
export WARREN_BIN_DIR="${WARREN_BIN_DIR:-$PWD/target/release}"
exec .venv/bin/python3 python/bench/startup.py "$@"

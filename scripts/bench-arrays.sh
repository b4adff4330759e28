#!/usr/bin/env bash
# Issue 32's array row as a dask user meets it: map of an identity over 200
# numpy arrays of 1 MiB, then gather, on warren.LocalCluster (its default
# directory store) against dask's LocalCluster, 2 workers of 1 thread each.
# Prints one table row; `--smoke` runs 5 arrays once.
#
#   bash scripts/bench-arrays.sh [--arrays N] [--repeat N] [--smoke]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
export WARREN_AMQP_URL="${WARREN_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
if [ "${WARREN_SKIP_BUILD:-}" != 1 ]; then
  echo "== cargo build --release --bins"
  cargo build --release --bins
  bash scripts/python-env.sh
fi
.venv/bin/python3 -m pip -q --disable-pip-version-check install "dask[distributed]" numpy
args=()
for a in "$@"; do
  if [ "$a" = --smoke ]; then args+=(--arrays 5 --repeat 1); else args+=("$a"); fi
done
WARREN_BIN_DIR="${WARREN_BIN_DIR:-$PWD/target/release}" \
  exec .venv/bin/python3 python/bench/arrays.py "${args[@]}"

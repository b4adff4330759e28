#!/usr/bin/env bash
# Issue 36's benchmark: 20 arrays of 100 MiB made, doubled and reduced, on
# warren with a directory store, warren with every value in Redis, and dask,
# in one run (python/bench/big_values.py): wall time and peak memory.
#   --tmpfs adds a directory store on /dev/shm; --skip-redis drops the Redis row;
#   --compare-cli PATH also reads a value with another build's `warren result --raw`.
#   bash scripts/bench-big-values.sh            # the table BENCHMARKS.md quotes
#   bash scripts/bench-big-values.sh --smoke    # 4 arrays of 8 MiB
#   bash scripts/bench-big-values.sh --s3       # also with an S3 store: Garage on
#                                               # this machine (scripts/s3.sh), wiped after
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
if [[ " $* " == *" --s3 "* ]]; then
  # The settings s3.sh prints reach Garage; its objects are wiped after the run.
  set -a
  eval "$(bash scripts/s3.sh)"
  set +a
  unset WARREN_STORE_URL
  trap 'bash scripts/s3.sh --wipe' EXIT
fi
.venv/bin/python3 python/bench/big_values.py "$@"

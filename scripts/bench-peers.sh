#!/usr/bin/env bash
# Issue 14's same-run comparison: warren against dask and Celery on the same
# workloads, and warren on an empty Redis against a Redis holding 1,000,000
# extra keys. Makes .venv (Debian's Python is externally managed) with dask
# and Celery from PyPI, builds warren, and runs target/release/warren-compare.
#   bash scripts/bench-peers.sh             # the table BENCHMARKS.md quotes
#   bash scripts/bench-peers.sh --smoke     # every row, a few hundred tasks
# Other arguments go to warren-compare (e.g. --tasks 5000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

args=("$@")
if [ "${1:-}" = --smoke ]; then
  args=(--tasks 300 --rounds 30 --links 30 --extra-keys 2000 --idle-secs 1 "${@:2}")
fi
bash broker-config/up.sh
if [ ! -x .venv/bin/python3 ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q python3-venv
    python3 -m venv .venv
  fi
fi
.venv/bin/python3 -m pip install -q --disable-pip-version-check "dask[distributed]" celery redis
if [ "${WARREN_SKIP_BUILD:-}" != 1 ]; then
  echo "== cargo build --release --bins"
  cargo build --release --bins
fi
exec target/release/warren-compare --python .venv/bin/python3 "${args[@]}"

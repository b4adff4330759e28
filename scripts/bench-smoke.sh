#!/usr/bin/env bash
# Every benchmark script a user or BENCHMARKS.md names, run in its
# short form, so none of them can break unnoticed (issue 38: compare.py broke
# silently when @task stopped wrapping functions). Each must exit 0 and print
# its table; no speed is asserted. The test command runs this after building
# everything, so the scripts skip their own builds (WARREN_SKIP_BUILD=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export WARREN_SKIP_BUILD=1

# A failure's last lines, without a backtrace's frames: with RUST_BACKTRACE=1
# an anyhow error prints 30 frames after its message, and a tail of the raw
# output showed only frames (CI's stop 51 lost the reason that way). The whole
# output stays in target/bench-smoke/.
last_lines() { # label, output
  local log
  log="target/bench-smoke/$(tr -c 'a-zA-Z0-9\n' - <<<"$1" | head -c 80).log"
  mkdir -p target/bench-smoke
  printf '%s\n' "$2" >"$log"
  { grep -Ev '^ +[0-9]+: |^ +at ' <<<"$2" || true; } | tail -40
  echo "bench-smoke: the whole output is in $log" >&2
}

check() { # label, what its output must contain, command...
  local label=$1 table=$2 out started=$SECONDS
  shift 2
  if ! out=$("$@" 2>&1); then
    last_lines "$label" "$out"
    echo "bench-smoke: $label failed (its last lines above)" >&2
    return 1
  fi
  if ! grep -qF -- "$table" <<<"$out"; then
    last_lines "$label" "$out"
    echo "bench-smoke: $label printed no table (no line with \"$table\")" >&2
    return 1
  fi
  echo "bench-smoke: $label: ok in $((SECONDS - started)) s"
}

check "bash scripts/bench-commands.sh --smoke" "x function inc:" bash scripts/bench-commands.sh --smoke
check "target/release/warren-bench --scale smoke" "| # | what | value |" \
  target/release/warren-bench --scale smoke --noop-tasks 500 --no-write
check "bash scripts/bench-peers.sh --smoke (warren-compare)" "| workload | warren, empty Redis |" \
  bash scripts/bench-peers.sh --smoke
check "bash scripts/bench-python.sh --smoke" "| workload | warren | dask" bash scripts/bench-python.sh --smoke
check "bash scripts/bench-arrays.sh --smoke" "| identity over 5 arrays of 1 MiB" bash scripts/bench-arrays.sh --smoke
check "bash scripts/bench-redis-cluster.sh --smoke" "== cluster, redis_min_replicas 1: map(inc" \
  bash scripts/bench-redis-cluster.sh --smoke
check "bash scripts/bench-big-values.sh --smoke --s3" "| stack | wall (s) |" \
  bash scripts/bench-big-values.sh --smoke --s3
check "bash scripts/bench-signing.sh --smoke" "| tasks/s |" bash scripts/bench-signing.sh --smoke
check "bash scripts/bench-startup.sh --smoke" "| step | warren (s) | dask (s)" bash scripts/bench-startup.sh --smoke
# scripts/cluster.sh (up, status, down) is not repeated here: the test
# rabbit_cluster runs each of them on a real cluster and checks what it made.

#!/usr/bin/env bash
# Issue 12's row: `warren map --cmd` + `warren gather -` of N `true` programs
# on 2 workers, against the same map of the no-op function `inc`, alternated
# in one run (3 rounds). Prints tasks/s and the per-task cost of each.
#   bash scripts/bench-commands.sh [N]     # N = 1000 by default
#   bash scripts/bench-commands.sh --smoke # 100 tasks, one round
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=1000 rounds=3
case "${1:-}" in
  --smoke) n=100 rounds=1 ;;
  "") ;;
  *) n=$1 ;;
esac

bash broker-config/up.sh
[ "${WARREN_SKIP_BUILD:-}" = 1 ] || cargo build --release --bins -q
bin=target/release
export WARREN_NAMESPACE="bench-cmd-$$"
logs=.warren-run/bench-commands; mkdir -p "$logs"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
"$bin/warren-scheduler" >"$logs/scheduler.log" 2>&1 & pids+=($!)
for i in 1 2; do
  "$bin/warren-worker" --concurrency 1 --allow-command true >"$logs/worker-$i.log" 2>&1 & pids+=($!)
done
for _ in $(seq 1 100); do
  [ "$("$bin/warren" workers 2>/dev/null | grep -c commands)" -ge 2 ] && break
  sleep 0.1
done

time_of() { # label, command...
  local label=$1 start end
  shift
  start=$(date +%s.%N)
  "$@" | "$bin/warren" gather - >/dev/null
  end=$(date +%s.%N)
  python3 -c "t = $end - $start; print(f'$label: {$n / t:8.0f} tasks/s, {1000 * t / $n:6.2f} ms per task')"
}
values=$(seq 1 "$n")
for round in $(seq 1 "$rounds"); do
  echo "round $round"
  time_of "  $n x program true" "$bin/warren" map --no-pure --cmd -- true ::: $values
  time_of "  $n x function inc" "$bin/warren" map --no-pure inc $values
done

#!/usr/bin/env bash
# What signed messages cost (issue 33): the no-op map + gather of
# `warren-bench --noop-only` (a fresh scheduler and 2 workers each time)
# without a namespace key and with one (every submit, work message, report
# and client event signed and checked), alternated in one run, 3 rounds.
# Prints each rate, the medians and their ratio (with key / without).
#   bash scripts/bench-signing.sh [N]      # N = 20000 tasks by default
#   bash scripts/bench-signing.sh --smoke  # 500 tasks, one round
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=20000 rounds=3
case "${1:-}" in
  --smoke) n=500 rounds=1 ;;
  "") ;;
  *) n=$1 ;;
esac
bash broker-config/up.sh >/dev/null
[ "${WARREN_SKIP_BUILD:-}" = 1 ] || cargo build --release -q --bins -p warren-integration-tests -p warren-scheduler -p warren-worker -p warren-client
dir="$(mktemp -d /tmp/warren-bench-signing.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
target/release/warren key new --file "$dir/key" >/dev/null

rate() { # extra warren-bench args...
  target/release/warren-bench --noop-only --noop-tasks "$n" "$@" 2>"$dir/log" |
    sed -n 's/^rate=//p' | cut -d. -f1
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

without=() with=()
for r in $(seq 1 "$rounds"); do
  without+=("$(rate)")
  with+=("$(rate --key-file "$dir/key")")
  echo "round $r: without a key ${without[-1]} tasks/s, with a key ${with[-1]} tasks/s" >&2
done
a=$(echo "${without[*]}" | median) b=$(echo "${with[*]}" | median)
echo "| no-op map + gather, $n tasks, $rounds alternated rounds | without a key | with a key | ratio (with / without) |"
echo "|---|---|---|---|"
echo "| tasks/s | ${without[*]} | ${with[*]} | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f (medians %d / %d)", b / a, b, a}') |"

#!/usr/bin/env bash
# Same-run comparison of warren on a standalone Redis primary and on a Redis
# Cluster (the primary of the namespace's slot), each primary with two
# replicas, with redis_min_replicas 0 and 1, alternated three times:
# examples/throughput (no-op map of 10,000, 200 round trips, a chain of
# 1,000) on a fresh scheduler and 2 workers each time. Uses ports 7301-7309
# (cluster, bus 17301-17309) and 7320-7322 (standalone) and the machine's
# RabbitMQ; removes what it made. BENCHMARKS.md quotes its output.
#   bash scripts/bench-redis-cluster.sh --smoke   # 1,000 tasks, one pass
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tasks=10000 passes=3
[ "${1:-}" = --smoke ] && tasks=1000 passes=1
[ "${WARREN_SKIP_BUILD:-}" = 1 ] ||
  cargo build --release -q --bins --example throughput -p warren-client -p warren-scheduler -p warren-worker
bin="$PWD/target/release"
dir="$(mktemp -d /tmp/warren-bench-redis-cluster.XXXXXX)"
cluster_ports=(7301 7302 7303 7304 7305 7306 7307 7308 7309)
single_ports=(7320 7321 7322)

node() { # port, extra redis-server flags...
  local p=$1; shift
  mkdir -p "$dir/$p"
  redis-server --port "$p" --bind 127.0.0.1 --appendonly yes --save "" --dir "$dir/$p" \
    --logfile "$dir/$p/log" --daemonize yes --pidfile "$dir/$p/pid" "$@"
}
cleanup() {
  for p in "${cluster_ports[@]}" "${single_ports[@]}"; do
    [ -f "$dir/$p/pid" ] && kill "$(cat "$dir/$p/pid")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf "$dir"
}
trap cleanup EXIT

for p in "${cluster_ports[@]}"; do node "$p" --cluster-enabled yes --cluster-node-timeout 1000; done
node 7320
node 7321 --replicaof 127.0.0.1 7320
node 7322 --replicaof 127.0.0.1 7320
sleep 1
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cluster_ports[@]}") \
  --cluster-replicas 2 --cluster-yes >"$dir/create.log"
for _ in $(seq 1 100); do
  redis-cli -p 7301 cluster info | grep -q cluster_state:ok && break
  sleep 0.1
done
sleep 2 # replicas' first sync

run() { # label, redis_url, redis_min_replicas
  export WARREN_NAMESPACE="bench-rc-$RANDOM$RANDOM" WARREN_REDIS_URL="$2" WARREN_REDIS_MIN_REPLICAS="$3"
  "$bin/warren-scheduler" >"$dir/scheduler.log" 2>&1 & local s=$!
  "$bin/warren-worker" >"$dir/worker-1.log" 2>&1 & local w1=$!
  "$bin/warren-worker" >"$dir/worker-2.log" 2>&1 & local w2=$!
  sleep 2
  echo "== $1: $("$bin/examples/throughput" "$tasks" 2>&1 | tr '\n' ' ')"
  kill "$s" "$w1" "$w2"
  wait "$s" "$w1" "$w2" 2>/dev/null || true
}
cluster="redis+cluster://127.0.0.1:7301,127.0.0.1:7302,127.0.0.1:7303"
for _ in $(seq 1 "$passes"); do
  run "standalone, redis_min_replicas 0" redis://127.0.0.1:7320/ 0
  run "cluster, redis_min_replicas 0" "$cluster" 0
  run "standalone, redis_min_replicas 1" redis://127.0.0.1:7320/ 1
  run "cluster, redis_min_replicas 1" "$cluster" 1
done

#!/usr/bin/env bash
# A RabbitMQ cluster and a replicated Redis on this one machine, for trying
# warren beyond one node (docs/operations.md, "Running on a cluster").
#
#   bash scripts/cluster.sh up      # start, then print the export lines
#   bash scripts/cluster.sh down    # stop and remove everything it made
#   bash scripts/cluster.sh status  # what runs
#
# up starts three RabbitMQ nodes, warren-1@localhost to warren-3@localhost
# (AMQP 5701-5703, management UI 15701-15703, Erlang distribution 25701-25703),
# joins them into one cluster, imports warren's policies for quorum queues
# (namespace $WARREN_NAMESPACE, default warren), and starts a Redis primary on
# 7001 with replicas on 7002 and 7003 under three sentinels on 7004-7006
# (which promote a replica when the primary dies; warren follows them through
# its redis+sentinel:// URL, and waits for one replica before it acks or
# answers: redis_min_replicas = 1). Data and logs live in
# ${WARREN_CLUSTER_DIR:-/tmp/warren-cluster}.
#
#   bash scripts/cluster.sh up --redis-cluster
#
# makes a Redis Cluster instead of the Sentinel-watched primary: six nodes on
# 7011-7016 (cluster bus 17011-17016), three primaries each with a replica
# that takes over when its primary dies; warren finds the primary of its
# namespace's slot through its redis+cluster:// URL. RabbitMQ and Redis come from
# Debian's packages, installed where missing. The machine's own RabbitMQ
# (5672) and Redis (6379) are left alone.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/.."
dir="${WARREN_CLUSTER_DIR:-/tmp/warren-cluster}"
nodes=(1 2 3)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

say() { echo "cluster.sh: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_name() { echo "warren-$1@localhost"; }
amqp_port() { echo $((5700 + $1)); }
redis_port() { echo $((7000 + $1)); }
sentinel_port() { echo $((7003 + $1)); }
# The name the sentinels know the primary by (the path of warren's URL).
primary_name=warren

# rabbitmqctl (or rabbitmq-server) for node N: Debian's scripts run it as
# user rabbitmq, so every path it writes is under $dir/rabbit-N, which that
# user owns.
rabbit() {
  local n="$1" program="$2"
  shift 2
  $sudo env RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT=$((25700 + n)) \
    RABBITMQ_MNESIA_BASE="$dir/rabbit-$n/mnesia" \
    RABBITMQ_LOG_BASE="$dir/rabbit-$n/log" \
    RABBITMQ_PID_FILE="$dir/rabbit-$n/pid" \
    RABBITMQ_CONFIG_FILE="$dir/rabbit-$n/rabbit" \
    RABBITMQ_CONFIG_FILES="$dir/rabbit-$n/conf.d" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/rabbit-$n/plugins" \
    "$program" "$@"
}
ctl() { local n="$1"; shift; rabbit "$n" rabbitmqctl -q -n "$(node_name "$n")" "$@"; }

install() {
  local missing=()
  command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian's packages"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
  fi
}

start_rabbit() {
  local n="$1" d="$dir/rabbit-$1"
  if port_open "$(amqp_port "$n")"; then
    say "$(node_name "$n") already answers on $(amqp_port "$n")"
    return
  fi
  # Its own conf.d: the machine's /etc/rabbitmq/conf.d (where up.sh puts
  # management.tcp.port = 15672) would otherwise be read by every node.
  mkdir -p "$d/conf.d"
  chmod 777 "$d" "$d/conf.d"
  {
    echo "listeners.tcp.default = $(amqp_port "$n")"
    echo "management.tcp.port = $((15700 + n))"
    echo "loopback_users.guest = true"
    # Quorum queues are safe in a partition whatever this says (Raft); this
    # stops a minority node from serving at all, so its clients move to the
    # majority instead of waiting on queues that cannot confirm.
    echo "cluster_partition_handling = pause_minority"
    grep -v '^management\.tcp\.port' "$root/broker-config/rabbitmq.conf" | grep -v '^#' | grep -v '^$'
  } >"$d/rabbit.conf"
  echo "[rabbitmq_management]." >"$d/plugins"
  chmod 666 "$d/rabbit.conf" "$d/plugins"
  say "starting $(node_name "$n") on $(amqp_port "$n") (management UI http://127.0.0.1:$((15700 + n)))"
  rabbit "$n" rabbitmq-server -detached
}

await_rabbit() {
  local n="$1"
  if ! ctl "$n" wait "$dir/rabbit-$n/pid" --timeout 120 >/dev/null; then
    say "$(node_name "$n") did not start; its log: $dir/rabbit-$n/log"
    exit 1
  fi
}

join_rabbit() {
  local n="$1" first
  first="$(node_name 1)"
  if ctl "$n" cluster_status 2>/dev/null | grep -q "$first"; then
    return
  fi
  say "joining $(node_name "$n") to $first"
  ctl "$n" stop_app
  ctl "$n" join_cluster "$first"
  ctl "$n" start_app
}

import_policies() {
  local ns="${WARREN_NAMESPACE:-warren}" defs scheduler
  if [ -n "${WARREN_BIN_DIR:-}" ]; then
    scheduler="$WARREN_BIN_DIR/warren-scheduler"
  else
    scheduler="$(command -v warren-scheduler || echo "$root/target/release/warren-scheduler")"
  fi
  if [ ! -x "$scheduler" ]; then
    say "no policies imported: build warren first (cargo build --release --bins)"
    return
  fi
  defs="$(mktemp /tmp/warren-definitions.XXXXXX)"
  chmod 644 "$defs"
  WARREN_QUEUE_TYPE=quorum WARREN_NAMESPACE="$ns" "$scheduler" --print-definitions >"$defs"
  ctl 1 import_definitions "$defs" >/dev/null
  rm -f "$defs"
  say "imported warren's policies for namespace $ns (quorum queues)"
}

# Runs a server's start command unless PORT already answers, then waits up
# to 5 s for PORT, naming WHAT and its LOG if it never opens.
started() {
  local port="$1" what="$2" log="$3"; shift 3
  if port_open "$port"; then
    say "$what already answers on $port"
    return
  fi
  "$@"
  for _ in $(seq 1 50); do port_open "$port" && return; sleep 0.1; done
  say "$what on $port did not start; its log: $log"
  exit 1
}

start_redis() {
  local n="$1" port d="$dir/redis-$1"
  port="$(redis_port "$n")"
  mkdir -p "$d"
  local role=()
  if [ "$n" -ne 1 ]; then role=(--replicaof 127.0.0.1 "$(redis_port 1)"); fi
  started "$port" Redis "$d/log" \
    redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --appendonly yes \
    --daemonize yes --pidfile "$d/pid" --logfile "$d/log" "${role[@]}"
}

start_sentinel() {
  local n="$1" port d="$dir/sentinel-$1"
  port="$(sentinel_port "$n")"
  port_open "$port" || write_sentinel_conf "$port" "$d"
  started "$port" "a sentinel" "$d/log" \
    redis-server "$d/sentinel.conf" --sentinel --daemonize yes --pidfile "$d/pid" --logfile "$d/log"
}

# A sentinel rewrites its configuration file as it learns: each has its own.
write_sentinel_conf() {
  local port="$1" d="$2"
  mkdir -p "$d"
  cat >"$d/sentinel.conf" <<CONF
port $port
bind 127.0.0.1
dir $d
sentinel monitor $primary_name 127.0.0.1 $(redis_port 1) 2
sentinel down-after-milliseconds $primary_name 5000
sentinel failover-timeout $primary_name 60000
CONF
}

# Waits until replica N has its first copy: until then it cannot acknowledge
# the WAIT that redis_min_replicas = 1 makes every script do, and the first
# commands of a freshly started stack would stall.
await_replica() { await_replica_on "$(redis_port "$1")" "$dir/redis-$1/log"; }

# Waits until the replica on PORT is in sync with its primary (LOG: its log).
await_replica_on() {
  local port="$1" log="$2"
  for _ in $(seq 1 300); do
    if redis-cli -p "$port" info replication 2>/dev/null | grep -q 'master_link_status:up'; then
      return
    fi
    sleep 0.1
  done
  say "the replica on $port did not sync with the primary in 30 s; its log: $log"
  exit 1
}

# The three nodes' addresses, each as function $1 prints node N's, joined by commas.
joined() {
  local out="" n
  for n in "${nodes[@]}"; do
    out="${out:+$out,}$("$1" "$n")"
  done
  echo "$out"
}

sentinel_addr() { echo "127.0.0.1:$(sentinel_port "$1")"; }
sentinel_url() { echo "redis+sentinel://$(joined sentinel_addr)/$primary_name"; }

# Stops the process whose pid file is $1, SIGKILL if it lingers.
stop_pid() {
  local pid
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || true
  # A replica caught mid-sync was once seen to outlive SIGTERM.
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

# Redis Cluster mode (`up --redis-cluster`): node N of 1-6 on 7010+N.
cluster_nodes=(1 2 3 4 5 6)
cluster_port() { echo $((7010 + $1)); }
cluster_addr() { echo "127.0.0.1:$(cluster_port "$1")"; }

start_cluster_node() {
  local n="$1" port d="$dir/rcluster-$1"
  port="$(cluster_port "$n")"
  mkdir -p "$d"
  # 5 s before a replica takes over a silent primary, as the sentinels' down-after.
  started "$port" "Redis Cluster node" "$d/log" \
    redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --appendonly yes \
    --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 5000 \
    --daemonize yes --pidfile "$d/pid" --logfile "$d/log"
}

# Makes the six nodes one cluster (unless they are), then waits until every
# node says the cluster is ok.
create_redis_cluster() {
  local n addrs=()
  if ! redis-cli -p "$(cluster_port 1)" cluster info | grep -q 'cluster_state:ok'; then
    for n in "${cluster_nodes[@]}"; do addrs+=("$(cluster_addr "$n")"); done
    say "creating a Redis Cluster of ${#addrs[@]} nodes (3 primaries, 3 replicas)"
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/rcluster-create.log"
  fi
  for n in "${cluster_nodes[@]}"; do
    for _ in $(seq 1 300); do
      redis-cli -p "$(cluster_port "$n")" cluster info | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    if ! redis-cli -p "$(cluster_port "$n")" cluster info | grep -q 'cluster_state:ok'; then
      say "Redis Cluster node $(cluster_port "$n") is not ok after 30 s; see $dir/rcluster-$n/log"
      exit 1
    fi
  done
  # As in Sentinel mode, until each replica has its first copy it cannot
  # acknowledge the WAIT of redis_min_replicas = 1.
  for n in "${cluster_nodes[@]}"; do
    if redis-cli -p "$(cluster_port "$n")" info replication | grep -q 'role:slave'; then
      await_replica_on "$(cluster_port "$n")" "$dir/rcluster-$n/log"
    fi
  done
}

cluster_url() { echo "redis+cluster://$(cluster_addr 1),$(cluster_addr 2),$(cluster_addr 3)/"; }

amqp_url_of() { echo "amqp://guest:guest@127.0.0.1:$(amqp_port "$1")/%2f"; }
urls() { joined amqp_url_of; }

up() {
  local redis_mode="$1" redis_url
  install
  mkdir -p "$dir"
  for n in "${nodes[@]}"; do start_rabbit "$n"; done
  for n in "${nodes[@]}"; do await_rabbit "$n"; done
  for n in "${nodes[@]:1}"; do join_rabbit "$n"; done
  import_policies
  if [ "$redis_mode" = cluster ]; then
    for n in "${cluster_nodes[@]}"; do start_cluster_node "$n"; done
    create_redis_cluster
    redis_url="$(cluster_url)"
  else
    for n in "${nodes[@]}"; do start_redis "$n"; done
    for n in "${nodes[@]:1}"; do await_replica "$n"; done
    for n in "${nodes[@]}"; do start_sentinel "$n"; done
    redis_url="$(sentinel_url)"
  fi
  say "up: $(ctl 1 cluster_status --formatter json | grep -o '"running_nodes":\[[^]]*\]')"
  cat <<EOF
export WARREN_AMQP_URL='$(urls)'
export WARREN_QUEUE_TYPE=quorum
export WARREN_REDIS_URL='$redis_url'
export WARREN_REDIS_MIN_REPLICAS=1
EOF
}

down() {
  local n
  for n in "${nodes[@]}"; do
    if [ -f "$dir/rabbit-$n/pid" ]; then
      say "stopping $(node_name "$n")"
      ctl "$n" stop "$dir/rabbit-$n/pid" >/dev/null 2>&1 || true
    fi
    # Sentinels first: they would otherwise fail over from a stopped primary.
    if [ -f "$dir/sentinel-$n/pid" ]; then
      say "stopping the sentinel on $(sentinel_port "$n")"
      stop_pid "$dir/sentinel-$n/pid"
    fi
  done
  for n in "${nodes[@]}"; do
    if [ -f "$dir/redis-$n/pid" ]; then
      say "stopping Redis on $(redis_port "$n")"
      stop_pid "$dir/redis-$n/pid"
    fi
  done
  for n in "${cluster_nodes[@]}"; do
    if [ -f "$dir/rcluster-$n/pid" ]; then
      say "stopping Redis Cluster node $(cluster_port "$n")"
      stop_pid "$dir/rcluster-$n/pid"
    fi
  done
  for n in "${cluster_nodes[@]}"; do
    for _ in $(seq 1 100); do port_open "$(cluster_port "$n")" || break; sleep 0.1; done
  done
  for n in "${nodes[@]}"; do
    for port in "$(amqp_port "$n")" "$(redis_port "$n")" "$(sentinel_port "$n")"; do
      for _ in $(seq 1 100); do port_open "$port" || break; sleep 0.1; done
    done
  done
  $sudo rm -rf "$dir"
  say "removed $dir"
}

status() {
  local n s
  for n in "${nodes[@]}"; do
    if port_open "$(amqp_port "$n")"; then s=up; else s=down; fi
    echo "$(node_name "$n") amqp $(amqp_port "$n"): $s"
  done
  for n in "${nodes[@]}"; do
    if port_open "$(redis_port "$n")"; then s=up; else s=down; fi
    echo "redis $(redis_port "$n"): $s"
  done
  for n in "${nodes[@]}"; do
    if port_open "$(sentinel_port "$n")"; then s=up; else s=down; fi
    echo "sentinel $(sentinel_port "$n"): $s"
  done
  for n in "${cluster_nodes[@]}"; do
    if port_open "$(cluster_port "$n")"; then echo "redis cluster node $(cluster_port "$n"): up"; fi
  done
}

case "${1:-}" in
  up)
    case "${2:-}" in
      "") up sentinel ;;
      --redis-cluster) up cluster ;;
      *) echo "cluster.sh up: unknown option $2 (expected --redis-cluster)" >&2; exit 2 ;;
    esac
    ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: bash scripts/cluster.sh up [--redis-cluster] | down | status" >&2
    exit 2
    ;;
esac

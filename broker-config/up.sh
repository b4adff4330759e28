#!/usr/bin/env bash
# Brings up a local RabbitMQ (with the management UI) and Redis for warren,
# installing them from Debian's packages where missing. Safe to run again:
# whatever already runs is left running.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

say() { echo "up.sh: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port, seconds, name
  for _ in $(seq 1 "$2"); do port_open "$1" && return 0; sleep 1; done
  say "$3 did not open port $1 within $2 s"; return 1
}

missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} from Debian's packages"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

# Redis: warren's memory.
if ! port_open 6379; then
  say "starting redis-server"
  $sudo mkdir -p /var/lib/redis /var/log/redis
  $sudo redis-server "$here/redis.conf" --daemonize yes
  wait_port 6379 30 "Redis"
fi
# Future states are warren's memory: a Redis started elsewhere without
# persistence would lose them in a restart. Turn append-only persistence on.
if [ "$(redis-cli -p 6379 config get appendonly 2>/dev/null | tail -n 1)" = "no" ]; then
  if redis-cli -p 6379 config set appendonly yes >/dev/null 2>&1; then
    say "enabled append-only persistence on the running Redis (CONFIG SET appendonly yes)"
  else
    say "warning: could not enable persistence on the running Redis; a Redis restart would lose future states"
  fi
fi
say "Redis is up on 127.0.0.1:6379"

# RabbitMQ: warren's data path.
$sudo mkdir -p /etc/rabbitmq/conf.d
$sudo cp "$here/rabbitmq.conf" /etc/rabbitmq/conf.d/50-warren.conf
if ! port_open 5672; then
  say "starting rabbitmq-server"
  $sudo rabbitmq-server -detached
  $sudo rabbitmqctl -q --timeout 120 await_startup >/dev/null
  wait_port 5672 60 "RabbitMQ"
fi
# Apply the settings to a node that was already running, too.
$sudo rabbitmqctl -q eval 'application:set_env(rabbit, consumer_timeout, 86400000).' >/dev/null
if ! $sudo rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
  say "enabling the management UI"
  $sudo rabbitmq-plugins -q enable rabbitmq_management >/dev/null
fi
say "RabbitMQ is up on 127.0.0.1:5672 (management UI: http://127.0.0.1:15672, guest/guest)"

# warren's policies (dead-lettering; on quorum queues also the delivery-limit
# backstop), with its exchanges, queues and bindings, for the namespace in
# $WARREN_NAMESPACE. Importing again changes nothing. RabbitMQ's own user reads
# the file (by absolute path), so it is staged in a world-readable copy.
ns="${WARREN_NAMESPACE:-warren}"
queue_type="${WARREN_QUEUE_TYPE:-classic}"
defs="$(mktemp /tmp/warren-definitions.XXXXXX)"
chmod 644 "$defs"
staged=no
if [ "$ns" = warren ] && [ "$queue_type" = classic ]; then
  cp "$here/definitions.json" "$defs" && staged=yes
else
  # Other namespaces and queue types come from the code, through a built scheduler.
  scheduler="$(command -v warren-scheduler || echo "$here/../target/release/warren-scheduler")"
  if [ -x "$scheduler" ] && "$scheduler" --print-definitions >"$defs"; then
    staged=yes
  else
    say "not applying policies for namespace $ns ($queue_type queues): no built warren-scheduler" \
      "printed them; build warren (cargo build --release --bins) and run up.sh again"
  fi
fi
if [ "$staged" = yes ]; then
  if out="$($sudo rabbitmqctl -q import_definitions "$defs" 2>&1)"; then
    say "applied warren's policies and topology for namespace $ns ($queue_type queues)"
  else
    say "warning: importing the definitions of namespace $ns failed: $out"
  fi
fi
rm -f "$defs"

#!/usr/bin/env bash
# Brings up a real S3-compatible server on this machine for warren's object
# store (`store_url = "s3://..."`): Garage (https://garagehq.deuxfleurs.fr),
# built from crates.io when it is not installed, one node on 127.0.0.1:3900
# with the bucket `warren-test` and a test key that only this machine's
# loopback reaches. The tests and `bash scripts/bench-big-values.sh --s3` use
# it; `scripts/test.sh` runs this first. Safe to run again: a running server
# is left running.
#
#   bash scripts/s3.sh          # install (once, ~10 min of building), start, print the settings
#   bash scripts/s3.sh --stop   # stop the server (its data stays in $WARREN_S3_DIR)
#   bash scripts/s3.sh --wipe   # stop it and delete its data (the next start makes it anew)
set -euo pipefail

say() { echo "s3.sh: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

state="${WARREN_S3_DIR:-${TMPDIR:-/tmp}/warren-garage-$(id -u)}"
version="2.5.0"
bucket="warren-test"
# A test key of Garage's form (GK + 24 hex digits; 64 hex digits): the
# integration tests name the same ones (integration-tests/tests/suite/objects.rs).
key_id="GK0000000000000000000000a1"
secret="776172726e0000000000000000000000000000000000000000000000000000b1"
conf="$state/garage.toml"

if [ "${1:-}" = "--stop" ] || [ "${1:-}" = "--wipe" ]; then
  if [ -f "$state/pid" ] && kill "$(cat "$state/pid")" 2>/dev/null; then
    for _ in $(seq 1 50); do port_open 3900 || break; sleep 0.2; done
    say "stopped Garage"
  fi
  if [ "$1" = "--wipe" ]; then
    rm -rf "$state"
    say "deleted $state"
  fi
  exit 0
fi

garage="$(command -v garage || echo "$HOME/.cargo/bin/garage")"
if [ ! -x "$garage" ]; then
  say "installing Garage $version from crates.io (cargo install; builds for ~10 minutes, once)"
  # SQLite for metadata, bundled: no system library needed.
  cargo install garage --version "$version" --locked --quiet \
    --no-default-features --features bundled-libs,sqlite
  garage="$HOME/.cargo/bin/garage"
fi
g() { "$garage" -c "$conf" "$@"; }

mkdir -p "$state/meta" "$state/data"
if [ ! -f "$conf" ]; then
  umask 077
  cat >"$conf" <<EOF
metadata_dir = "$state/meta"
data_dir = "$state/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3901"
rpc_public_addr = "127.0.0.1:3901"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:3900"
root_domain = ".s3.garage.localhost"
EOF
fi

if ! port_open 3900; then
  say "starting Garage on 127.0.0.1:3900 (log: $state/garage.log)"
  setsid "$garage" -c "$conf" server >"$state/garage.log" 2>&1 </dev/null &
  echo $! >"$state/pid"
  for _ in $(seq 1 60); do port_open 3900 && break; sleep 0.5; done
  port_open 3900 || { say "Garage did not open port 3900 within 30 s:"; tail -n 20 "$state/garage.log" >&2; exit 1; }
fi

# A new node has no role: give it one, once (layout version 1).
if ! g layout show 2>/dev/null | grep -q "Current cluster layout version: [1-9]"; then
  node="$(g node id -q | cut -d@ -f1)"
  g layout assign -z local -c 1G "$node" >/dev/null
  g layout apply --version 1 >/dev/null
  say "gave node ${node:0:16} the layout"
fi
if ! g key info "$key_id" >/dev/null 2>&1; then
  g key import --yes -n warren-test "$key_id" "$secret" >/dev/null
fi
# The layout takes a moment to reach every table: retry the bucket's creation.
for i in $(seq 1 30); do
  if g bucket info "$bucket" >/dev/null 2>&1 || g bucket create "$bucket" >/dev/null 2>&1; then
    break
  fi
  [ "$i" = 30 ] && { say "could not create the bucket $bucket:"; g bucket create "$bucket" >&2; exit 1; }
  sleep 1
done
g bucket allow --read --write --owner "$bucket" --key "$key_id" >/dev/null
say "Garage is up: bucket $bucket on http://127.0.0.1:3900. Settings for warren:"
cat <<EOF
WARREN_STORE_URL=s3://$bucket/values
WARREN_S3_ENDPOINT=http://127.0.0.1:3900
WARREN_S3_REGION=garage
WARREN_S3_ACCESS_KEY_ID=$key_id
WARREN_S3_SECRET_ACCESS_KEY=$secret
EOF

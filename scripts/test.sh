#!/usr/bin/env bash
# The whole test suite: brings up RabbitMQ + Redis (installing them if missing),
# checks formatting and lints, builds the binaries the end-to-end tests spawn,
# and runs every test against the real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
# The progress-bar test reads a real terminal through tmux.
if ! command -v tmux >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q tmux
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -q -- -D warnings
echo "== cargo build --release --bins"
cargo build --release --bins
echo "== cargo test --release --workspace"
cargo test --release --workspace

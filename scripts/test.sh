#!/usr/bin/env bash
# The whole test suite: brings up RabbitMQ + Redis (installing them if missing),
# checks formatting and lints, builds the binaries the end-to-end tests spawn,
# and runs every test against the real services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash broker-config/up.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -q -- -D warnings
echo "== cargo build --release --bins"
cargo build --release --bins -q
echo "== cargo test --release --workspace"
cargo test --release --workspace

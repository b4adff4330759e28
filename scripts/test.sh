#!/usr/bin/env bash
# The whole test suite: brings up RabbitMQ, Redis and an S3-compatible server
# (installing them if missing), checks formatting and lints, builds the
# binaries the end-to-end tests spawn,
# and runs every test against the real services: Rust's, then Python's
# (in .venv, with the package installed as a user installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Each step says when it started, so a slow run shows where its time went.
step() { printf '== [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }
trap 'step "done (exit $?)"' EXIT

bash broker-config/up.sh
# A real S3-compatible server (Garage) for the object store tests; building it
# from crates.io takes ~10 minutes the first time on a new machine.
step "scripts/s3.sh (Garage on 127.0.0.1:3900)"
bash scripts/s3.sh
# The progress-bar test reads a real terminal through tmux.
if ! command -v tmux >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q tmux
fi
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --release --workspace --all-targets -q -- -D warnings
step "cargo build --release --bins"
cargo build --release --bins
step "cargo test --release --workspace"
# Four test threads on two cores: the end-to-end suite's tests mostly wait on
# servers, timers and processes (their times add up to about twice the suite's
# wall time at two threads); at four the suite took 155 s instead of 278 s
# here, and at six 122 s, which leaves less room for a slower machine.
cargo test --release --workspace -- --test-threads=4
step "Python: .venv, pip install ./python, ruff"
bash scripts/python-env.sh --test
.venv/bin/ruff check python
.venv/bin/ruff format --check python
step "pytest python/tests (the Python client and workers, and the notebook in Jupyter)"
# From the repository's root, so that `import warren` is the installed package.
WARREN_BIN_DIR="$PWD/target/release" .venv/bin/python3 -m pytest -q -p no:cacheprovider python/tests
step "benchmarks in their short forms (exit 0 and a table; no speed asserted)"
bash scripts/bench-smoke.sh
step "signal tests again, started as nohup or a background job starts them (SIGINT and SIGHUP ignored)"
# A shell's background job inherits SIGINT ignored, nohup SIGHUP: every test
# that signals a process must pass the same there as from a terminal.
(
  trap '' INT HUP
  cargo test --release -p warren-integration-tests --test suite -- ctrl_c sigterm a_second_signal
  WARREN_BIN_DIR="$PWD/target/release" .venv/bin/python3 -m pytest -q -p no:cacheprovider python/tests -k "ctrl_c or sigterm"
)

#!/usr/bin/env bash
# Builds warren's wheel: the Python package, its Rust extension, and the
# programs `warren`, `warren-scheduler` and `warren-worker` as the wheel's
# scripts, which pip installs next to the venv's python (on its PATH), as
# ruff and maturin ship theirs. One abi3 wheel serves every Python >= 3.11 of
# this platform; installing it needs no Rust toolchain.
#
#   bash scripts/wheel.sh [OUT_DIR]      # default target/wheels; prints the wheel's path
#   pip install target/wheels/warren-*.whl
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:-target/wheels}"
mkdir -p "$out"

# maturin from PyPI, in the project's venv (made if missing).
if [ ! -x .venv/bin/maturin ]; then
  [ -x .venv/bin/python3 ] || python3 -m venv .venv
  .venv/bin/python3 -m pip -q --disable-pip-version-check install "maturin>=1.5,<2"
fi

echo "wheel.sh: cargo build --release --bins" >&2
cargo build --release -q --bin warren --bin warren-scheduler --bin warren-worker

# maturin adds `<module-name>.data/` next to pyproject.toml to the wheel's
# data; its scripts/ go to the venv's bin/. The directory lives only for the
# build, so a source install (`pip install ./python`) never ships stale
# programs.
data="python/warren._warren.data"
trap 'rm -rf "$data"' EXIT
rm -rf "$data" && mkdir -p "$data/scripts"
for program in warren warren-scheduler warren-worker; do
  # Without the line tables the release profile keeps for perf: a third the bytes.
  strip --strip-debug -o "$data/scripts/$program" "target/release/$program"
done

# The venv's interpreter, named as `pip install ./python` names it: pyo3's
# build script reruns when PYO3_PYTHON changes, so a wheel built for another
# path of the same Python recompiled pyo3 and the extension (60-150 s) and the
# next `pip install ./python` did it again.
echo "wheel.sh: maturin build --release" >&2
(cd python && ../.venv/bin/maturin build --release --quiet -i "$(cd .. && pwd)/.venv/bin/python3" \
  --out "$(cd .. && realpath "$out")" >&2)
wheel=$(ls -t "$out"/warren-*.whl | head -1)
[ -n "$wheel" ] || { echo "wheel.sh: maturin wrote no wheel to $out" >&2; exit 1; }
realpath "$wheel"

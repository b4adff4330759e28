#!/usr/bin/env bash
# Makes .venv (Debian's Python is externally managed, so packages go into a
# venv) and installs warren's Python package into it, as a user does:
# `pip install ./python`, built by maturin from PyPI. With --test, also what
# the Python tests and the notebook need (pytest, nbclient, ipykernel, ruff).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x .venv/bin/python3 ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    rm -rf .venv
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "python-env.sh: installing python3-venv from Debian's packages" >&2
    $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q python3-venv
    python3 -m venv .venv
  fi
fi
pip() { .venv/bin/python3 -m pip -q --disable-pip-version-check "$@"; }
pip install "maturin>=1.5,<2" "cloudpickle>=2.2"
if [ "${1:-}" = "--test" ]; then
  pip install "pytest>=7" "nbclient>=0.7" "nbformat>=5" "ipykernel>=6" "ruff>=0.5" numpy pandas
fi
# The build uses the venv's maturin (on PATH) and the workspace's target/.
echo "python-env.sh: pip install ./python (maturin builds the Rust extension)" >&2
PATH="$PWD/.venv/bin:$PATH" pip install --no-build-isolation --force-reinstall --no-deps ./python

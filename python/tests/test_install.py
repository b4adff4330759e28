"""``pip install`` of the wheel gives a working warren with no Rust toolchain:
the wheel is built as a release is (``scripts/wheel.sh``), installed into a
new venv, and used from a PATH without cargo, as a dask user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO
from test_cluster import _gone

SCRIPT = """\
from warren import Client

def square(x):
    return x * x

client = Client()
print(sum(client.gather(client.map(square, range(10)))))
"""


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        argv, env=env, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert p.returncode == 0, f"{argv} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A new venv with the wheel installed, and an environment whose PATH
    has that venv and the system's programs, but no cargo and no warren build."""
    tmp = tmp_path_factory.mktemp("install")
    built = _run(
        ["bash", str(REPO / "scripts" / "wheel.sh"), str(tmp / "wheels")],
        dict(os.environ),
        REPO,
        900,
    ).stdout
    wheel = Path(built.strip().splitlines()[-1])
    assert wheel.name.startswith("warren-") and wheel.suffix == ".whl", built
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], dict(os.environ), tmp)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    _run([*pip, "install", str(wheel)], dict(os.environ), tmp)
    path = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    assert shutil.which("cargo", path=path) is None, f"cargo is on {path}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("WARREN_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "CARGO_HOME")
    }
    env.update(
        PATH=path,
        HOME=str(tmp / "home"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        WARREN_NAMESPACE=f"py-install-{uuid.uuid4().hex[:8]}",
    )
    env.pop("XDG_RUNTIME_DIR", None)
    (tmp / "home").mkdir()
    return venv, env


def test_the_wheel_carries_the_programs(installed: tuple[Path, dict[str, str]]) -> None:
    venv, env = installed
    for program in ("warren", "warren-scheduler", "warren-worker"):
        assert shutil.which(program, path=env["PATH"]) == str(venv / "bin" / program)
    out = _run(["warren-scheduler", "--help"], env, venv).stdout
    assert "--amqp-url" in out
    out = _run(["python", "-m", "warren", "--help"], env, venv).stdout
    assert "scheduler" in out and "worker" in out


def test_python_m_warren_up_then_the_cli(installed: tuple[Path, dict[str, str]]) -> None:
    venv, env = installed
    up = _run(["python", "-m", "warren", "up", "--workers", "1"], env, venv, 120).stdout
    try:
        assert "up: 1 scheduler and 1 workers" in up
        keys = _run(["warren", "map", "inc", "1", "2", "3"], env, venv, 60).stdout
        values = _run(["warren", "gather", "-"], env, venv, 60, stdin=keys).stdout
        assert values.split() == ["2", "3", "4"]
    finally:
        _run(["python", "-m", "warren", "down"], env, venv, 120)
    assert _gone(env["WARREN_NAMESPACE"]) == []


def test_client_starts_a_local_cluster_and_leaves_no_process(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    venv, env = installed
    ns = f"py-install-{uuid.uuid4().hex[:8]}"
    env = dict(env, WARREN_NAMESPACE=ns)
    (tmp_path / "script.py").write_text(SCRIPT)
    p = _run([str(venv / "bin" / "python"), "script.py"], env, tmp_path, 180)
    assert p.stdout.strip() == str(sum(x * x for x in range(10)))
    assert "made namespace key" in p.stderr
    assert (Path(env["XDG_CONFIG_HOME"]) / "warren" / "key").exists()
    assert _gone(ns, within=1.0) == [], "the script exited leaving processes of its cluster"

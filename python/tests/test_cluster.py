"""``LocalCluster`` and ``Client()`` starting one, as dask's do: real
processes on real RabbitMQ and Redis, and none left behind however the
client's process ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import alive

import warren


def _namespace(name: str) -> str:
    return f"py-{name}-{uuid.uuid4().hex[:8]}"


def _processes_of(namespace: str) -> list[int]:
    """Processes whose environment names the namespace: a cluster's
    scheduler, workers and their pool processes."""
    found = []
    needle = f"WARREN_NAMESPACE={namespace}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _gone(namespace: str, within: float = 15.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := _processes_of(namespace)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_local_cluster_runs_code_scales_and_stops(tmp_path: Path) -> None:
    ns = _namespace("local")
    key = tmp_path / "key"
    with warren.LocalCluster(
        n_workers=2, namespace=ns, key_file=str(key), log_dir=tmp_path / "logs"
    ) as cluster:
        assert key.exists(), "the cluster made the key its workers need"
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        assert len(cluster.workers) == 2
        assert (tmp_path / "logs" / "scheduler.log").exists()
        client = warren.Client(cluster)
        assert client.cluster is cluster
        assert client.namespace == ns
        assert client.gather(client.map(lambda x: x * x, range(10))) == [x * x for x in range(10)]
        cluster.scale(1)
        assert len(cluster.workers) == 1
        assert client.submit(sum, [1, 2, 3]).result() == 6
        cluster.scale(3)
        assert len(cluster.workers) == 3
        assert "workers=3" in repr(cluster)
        assert "warren.LocalCluster" in cluster._repr_html_()
        pids = cluster.pids
        client.close()
        assert cluster.status == "running", "a client that did not start it leaves it running"
    assert cluster.status == "closed"
    assert not [p for p in pids if alive(p)]
    assert _gone(ns) == []


def test_client_with_no_scheduler_starts_a_local_cluster_and_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WARREN_AMQP_URL", raising=False)
    ns = _namespace("auto")
    client = warren.Client(namespace=ns, key_file=str(tmp_path / "key"), n_workers=1)
    try:
        assert client.cluster is not None
        assert len(client.cluster.workers) == 1
        assert client.submit(lambda: "from a lambda").result() == "from a lambda"
        assert "Local cluster" in client._repr_html_()
        # A second client finds the scheduler serving and starts nothing.
        second = warren.Client(namespace=ns, key_file=str(tmp_path / "key"))
        assert second.cluster is None
        assert second.submit(max, [3, 9, 4]).result() == 9
    finally:
        client.close()
    assert _gone(ns) == []


def test_an_address_never_starts_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WARREN_AMQP_URL", raising=False)
    ns = _namespace("address")
    client = warren.Client("amqp://guest:guest@127.0.0.1:5672/%2f", namespace=ns)
    assert client.cluster is None
    assert _processes_of(ns) == []
    with pytest.raises(warren.UnservedFunction):
        client.submit(sum, [1, 2])


def test_a_cluster_without_a_key_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match='key_file is "none"'):
        warren.LocalCluster(n_workers=1, namespace=_namespace("nokey"), key_file="none")


def test_processes_stop_when_the_clients_process_is_killed(tmp_path: Path) -> None:
    """A SIGKILL (or a Jupyter kernel restart) runs no atexit handler: the
    lifeline pipe stops the cluster all the same."""
    ns = _namespace("lifeline")
    script = textwrap.dedent(
        f"""
        import os, signal
        from warren import Client
        client = Client(namespace={ns!r}, key_file={str(tmp_path / "key")!r}, n_workers=1)
        print(client.submit(lambda: 41 + 1).result(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = dict(os.environ, WARREN_NAMESPACE=ns)
    env.pop("WARREN_AMQP_URL", None)
    p = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == -9, p.stderr
    assert p.stdout.strip() == "42", p.stderr
    assert _gone(ns) == [], "the cluster outlived the process that started it"


@pytest.mark.parametrize(
    ("settings", "service", "address"),
    [
        ({"amqp_url": "amqp://guest:guest@127.0.0.1:1/%2f"}, "RabbitMQ", "127.0.0.1:1"),
        ({"redis_url": "redis://127.0.0.1:1/"}, "Redis", "127.0.0.1:1"),
    ],
)
def test_a_missing_service_is_named_with_the_command_that_starts_it(
    settings: dict[str, str], service: str, address: str
) -> None:
    with pytest.raises(warren.ServiceNotRunning) as e:
        warren.Client(namespace=_namespace("down"), **settings)
    assert isinstance(e.value, ConnectionError)
    message = str(e.value)
    assert f"{service} is not running at {address}" in message
    package = "rabbitmq-server" if service == "RabbitMQ" else "redis-server"
    assert f"sudo apt-get install -y {package}" in message
    assert "\n" not in message, "one message, one line"

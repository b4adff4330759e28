"""Saying which service is missing when a client cannot connect.

A first ``Client()`` on a fresh machine fails in the Rust client with an
AMQP or Redis connection error. A dask user needs one sentence instead:
which of RabbitMQ and Redis does not answer, at which address, and the
command that installs and starts it. Finding out is a TCP connect to each
address, nothing more; whatever else went wrong (a password, a vhost) keeps
its own message.
"""

from __future__ import annotations

import socket
import urllib.parse
from typing import NamedTuple

from ._warren import WarrenError

__all__ = ["Service", "ServiceNotRunning", "explain", "missing"]


class ServiceNotRunning(WarrenError, ConnectionError):
    """RabbitMQ or Redis does not answer at its address: the message names
    which, where, and the command that installs and starts it. Both a
    ``ConnectionError`` and a :class:`warren.WarrenError`."""

    __module__ = "warren"


#: Debian's packages, as broker-config/up.sh installs them.
_INSTALL = {
    "RabbitMQ": "sudo apt-get install -y rabbitmq-server && sudo service rabbitmq-server start",
    "Redis": "sudo apt-get install -y redis-server && sudo service redis-server start",
}
_SETTING = {"RabbitMQ": "amqp_url (WARREN_AMQP_URL)", "Redis": "redis_url (WARREN_REDIS_URL)"}
_LOCAL = {"127.0.0.1", "localhost", "::1", ""}


class Service(NamedTuple):
    """A service at an address: ``("RabbitMQ", "127.0.0.1", 5672)``."""

    name: str
    host: str
    port: int


def _address(name: str, url: str) -> Service | None:
    default = {"amqp": 5672, "amqps": 5671, "redis": 6379, "rediss": 6379}
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port or default.get(u.scheme)
    except ValueError:
        return None
    if port is None or u.scheme.endswith("+unix") or u.scheme == "unix":
        return None
    return Service(name, u.hostname or "127.0.0.1", port)


def _answers(s: Service, within: float) -> bool:
    try:
        with socket.create_connection((s.host, s.port), timeout=within):
            return True
    except OSError:
        return False


def missing(amqp_urls: list[str], redis_url: str, within: float = 1.0) -> list[Service]:
    """The services that refuse a TCP connection: RabbitMQ when none of its
    nodes answers, Redis when its address does not."""
    out: list[Service] = []
    nodes = [a for a in (_address("RabbitMQ", u) for u in amqp_urls) if a]
    if nodes and not any(_answers(n, within) for n in nodes):
        out.append(nodes[0])
    redis = _address("Redis", redis_url)
    if redis and not _answers(redis, within):
        out.append(redis)
    return out


def explain(down: list[Service]) -> str:
    """One message for the services in ``down``."""
    parts = []
    for s in down:
        where = f"{s.host}:{s.port}"
        if s.host in _LOCAL:
            fix = f"install and start it with `{_INSTALL[s.name]}`"
        else:
            fix = "check that it runs there and that this machine can reach that port"
        parts.append(f"{s.name} is not running at {where} (setting {_SETTING[s.name]}): {fix}")
    return "; ".join(parts)

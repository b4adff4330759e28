"""warren: dask.distributed's futures API on RabbitMQ and Redis.

>>> from warren import Client
>>> client = Client()                                  # settings as the warren CLI
>>> n = client.submit("count_primes_less_than", 5000)  # a stock Rust function
>>> n.result()
669

Any function runs on Python workers: one defined anywhere travels as code,
signed with the namespace key (``warren key new``), to workers started with
``python -m warren worker --accept-code``; a ``@task`` function of a module
the workers import travels by name.
"""

from ._client import CancelledError, Client, Future, TaskLogs
from ._cluster import LocalCluster
from ._coordination import Event, Lock, Queue, Semaphore, Variable
from ._errors import KilledWorker, TaskError, UnservedFunction, WarrenError
from ._progress import progress
from ._services import ServiceNotRunning
from ._task import Task, registration, task
from ._task_client import get_client, rejoin, secede, worker_client
from ._waiting import DoneAndNotDoneFutures, as_completed, fire_and_forget, wait
from ._warren import BadSignature

__all__ = [
    "BadSignature",
    "CancelledError",
    "Client",
    "DoneAndNotDoneFutures",
    "Event",
    "Future",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "Queue",
    "Semaphore",
    "ServiceNotRunning",
    "Task",
    "TaskError",
    "TaskLogs",
    "UnservedFunction",
    "Variable",
    "WarrenError",
    "as_completed",
    "fire_and_forget",
    "get_client",
    "progress",
    "registration",
    "rejoin",
    "secede",
    "task",
    "wait",
    "worker_client",
]
__version__ = "0.1.0"

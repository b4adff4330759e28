"""warren: dask.distributed's futures API on RabbitMQ and Redis.

>>> from warren import Client
>>> client = Client()                                  # settings as the warren CLI
>>> n = client.submit("count_primes_less_than", 5000)  # a stock Rust function
>>> n.result()
669

Python functions run on Python workers: decorate them with ``@task`` in a
module, start ``python -m warren worker MODULE``, and submit them.
"""

from ._client import CancelledError, Client, Future, as_completed, wait
from ._errors import KilledWorker, TaskError, UnservedFunction, WarrenError
from ._progress import progress
from ._task import Task, registration, task

__all__ = [
    "CancelledError",
    "Client",
    "Future",
    "KilledWorker",
    "Task",
    "TaskError",
    "UnservedFunction",
    "WarrenError",
    "as_completed",
    "progress",
    "registration",
    "task",
    "wait",
]
__version__ = "0.1.0"

"""The Celery app of warren-compare: one no-op task, RabbitMQ broker, Redis
results, on the local services (the queue and Redis database come from the
environment so a run does not meet another's messages)."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "warren_compare",
    broker=os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("CELERY_BACKEND", "redis://127.0.0.1:6379/15"),
)
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "warren-compare")
app.conf.worker_prefetch_multiplier = 4
app.conf.broker_connection_retry_on_startup = True


@app.task
def inc(x: int) -> int:
    return x + 1

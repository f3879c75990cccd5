"""The names producers publish to: part of the public contract, importable without Celery."""

from __future__ import annotations

QUEUE = "zns"
TASK_NAME = "zns.send_journey_step"
#: Several steps in one message: what bulk enqueue publishes (tasks/batch.py).
BATCH_TASK_NAME = "zns.send_journey_steps"

"""A producer's own Celery app, as a billing team would run it: one task that receives the result
dict of a journey step through `link=` and writes it to Redis for the test to read."""

from __future__ import annotations

import json
from typing import Any

import redis
from celery import Celery

from worker.settings import load_settings

CALLBACK_QUEUE = "zns-callbacks"
CALLBACK_TASK = "tests.record_result"
RESULTS_KEY = "test:callback-results"

settings = load_settings()
app = Celery("callbacks", broker=settings.redis_url)
app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=CALLBACK_QUEUE)


@app.task(name=CALLBACK_TASK)
def record_result(result: dict[str, Any]) -> None:
    """Keep what the linked step returned."""
    client = redis.Redis.from_url(settings.redis_url)
    client.rpush(RESULTS_KEY, json.dumps(result))
    client.close()

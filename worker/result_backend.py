"""Celery's Redis result backend, made unable to block a job when the state Redis is down.

Celery writes a result (SUCCESS, RETRY, FAILURE) before it acks the message. If that write raises,
the exception escapes Celery's trace: the message is neither acked nor rejected, and with a
RabbitMQ broker the worker's prefetch slots fill with such messages until it consumes nothing.
A result is a convenience for producers; the step's real state is kept by our own Lua scripts.
So a write that cannot reach Redis is retried for a few seconds (a restart takes that long),
then logged and dropped, and the message is settled as usual.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError

from worker import metrics

log = logging.getLogger(__name__)
#: `module:Class+` prefix of a result backend URL: Celery's way to name a backend class.
BACKEND_PREFIX = "worker.result_backend:ResilientRedisBackend+"
#: How long one write keeps trying: longer than a Redis restart, far below the claim ttl.
STORE_BUDGET_S = 5.0
FIRST_PAUSE_S = 0.1
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError, BackendStoreError)


def backend_url(redis_url: str) -> str:
    """The `result_backend` setting for a state Redis URL."""
    return BACKEND_PREFIX + redis_url


class ResilientRedisBackend(RedisBackend):
    """`store_result` never raises because Redis is unreachable; everything else is Celery's."""

    store_budget_s = STORE_BUDGET_S

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Store, retrying with backoff within the budget; then log, count and drop."""
        deadline = time.monotonic() + self.store_budget_s
        pause = FIRST_PAUSE_S
        while True:
            try:
                return super().store_result(task_id, result, state, traceback, request, **kwargs)
            except _UNREACHABLE as exc:
                if time.monotonic() + pause > deadline:
                    return _dropped(task_id, state, exc, result)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def set(self, key: str, value: Any, expires: float | None = None, **policy: Any) -> Any:
        """One attempt (kombu would retry each write for ~20 s): `store_result` owns retrying.
        Reading results (producers waiting on them) keeps Celery's reconnecting behaviour."""
        return super().set(key, value, expires, **{**policy, "max_retries": 0})  # type: ignore[call-arg]  # stub lacks them


def _dropped(task_id: str, state: str, exc: BaseException, result: Any) -> Any:
    metrics.RESULTS_NOT_STORED.labels(state).inc()
    log.warning(
        "result %s of task %s not stored: state Redis unreachable (%s)",
        state,
        task_id,
        type(exc).__name__,
    )
    return result

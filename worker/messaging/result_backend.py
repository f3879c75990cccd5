"""Celery's Redis result backend, written in one round trip and never able to block a job.

Producers read results exactly as with Celery's own backend (`AsyncResult(id).get()`, same key,
same JSON, same pub/sub channel): only the write changes.

- **One round trip.** Celery reads the stored state (GET) and then writes it
  (MULTI/SETEX/PUBLISH/EXEC) so that a SUCCESS is never overwritten; `store_result.lua` does both
  in one atomic call.
- **Never blocks a job.** Celery writes a result (SUCCESS, RETRY, FAILURE) before it acks the
  message. If that write raises, the exception escapes Celery's trace: the message is neither
  acked nor rejected, and with a RabbitMQ broker the worker's prefetch slots fill with such
  messages until it consumes nothing. A result is a convenience for producers; the step's real
  state is kept by our own Lua scripts. So a write that cannot reach Redis is retried for a few
  seconds (a restart takes that long), then logged, counted and dropped.

Selected by `backend_url()` (`worker.messaging.result_backend:ResultBackend+redis://…`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

from worker import metrics
from worker.state.scripts import Script, register, run_pipelined

log = logging.getLogger(__name__)
BACKEND = "worker.messaging.result_backend:ResultBackend"
#: How long one write keeps trying: longer than a Redis restart, far below the claim ttl.
STORE_BUDGET_S = 5.0
FIRST_PAUSE_S = 0.1
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError, BackendStoreError)


def backend_url(redis_url: str) -> str:
    """The `result_backend` setting for our backend on `redis_url`."""
    return f"{BACKEND}+{redis_url}"


class ResultBackend(RedisBackend):
    """RedisBackend whose task-state write is one Lua call and never raises for an unreachable
    Redis."""

    # Set by Celery's backend __init__; not in the celery-types stubs.
    expires: float | None
    failure_expires: float | None
    _script: Script | None = None
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

    def store_many(self, results: Sequence[tuple[str, Any]]) -> None:
        """The SUCCESS results of several tasks (a batch's steps) in one round trip, with the
        same retry budget and drop rule as `store_result`."""
        deadline = time.monotonic() + self.store_budget_s
        pause = FIRST_PAUSE_S
        while results:
            try:
                self._store_pipelined(results)
                return
            except _UNREACHABLE as exc:
                if time.monotonic() + pause > deadline:
                    for task_id, result in results:
                        _dropped(task_id, states.SUCCESS, exc, result)
                    return
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **_: Any,
    ) -> Any:
        # One attempt here, not kombu's `ensure` (it would retry for ~20 s; with no retries it is
        # only a costly wrapper): `store_result` owns retrying.
        metrics.RESULT_ROUND_TRIPS.inc()
        keys, args = self._keys_args(task_id, result, state, traceback, request)
        self._script_for(self.client)(keys=keys, args=args)
        return result

    def _store_pipelined(self, results: Sequence[tuple[str, Any]]) -> None:
        script = self._script_for(self.client)
        calls = [
            (script, *self._keys_args(task_id, result, states.SUCCESS))
            for task_id, result in results
        ]
        metrics.RESULT_ROUND_TRIPS.inc()
        run_pipelined(self.client, calls)

    def _keys_args(
        self, task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None
    ) -> tuple[list[str], list[Any]]:
        """store_result.lua's KEYS and ARGV: the meta as Celery encodes it, and its expiry."""
        key = self._key(task_id)
        meta: dict[str, Any] = self._get_result_meta(  # type: ignore[attr-defined]  # not stubbed
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = self.failure_expires if state == states.FAILURE else self.expires
        return store_result_args(key, meta_json=value, expires_s=int(expires or 0))

    def _key(self, task_id: str) -> str:
        return bytes_to_str(self.get_key_for_task(task_id))

    def _script_for(self, client: redis.Redis) -> Script:
        if self._script is None:
            self._script = register(client, "store_result", package="worker.messaging")
        return self._script


def store_result_args(
    result_key: str, *, meta_json: str | bytes, expires_s: int
) -> tuple[list[str], list[Any]]:
    """store_result.lua's KEYS and ARGV (expires_s 0: no expiry)."""
    return [result_key], [meta_json, expires_s]


def _dropped(task_id: str, state: str, exc: BaseException, result: Any) -> Any:
    metrics.RESULTS_NOT_STORED.labels(state).inc()
    log.warning(
        "result %s of task %s not stored: state Redis unreachable (%s)",
        state,
        task_id,
        type(exc).__name__,
    )
    return result

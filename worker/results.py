"""Celery's Redis result backend with a task's result stored in one round trip instead of two.

Producers read results exactly as before (`AsyncResult(id).get()`, same key, same JSON, same
pub/sub channel): only the write changes. Celery reads the stored state (GET) and then writes it
(MULTI/SETEX/PUBLISH/EXEC) so that a SUCCESS is never overwritten; `store_result.lua` does both
in one atomic call. Selected by `result_backend_url` (`worker.results:ResultBackend+redis://…`).
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

from worker.scripts import Script, register

BACKEND = "worker.results:ResultBackend"


def result_backend_url(redis_url: str) -> str:
    """The `result_backend` setting for our backend on `redis_url`."""
    return f"{BACKEND}+{redis_url}"


class ResultBackend(RedisBackend):
    """RedisBackend whose task-state write is one Lua call."""

    # Set by Celery's backend __init__; not in the celery-types stubs.
    expires: float | None
    failure_expires: float | None
    _script: Script | None = None

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **_: Any,
    ) -> Any:
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
        key = bytes_to_str(self.get_key_for_task(task_id))
        self.ensure(self._store, (key, value, int(expires or 0)))
        return result

    def _store(self, key: str, value: str, expires_s: int) -> None:
        if self._script is None:
            self._script = register(self.client, "store_result")
        self._script(keys=[key], args=[value, expires_s])

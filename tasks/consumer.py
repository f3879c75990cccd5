"""A Celery consumer that dead-letters messages Celery would otherwise drop with a log line:
undecodable bodies (garbage JSON), unknown task names and malformed task messages."""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from vine import promise

from tasks.app import runtime
from tasks.envelope import envelope_problem
from worker.errors import ErrorClass

log = logging.getLogger(__name__)
MAX_RAW_BODY = 65_536


def _raw(message: Any) -> dict[str, Any]:
    body = message.body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    entry: dict[str, Any] = {
        "raw_body": text[:MAX_RAW_BODY],
        "content_type": message.content_type,
        "headers": {k: str(v)[:200] for k, v in (message.headers or {}).items()},
    }
    if len(text) > MAX_RAW_BODY:
        entry["raw_body_truncated_from"] = len(text)
    return entry


def _store(reason: str, message: Any) -> bool:
    """Keep a malformed message; False when the store is unreachable (then it stays unacked)."""
    try:
        entry = runtime().dead_letters.add(
            reason=reason, error_class=ErrorClass.MALFORMED_MESSAGE, code=None, kwargs=_raw(message)
        )
    except Exception:
        log.exception("could not dead-letter a malformed message; leaving it unacked")
        return False
    log.error("malformed message dead-lettered (%s): %s", entry.id, reason)
    return True


class DeadLetteringConsumer(Consumer):
    """Celery's consumer, with malformed messages kept as dead letters."""

    def create_task_handler(self, promise: Any = promise) -> Any:
        """Celery's handler, behind a check of the envelope (tasks/envelope.py)."""
        handler = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            try:
                problem = envelope_problem(message)
            except Exception:  # an undecodable body: Celery's `on_decode_error` path keeps it
                problem = None
            if problem is None:
                return handler(message)
            if _store(f"malformed task message: {problem}", message):
                message.ack_log_error(log, getattr(self, "connection_errors", ()))
            return None

        return on_task_received

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        """Garbage body: keep it, then ack (as Celery does) so it does not loop."""
        if _store(f"undecodable message: {type(exc).__name__}: {str(exc)[:200]}", message):
            super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        """A message without task headers."""
        if _store("message is not a Celery task message", message):
            super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task name this worker does not know."""
        if _store(f"unknown task: {str(exc)[:200]}", message):
            super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task message Celery cannot parse."""
        if _store(f"invalid task message: {str(exc)[:200]}", message):
            super().on_invalid_task(body, message, exc)

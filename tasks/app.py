"""The Celery app instance (`celery -A tasks.app`) and this process's runtime."""

from __future__ import annotations

import threading
from typing import Any

from celery.signals import setup_logging

from worker.celery_app import create_celery
from worker.logs import configure_logging
from worker.runtime import Runtime, build_runtime
from worker.settings import load_settings

settings = load_settings()
app = create_celery(settings)

_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, built on first use (after any fork)."""
    global _runtime  # noqa: PLW0603 (one per process, by design)
    if _runtime is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = build_runtime(settings)
    return _runtime


@setup_logging.connect
def _logging(loglevel: str | int | None = None, **_: Any) -> None:
    """Our logging instead of Celery's: JSON lines (or text on a terminal), masked phones."""
    configure_logging(
        fmt=settings.log_format,
        level=loglevel or settings.log_level,
        task_lines=settings.log_task_lines,
    )

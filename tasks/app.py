"""The Celery app instance (`celery -A tasks.app`) and this process's runtime."""

from __future__ import annotations

import logging
import threading

from worker.celery_app import create_celery
from worker.runtime import Runtime, build_runtime
from worker.settings import load_settings

# One INFO line per HTTP call (httpx's default) would drown the task lines at 500k jobs.
logging.getLogger("httpx").setLevel(logging.WARNING)

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

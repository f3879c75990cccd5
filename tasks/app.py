"""The Celery app instance (`celery -A tasks.app`) and this process's runtime."""

from __future__ import annotations

import gc
import threading
from typing import Any

from celery.signals import setup_logging, worker_ready

from worker.logs import configure_logging
from worker.messaging.celery_app import create_celery
from worker.ops.malloc import tune_malloc
from worker.runtime import Runtime, build_runtime
from worker.settings import load_settings

settings = load_settings()
app = create_celery(settings)

#: Allocations between young-generation collections (CPython's default: 700). Each step allocates
#: thousands of short-lived objects that reference counting frees anyway; at the default the
#: collector ran several times per step and took ~3% of a worker's CPU under load.
GC_YOUNG_THRESHOLD = 20_000

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


@worker_ready.connect
def _tune_memory_soon(**_: Any) -> None:
    """Tune memory on a thread of its own: the full collection takes ~50 ms, and this signal
    holds the consumer's loop, so the first job would wait for it."""
    threading.Thread(target=_tune_memory, name="zns-tune-memory", daemon=True).start()


def _tune_memory() -> None:
    """Once the worker is up: leave what start-up built out of every later collection
    (`gc.freeze`), collect the young generation less often, and map large buffers
    (worker/ops/malloc.py)."""
    tune_malloc()
    gc.collect()
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)

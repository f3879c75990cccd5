"""The result backend against a real redis-server that goes away: a write that cannot reach
Redis must come back (dropped and counted) instead of raising into Celery's trace."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from celery import Celery

from worker import metrics
from worker.messaging.result_backend import ResultBackend, backend_url
from zns_dev.localrun import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def _backend(url: str, budget_s: float) -> ResultBackend:
    app = Celery("t", backend=backend_url(url), set_as_current=False)
    backend = app.backend
    assert isinstance(backend, ResultBackend)
    backend.store_budget_s = budget_s
    return backend


def _dropped(state: str) -> float:
    return float(metrics.RESULTS_NOT_STORED.labels(state)._value.get())


def test_a_result_is_stored_while_redis_is_up(server: RedisServer) -> None:
    backend = _backend(server.url, budget_s=1.0)
    backend.store_result("t-1", {"status": "sent"}, "SUCCESS")
    assert backend.get_task_meta("t-1")["result"] == {"status": "sent"}


def test_a_write_redis_cannot_take_is_dropped_within_the_budget(server: RedisServer) -> None:
    backend = _backend(server.url, budget_s=1.0)
    backend.store_result("t-0", {"status": "sent"}, "SUCCESS")  # connected before the outage
    server.stop()
    before = _dropped("RETRY")
    started = time.monotonic()
    backend.store_result("t-2", None, "RETRY")  # must not raise
    elapsed = time.monotonic() - started
    assert _dropped("RETRY") == before + 1
    assert 0.5 < elapsed < 5.0  # it did keep trying, within its budget


def test_a_write_during_a_short_restart_is_stored(server: RedisServer) -> None:
    backend = _backend(server.url, budget_s=10.0)
    backend.store_result("t-0", {"status": "sent"}, "SUCCESS")
    server.stop()
    restart = threading.Timer(1.0, server.start)  # same port, same arguments
    restart.start()
    backend.store_result("t-3", {"status": "sent"}, "SUCCESS")
    restart.join()
    assert backend.get_task_meta("t-3")["status"] == "SUCCESS"

"""The worker process's background loops (tasks/lifecycle.py) outlive any failing pass."""

from __future__ import annotations

import threading

import pytest
import redis

from tasks import lifecycle


def test_a_loop_goes_on_after_a_failing_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "FAILED_PASS_PAUSE_S", 0.01)
    passes: list[int] = []

    def work() -> bool:
        passes.append(1)
        if len(passes) < 3:
            raise redis.ConnectionError("Redis is restarting")  # not an OSError
        lifecycle._stop.set()
        return False

    lifecycle._stop.clear()
    thread = threading.Thread(target=lifecycle._every, args=("test", 0.01, work))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(passes) == 3

"""Scenario 2: SIGTERM during load, then a restart (a rolling deploy of the worker pods)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tests.chaos.harness import Chaos, make_steps
from tests.chaos.report import Row
from zns_dev.sandbox.config import SandboxConfig

#: Kubernetes' default terminationGracePeriodSeconds: a worker must be gone well within it.
POD_GRACE_S = 30.0


def test_sigterm_during_load_then_restart_loses_and_repeats_nothing(
    new_chaos: Callable[..., Chaos],
    size: Callable[[int, int], int],
    record: Callable[[Row], None],
) -> None:
    # Given two workers and a sandbox answering in 20 ms
    chaos = new_chaos(sandbox=SandboxConfig(port=0, latency_ms=20))
    for _ in range(2):
        chaos.start_worker(concurrency=16)
    steps = make_steps("term", size(400, 2000))
    # When the steps are enqueued and each worker in turn gets SIGTERM mid-run and is replaced
    started = time.monotonic()
    task_ids = chaos.enqueue(steps)
    shutdowns = []
    for fraction, victim in ((0.3, 0), (0.6, 1)):
        chaos.wait_sends(int(len(steps) * fraction), timeout_s=120)
        worker = chaos.workers[victim]
        stop_started = time.monotonic()
        worker.stop(timeout_s=POD_GRACE_S)
        shutdowns.append(time.monotonic() - stop_started)
        chaos.start_worker(concurrency=16)
    # Then everything drains without waiting for a redelivery (nothing was left unacked)
    drain_s = chaos.wait_drained(steps, timeout_s=180, started_at=started)
    counts = chaos.tally(steps, task_ids)
    notes = f"SIGTERM x2, exits in {max(shutdowns):.1f}s max"
    record(Row.from_tally("graceful SIGTERM + restart", "", counts, drain_s, notes=notes))
    assert math.isfinite(drain_s), chaos.undrained
    assert counts.lost == 0, counts.lost_keys[:10]
    assert counts.sent_twice == 0, counts.duplicate_keys[:10]
    assert counts.dead_lettered == 0
    assert counts.failed_results == 0
    assert max(shutdowns) < POD_GRACE_S
    # A job requeued by a warm shutdown goes out at once, not after the visibility timeout
    assert drain_s < chaos.settings.celery.visibility_timeout_s

"""Scenario 4: Zalo misbehaving under load, and the one duplicate window that cannot be closed.

Faults hit every Zalo call (get-token, send, quota), decided per call by the sandbox's seeded dice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tests.chaos.harness import Chaos, make_steps
from tests.chaos.report import Row
from zns_dev.sandbox.config import SandboxConfig

SEED = 7


def test_zalo_faults_under_load_lose_and_repeat_nothing(
    new_chaos: Callable[..., Chaos],
    size: Callable[[int, int], int],
    record: Callable[[Row], None],
) -> None:
    # Given Zalo answering 10% -100, 5% HTTP 5xx, 5% HTTP 429, dropping 2% of connections
    # unanswered (nothing processed) and stalling 1% of calls for 2 seconds
    faults = SandboxConfig(
        port=0,
        latency_ms=5,
        fault_100=0.10,
        fault_5xx=0.05,
        fault_429=0.05,
        fault_drop=0.02,
        stall_rate=0.01,
        stall_ms=2000,
        seed=SEED,
    )
    chaos = new_chaos(sandbox=faults)
    for _ in range(2):
        chaos.start_worker(concurrency=16)
    steps = make_steps("fault", size(300, 2000))
    # When the steps are enqueued
    started = time.monotonic()
    task_ids = chaos.enqueue(steps)
    drain_s = chaos.wait_drained(steps, timeout_s=300, started_at=started)
    # Then each is sent exactly once, none lost, none given up on
    counts = chaos.tally(steps, task_ids)
    stats = chaos.control.stats()
    hits = ", ".join(f"{name} {n}" for name, n in sorted(stats.faults.items()))
    record(
        Row.from_tally(
            "Zalo faults (-100/5xx/429/drop/stall)",
            "",
            counts,
            drain_s,
            notes=f"{sum(stats.calls.values())} calls; faults: {hits}",
            details={"faults": stats.faults, "calls": stats.calls, **chaos.journey_figures(steps)},
        )
    )
    assert math.isfinite(drain_s), chaos.undrained
    assert counts.lost == 0, counts.lost_keys[:10]
    assert counts.sent_twice == 0, counts.duplicate_keys[:10]
    assert counts.dead_lettered == 0
    assert counts.failed_results == 0
    # And no journey was bought twice: a failed get-token was never processed by Zalo
    assert stats.journey_tokens_used == len({s.job["journey"] for s in steps})


def test_answer_lost_after_zalo_accepted_is_the_one_duplicate_window(
    new_chaos: Callable[..., Chaos],
    size: Callable[[int, int], int],
    record: Callable[[Row], None],
) -> None:
    # Given Zalo processes 2% of sends and then drops the connection before answering
    # (what a worker sees when it dies, or its network fails, between Zalo's accept and our
    # `sent` record)
    chaos = new_chaos(
        sandbox=SandboxConfig(port=0, latency_ms=5, fault_drop_after_send=0.02, seed=SEED)
    )
    for _ in range(2):
        chaos.start_worker(concurrency=16)
    steps = make_steps("das", size(300, 2000))
    # When the steps are enqueued
    started = time.monotonic()
    task_ids = chaos.enqueue(steps)
    drain_s = chaos.wait_drained(steps, timeout_s=300, started_at=started)
    counts = chaos.tally(steps, task_ids)
    windows = chaos.control.stats().faults.get("drop_after_send", 0)
    record(
        Row.from_tally(
            "answer lost after accept (2% drop-after-send)",
            "",
            counts,
            drain_s,
            notes=f"{windows} answers lost -> {counts.extra_sends} extra sends "
            f"({100 * counts.extra_sends / len(steps):.1f}% of steps)",
            details={"answers_lost": windows, **chaos.journey_figures(steps)},
        )
    )
    # Then nothing is lost, and every lost answer cost exactly one extra message: the worker
    # cannot tell "Zalo never got it" from "Zalo sent it", and resends rather than lose it
    assert math.isfinite(drain_s), chaos.undrained
    assert counts.lost == 0, counts.lost_keys[:10]
    assert counts.dead_lettered == 0
    assert counts.extra_sends == windows
    assert windows > 0

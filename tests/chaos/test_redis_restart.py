"""Scenario 3: the Redis that is both the state store and the broker restarts mid-run.

Three ways to go down, AOF `everysec` in each:
- restart (SIGTERM): Redis writes and fsyncs its AOF before exiting; nothing may be lost;
- kill -9 of redis-server: every write had reached the kernel's page cache (Redis writes the AOF
  before answering), so nothing may be lost either;
- host crash: what `everysec` does not cover, the writes of the last second not yet fsynced. A
  real power cut cannot be staged here, so it is simulated exactly: the AOF directory is copied
  one second before redis-server is killed, and Redis restarts from that copy.

A producer keeps enqueueing through the outage (retrying a batch that failed, as a billing app
would), and the workers must reconnect by themselves and resume within 10 seconds.

A step caught in flight fails on its Redis call; the consumer, which lost the same Redis as its
broker, puts the message back; the step's claim, which could not be released, holds it back
until the claim expires. These scenarios therefore run with shortened, mutually consistent
timeouts (`SHORT_TIMEOUTS`: claim 15 s instead of 150 s); the delays they measure scale with
the claim ttl. With a separate broker (RabbitMQ) the same failure loses the step: see
test_regressions.py.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.chaos.harness import SHORT_TIMEOUTS, Chaos, Step, make_steps
from tests.chaos.report import Row
from worker.producer import Producer
from zns_dev.sandbox.config import SandboxConfig

RESUME_BOUND_S = 10.0
WORKERS = 2
RESUMED_AFTER_SENDS = 50  # "resumed": this many sends after Redis is back
EVERYSEC_WINDOW_S = 1.0
BATCH = 40
FEED_PAUSE_S = 0.15
FEED_DEADLINE_S = 240.0


@dataclass
class Feeder:
    """Enqueues steps in batches on its own thread; a failed batch is retried whole (the keys
    make a repeat harmless). Records when each step was accepted."""

    chaos: Chaos
    steps: list[Step]
    pause_s: float = FEED_PAUSE_S
    accepted_at: dict[str, float] = field(default_factory=dict)
    task_ids: list[str] = field(default_factory=list)
    failures: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(FEED_DEADLINE_S + 10)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        producer = Producer(self.chaos.settings)
        deadline = time.monotonic() + FEED_DEADLINE_S
        try:
            for i in range(0, len(self.steps), BATCH):
                batch = self.steps[i : i + BATCH]
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the feeder could not enqueue within its deadline")
                    try:
                        report = producer.enqueue_many([s.job for s in batch])
                    except Exception:  # the broker is down: a billing app retries the batch
                        self.failures += 1
                        time.sleep(0.5)
                        continue
                    break
                accepted = time.time()
                self.task_ids.extend(report.task_ids)
                self.accepted_at.update((s.key, accepted) for s in batch)
                time.sleep(self.pause_s)
        except BaseException as exc:
            self.error = exc


def _task_ids_of(steps: list[Step], task_ids: list[str], keys: list[str]) -> list[str]:
    """The task ids of these steps (the feeder enqueues in order): to find them in worker logs."""
    by_key = {step.key: task_id for step, task_id in zip(steps, task_ids, strict=False)}
    return [by_key.get(key, "?") for key in keys]


def restart_gracefully(chaos: Chaos) -> float:
    """SIGTERM (Redis fsyncs its AOF and exits), start again; returns when it went down."""
    down_at = time.time()
    chaos.redis_server.stop()
    chaos.redis_server.start()
    return down_at


def down_for_two_seconds(chaos: Chaos) -> float:
    """SIGTERM, two seconds without Redis (a failover, a slow restart), start again."""
    down_at = time.time()
    chaos.redis_server.stop()
    time.sleep(2.0)
    chaos.redis_server.start()
    return down_at


def kill_and_restart(chaos: Chaos) -> float:
    """SIGKILL redis-server, start again from its AOF."""
    process = chaos.redis_server.process
    assert process is not None
    down_at = time.time()
    process.kill()
    process.wait(10)
    chaos.redis_server.start()
    return down_at


def host_crash(chaos: Chaos) -> float:
    """Lose the last second of writes: copy the AOF, let a second of work go by, kill, and start
    from the copy. Returns the time of the copy (what a power cut keeps)."""
    aof = chaos.workdir / "appendonlydir"
    copy = chaos.workdir / "aof-at-crash"
    kept_at = time.time()
    shutil.copytree(aof, copy)
    time.sleep(EVERYSEC_WINDOW_S)
    process = chaos.redis_server.process
    assert process is not None
    process.kill()
    process.wait(10)
    shutil.rmtree(aof)
    copy.rename(aof)
    chaos.redis_server.start()
    return kept_at


def run_restart(
    chaos: Chaos,
    steps: list[Step],
    outage: Callable[[Chaos], float],
    *,
    at_fraction: float,
    feed_pause_s: float,
) -> tuple[Feeder, float, float, float]:
    """Feed the run, take Redis down at `at_fraction` of the sends; returns (feeder, cut-off,
    back-at, resume seconds)."""
    for _ in range(WORKERS):
        chaos.start_worker(concurrency=16)
    feeder = Feeder(chaos, steps, pause_s=feed_pause_s).start()
    chaos.wait_sends(int(len(steps) * at_fraction), timeout_s=180)
    cut_off = outage(chaos)
    back_at = time.time()
    # Resumed: the RESUMED_AFTER_SENDS-th send after Redis is back (inf: never, within 120 s)
    with contextlib.suppress(AssertionError, TimeoutError):  # wait_until's timeout
        chaos.wait_sends(chaos.sends() + RESUMED_AFTER_SENDS, timeout_s=120)
    later = sorted(t for m in chaos.control.messages() if (t := m.sent_time_ms / 1000) >= back_at)
    resume_s = (
        later[RESUMED_AFTER_SENDS - 1] - back_at if len(later) >= RESUMED_AFTER_SENDS else math.inf
    )
    feeder.join()
    return feeder, cut_off, back_at, resume_s


def scenario(
    new_chaos: Callable[..., Chaos],
    count: int,
    name: str,
    outage: Callable[[Chaos], float],
    *,
    at_fraction: float = 0.4,
    feed_pause_s: float = FEED_PAUSE_S,
    may_lose: bool = True,
    broker_url: str | None = None,
    broker_idle: Callable[[], bool] | None = None,
    latency_ms: int = 20,
    drain_timeout_s: float = 240,
    env: dict[str, str] | None = None,
) -> tuple[Row, Feeder, float]:
    """One restart scenario; returns the row, the feeder and the cut-off time."""
    chaos = new_chaos(
        sandbox=SandboxConfig(port=0, latency_ms=latency_ms),
        appendonly=True,
        broker_url=broker_url,
        env={**SHORT_TIMEOUTS, **(env or {})},
    )
    steps = make_steps(name.split(maxsplit=1)[0].lower(), count)
    started = time.monotonic()
    feeder, cut_off, back_at, resume_s = run_restart(
        chaos, steps, outage, at_fraction=at_fraction, feed_pause_s=feed_pause_s
    )
    drain_s = chaos.wait_drained(
        steps,
        timeout_s=drain_timeout_s,
        started_at=started,
        broker_idle=broker_idle,
        all_accounted=not may_lose,
    )
    counts = chaos.tally(steps, feeder.task_ids)
    accepted_before = {k for k, t in feeder.accepted_at.items() if t < cut_off}
    row = Row.from_tally(
        name,
        "",
        counts,
        drain_s,
        notes=f"resumed {resume_s:.1f}s after Redis was back; lost: "
        f"{len(set(counts.lost_keys) & accepted_before)} accepted before the cut-off, "
        f"{len(set(counts.lost_keys) - accepted_before)} after",
        details={
            "resume_s": round(resume_s, 2) if math.isfinite(resume_s) else None,
            "down_for_s": round(back_at - cut_off, 2),
            "accepted_before_cutoff": len(accepted_before),
            "lost_accepted_before_cutoff": sorted(set(counts.lost_keys) & accepted_before),
            "lost_keys": counts.lost_keys,
            "lost_task_ids": _task_ids_of(steps, feeder.task_ids, counts.lost_keys),
            "lost_accepted_s_before_cutoff": [
                round(cut_off - feeder.accepted_at.get(k, math.inf), 2) for k in counts.lost_keys
            ],
            "duplicate_task_ids": _task_ids_of(steps, feeder.task_ids, counts.duplicate_keys),
            "producer_retries": feeder.failures,
            "undrained": chaos.undrained,
            **chaos.journey_figures(steps),
        },
    )
    return row, feeder, cut_off


@pytest.mark.chaos_full
def test_redis_restart_mid_run(
    new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given a run being fed through the producer, when Redis restarts at 40% (SIGTERM, AOF)
    row, _, _ = scenario(new_chaos, 2000, "Redis restart (SIGTERM, AOF)", restart_gracefully)
    record(row)
    # Then the workers resume by themselves within 10 s, nothing is sent twice, and nothing is
    # lost, not even a message whose pop was in flight as Redis stopped (docs/reliability.md,
    # the reliable pop)
    assert math.isfinite(row.drain_s), row.details["undrained"]
    assert (row.details["resume_s"] or math.inf) <= RESUME_BOUND_S
    assert row.lost == 0, row.details["lost_keys"][:10]
    assert row.sent_twice == 0
    assert row.dead_lettered == 0


@pytest.mark.chaos_full
def test_redis_kill_9_mid_run(
    new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given a run being fed, when redis-server is killed -9 at 40% and restarted from its AOF
    row, _, _ = scenario(new_chaos, 2000, "Redis kill -9 + restart (AOF)", kill_and_restart)
    record(row)
    # Then the same: the AOF had every write (page cache), the workers resume within 10 s
    assert math.isfinite(row.drain_s), row.details["undrained"]
    assert (row.details["resume_s"] or math.inf) <= RESUME_BOUND_S
    assert row.lost == 0, row.details["lost_keys"][:10]
    assert row.dead_lettered == 0


@pytest.mark.chaos_full
@pytest.mark.timeout(900)
def test_redis_host_crash_loses_at_most_the_everysec_window(
    new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given a run fed faster than it is sent (a backlog builds up), when the Redis host crashes
    # at 25% and the last second of AOF writes is gone
    row, _, _ = scenario(
        new_chaos,
        2000,
        "Redis host crash (last 1 s of AOF lost)",
        host_crash,
        at_fraction=0.25,
        feed_pause_s=0.05,
    )
    record(row)
    # Then the workers resume within 10 s; what was accepted before the window is not lost;
    # duplicates (sends whose `sent` record was in the lost second) are counted, not excluded
    assert math.isfinite(row.drain_s), row.details["undrained"]
    assert (row.details["resume_s"] or math.inf) <= RESUME_BOUND_S
    assert row.details["lost_accepted_before_cutoff"] == []

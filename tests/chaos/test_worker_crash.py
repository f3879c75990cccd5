"""Scenarios 1 and 6: `kill -9` worker processes three times during a 2,000-step run, with a Redis
broker and with a RabbitMQ broker; and each of two workers killed once during 1,000 steps (Redis
broker, the kill points drawn from `CHAOS_SEED`).

What a killed worker held:
- Redis broker: its messages stay in kombu's `unacked` hash until a *live* worker's periodic sweep
  (`restore_visible`) finds them older than the visibility timeout (240 s) and puts them back. A
  restarted worker sweeps once at start, but then nothing is that old yet, so it is the sweeps of
  whoever is alive that bring them back. The last kill here is not replaced, to show it.
- RabbitMQ: the broker requeues them as soon as the connection drops; the job's idempotency claim
  (ttl 150 s) then holds it back until it expires, so nobody sends it while the dead worker might
  have.
A duplicate is possible only for a job the dead worker held (Zalo accepted it, the worker died
before recording `sent`); the scenario checks exactly that and counts them.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.chaos.harness import (
    Chaos,
    Step,
    make_steps,
    rabbitmq_idle,
    restore_sweep_period_s,
)
from tests.chaos.report import Row
from tests.rabbitmq import RABBITMQ_URL
from zns_dev.sandbox.config import SandboxConfig

KILLS = 3
SEED = 20261126
#: The issue's bound: a killed worker's jobs go out within 5 minutes.
HELD_JOBS_BOUND_S = 300.0
#: Live workers ack in milliseconds (retry countdowns here are <= 1 s): what a dead worker held
#: is what is still held this long after the kill.
SETTLE_S = 4.0


@dataclass
class Kill:
    """One kill -9: when, and which jobs the dead worker was holding."""

    at_epoch_s: float
    held_keys: set[str] = field(default_factory=set)


def held_by_dead_redis(chaos: Chaos, killed_at: float) -> set[str]:
    """Keys of the messages delivered before the kill and still unacked after the settle time."""
    before = chaos.held_messages()
    time.sleep(SETTLE_S)
    after = chaos.held_messages()
    return {
        key
        for tag, m in before.items()
        if tag in after and m.delivered_at <= killed_at
        for key in m.keys
    }


def held_by_dead_claims(chaos: Chaos, _killed_at: float) -> set[str]:
    """Keys whose claim has the same owner before and after the settle time (its owner is dead:
    a live worker finishes a step in milliseconds)."""

    def claims() -> dict[str, str]:
        pattern = chaos.runtime.keys.idempotency("default", "*")
        keys = list(chaos.runtime.redis.scan_iter(match=pattern, count=1000))
        pipe = chaos.runtime.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "state", "owner")
        found = {}
        for key, (state, owner) in zip(keys, pipe.execute(), strict=True):
            if state == "claimed":
                found[key.rsplit(":idem:", 1)[1]] = owner
        return found

    before = claims()
    time.sleep(SETTLE_S)
    after = claims()
    return {key for key, owner in before.items() if after.get(key) == owner}


def run_kills(
    chaos: Chaos,
    steps: list[Step],
    held: Callable[[Chaos, float], set[str]],
    rng: random.Random,
    *,
    kills: int = KILLS,
    each_once: bool = False,
) -> list[Kill]:
    """Kill a live worker at `kills` random points of the run and replace it, except the last
    one. With `each_once`, the victims are the first workers in turn, each replaced."""
    fractions = sorted(rng.uniform(0.15, 0.75) for _ in range(kills))
    originals = list(chaos.workers)
    done: list[Kill] = []
    attributed: set[str] = set()  # held by an earlier victim (still unrestored)
    for number, fraction in enumerate(fractions, start=1):
        chaos.wait_sends(int(len(steps) * fraction), timeout_s=180)
        victim = originals[number - 1] if each_once else rng.choice(chaos.alive_workers())
        victim.kill()
        kill = Kill(time.time())
        kill.held_keys = held(chaos, kill.at_epoch_s) - attributed
        attributed |= kill.held_keys
        done.append(kill)
        if each_once or number < kills:  # a pod restarted by Kubernetes
            chaos.start_worker(concurrency=16)
    return done


def assert_nothing_lost(row: Row) -> None:
    """Drained, nothing lost, dead-lettered or failed; a duplicate only ever concerns a job a
    dead worker held."""
    assert math.isfinite(row.drain_s), row.details["undrained"]
    assert row.lost == 0
    assert row.details["duplicates_outside_held"] == []
    assert row.dead_lettered == 0
    assert row.failed_results == 0


def held_jobs_out_after(chaos: Chaos, kills: list[Kill]) -> tuple[int, float]:
    """How many jobs the dead workers held, and the longest time from a kill to their send."""
    first_send: dict[str, float] = {}
    for message in chaos.control.messages():
        if message.tracking_id is not None:
            t = message.sent_time_ms / 1000
            first_send[message.tracking_id] = min(t, first_send.get(message.tracking_id, t))
    tracking = {s.key: s.tracking_id for s in chaos_steps(chaos)}
    worst = 0.0
    count = 0
    for kill in kills:
        for key in kill.held_keys:
            count += 1
            sent = first_send.get(tracking[key])
            if sent is not None:
                # A job the worker had already sent before dying counts as out at once.
                worst = max(worst, sent - kill.at_epoch_s)
    return count, worst


def chaos_steps(chaos: Chaos) -> list[Step]:
    """The steps of the scenario running in `chaos` (kept on it by the test)."""
    steps: list[Step] = chaos.steps  # type: ignore[attr-defined]
    return steps


def kill_scenario(
    chaos: Chaos,
    count: int,
    held: Callable[[Chaos, float], set[str]],
    broker_idle: Callable[[], bool] | None,
    drain_timeout_s: float,
    *,
    workers: int = 3,
    each_once: bool = False,
    seed: int = SEED,
) -> tuple[Row, list[Kill]]:
    """`workers` workers, `count` steps, a kill per worker with `each_once`, else three kills;
    returns the row and the kills."""
    for _ in range(workers):
        chaos.start_worker(concurrency=16)
    steps = make_steps("kill", count)
    chaos.steps = steps  # type: ignore[attr-defined]
    started = time.monotonic()
    task_ids = chaos.enqueue(steps)
    kills = run_kills(
        chaos,
        steps,
        held,
        random.Random(seed),
        kills=workers if each_once else KILLS,
        each_once=each_once,
    )
    drain_s = chaos.wait_drained(
        steps, timeout_s=drain_timeout_s, started_at=started, broker_idle=broker_idle
    )
    counts = chaos.tally(steps, task_ids)
    held_count, worst = held_jobs_out_after(chaos, kills)
    duplicates_outside = set(counts.duplicate_keys) - set().union(*(k.held_keys for k in kills))
    row = Row.from_tally(
        "",
        "",
        counts,
        drain_s,
        notes=(
            f"kill -9 x{len(kills)}; {held_count} held by the dead, out <= {worst:.0f}s after kill"
        ),
        details={
            "held_by_dead": held_count,
            "held_out_after_s_max": round(worst, 1),
            "duplicates_outside_held": sorted(duplicates_outside),
            "undrained": chaos.undrained,
            **chaos.journey_figures(steps),
        },
    )
    return row, kills


@pytest.mark.chaos_full
@pytest.mark.timeout(900)
def test_kill_9_three_times_redis_broker(
    new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given three workers on a Redis broker (AOF everysec) and a sandbox answering in 20 ms
    chaos = new_chaos(sandbox=SandboxConfig(port=0, latency_ms=20))
    sweep_s = restore_sweep_period_s(chaos.settings)
    visibility_s = chaos.settings.celery.visibility_timeout_s
    # When 2,000 steps run and a worker is killed three times (two replaced, the last not)
    row, _ = kill_scenario(
        chaos, 2000, held_by_dead_redis, None, drain_timeout_s=visibility_s + sweep_s + 180
    )
    row.scenario = "kill -9 x3 (Redis broker)"
    row.details["restore_sweep_period_s"] = sweep_s
    record(row)
    # Then nothing is lost; a duplicate only ever concerns a job a dead worker held
    assert_nothing_lost(row)
    # And the held jobs went out after the visibility timeout, once a live worker swept for them
    # (the 5-minute bound itself: tests/chaos/test_regressions.py)
    assert row.details["held_out_after_s_max"] <= visibility_s + sweep_s + 15


@pytest.mark.chaos_full
@pytest.mark.timeout(900)
def test_kill_9_each_of_two_workers_once_redis_broker(
    new_chaos: Callable[..., Chaos], record: Callable[[Row], None]
) -> None:
    # Given two workers on a Redis broker and a sandbox answering in 50 ms
    chaos = new_chaos(sandbox=SandboxConfig(port=0, latency_ms=50))
    sweep_s = restore_sweep_period_s(chaos.settings)
    visibility_s = chaos.settings.celery.visibility_timeout_s
    # When 1,000 steps run and each worker is killed once (and replaced), at random points of
    # the run drawn from CHAOS_SEED (a loop over seeds tries other points)
    row, _ = kill_scenario(
        chaos,
        1000,
        held_by_dead_redis,
        None,
        drain_timeout_s=visibility_s + sweep_s + 180,
        workers=2,
        each_once=True,
        seed=int(os.environ.get("CHAOS_SEED", SEED)),
    )
    row.scenario = "kill -9 each of 2 workers once (Redis broker)"
    record(row)
    # Then nothing is lost; a duplicate only ever concerns a job a dead worker held
    assert_nothing_lost(row)
    assert row.details["held_out_after_s_max"] <= visibility_s + sweep_s + 15


@pytest.mark.chaos_full
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("queue_type", "name"), [("classic", "broker"), ("quorum", "quorum queue")]
)
def test_kill_9_three_times_rabbitmq_broker(
    queue_type: str,
    name: str,
    rabbitmq_vhost: str,
    new_chaos: Callable[..., Chaos],
    record: Callable[[Row], None],
) -> None:
    # Given three workers on RabbitMQ (a vhost of our own), `zns` a classic or a quorum queue
    # (ZNS_CELERY__QUEUE_TYPE), with the state in Redis
    url = RABBITMQ_URL.format(vhost=rabbitmq_vhost)
    chaos = new_chaos(
        sandbox=SandboxConfig(port=0, latency_ms=20),
        broker_url=url,
        env={"ZNS_CELERY__QUEUE_TYPE": queue_type},
    )
    claim_ttl_s = chaos.settings.pipeline.claim_ttl_s
    # When 2,000 steps run and a worker is killed three times
    row, _ = kill_scenario(
        chaos,
        2000,
        held_by_dead_claims,
        rabbitmq_idle(rabbitmq_vhost, url),
        drain_timeout_s=claim_ttl_s + 240,
    )
    row.scenario = f"kill -9 x3 (RabbitMQ {name})"
    record(row)
    # Then nothing is lost, duplicates only for held jobs, and those go out once the dead
    # worker's claim expires (RabbitMQ requeued the messages at once)
    assert_nothing_lost(row)
    assert row.details["held_out_after_s_max"] <= claim_ttl_s + 30
    assert row.details["held_out_after_s_max"] <= HELD_JOBS_BOUND_S

"""Ordering within a journey against a real Redis: which lower steps count, parking instead of
waiting, waking when a lower step finishes, the maximum wait; then through JourneySender."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from tests.fakes import FakeClock
from worker import metrics
from worker.clock import ms
from worker.job import Job, parse_job
from worker.ops.maintenance import WOKEN_RELEASE_LIMIT, Maintenance
from worker.pipeline.outcomes import Park, Sent
from worker.pipeline.sender import Attempt
from worker.runtime import Runtime
from worker.state.keys import Keys
from worker.state.ordering import StepOrder
from worker.state.parking import ParkingLot
from worker.state.step_status import StatusStore
from worker.status import ParkReason, StepState
from zns_dev.sandbox.control import SandboxControl

ACCOUNT = "default"
PHONE = "84987654321"
MAX_WAIT_S = 600.0


@pytest.fixture
def order(client: redis.Redis, keys: Keys, clock: FakeClock) -> StepOrder:
    return StepOrder(client, keys, clock=clock, max_wait_s=MAX_WAIT_S, retention_s=3600)


@pytest.fixture
def store(client: redis.Redis, keys: Keys, clock: FakeClock) -> StatusStore:
    return StatusStore(client, keys, clock=clock, retention_s=3600)


@pytest.fixture
def lot(client: redis.Redis, keys: Keys, clock: FakeClock) -> ParkingLot:
    return ParkingLot(client, keys, clock=clock, lease_s=60)


def step(n: int | None, journey: str = "ORD-1", **extra: Any) -> Job:
    raw: dict[str, Any] = {
        "phone": PHONE,
        "template_id": "500",
        "template_data": {"a": 1},
        "journey": journey,
    }
    if n is not None:
        raw["step"] = n
    return parse_job({**raw, **extra}, default_key=f"{journey}-{n}-{uuid.uuid4().hex[:6]}")


def test_a_job_without_step_never_touches_redis(order: StepOrder, client: redis.Redis) -> None:
    check = order.check(step(None), {})
    assert check.parked is False and check.overdue_s == 0
    assert client.dbsize() == 0


def test_the_lowest_known_step_goes_and_a_higher_one_parks(
    order: StepOrder, store: StatusStore, lot: ParkingLot, clock: FakeClock
) -> None:
    # Given steps 1-3 of a journey recorded at enqueue
    s1, s2, s3 = step(1), step(2), step(3)
    store.mark_enqueued([("t1", s1), ("t2", s2), ("t3", s3)])
    # When step 3 is checked first
    check = order.check(s3, {"history": [{"code": -1}]})
    # Then it is parked (not waiting in a worker) until its maximum wait, behind step 1
    assert check.parked
    assert check.due_at == pytest.approx(clock() + MAX_WAIT_S)
    assert "waits for step 1" in check.detail
    (parked,) = lot.entries(ACCOUNT)
    assert parked.reason is ParkReason.ORDER
    assert parked.kwargs == s3.kwargs()
    assert parked.meta == {"history": [{"code": -1}]}
    assert parked.due_at == pytest.approx(clock() + MAX_WAIT_S)
    recorded = store.get(ACCOUNT, s3.idempotency_key)
    assert recorded is not None and recorded.state == StepState.PARKED
    assert recorded.get("parked_reason") == "order"
    # And step 1 may go
    assert order.check(s1, {}).parked is False


def test_steps_never_enqueued_are_not_waited_for(order: StepOrder) -> None:
    # A journey whose producer starts at step 2 (step 1 went out by another channel)
    assert order.check(step(2), {}).parked is False
    assert order.check(step(5), {}).parked is True  # step 2 is now known and not finished


def test_a_step_first_seen_by_a_worker_holds_back_higher_steps(order: StepOrder) -> None:
    # Given step 1 enqueued with bare Celery (no producer record), seen by a worker first
    assert order.check(step(1), {}).parked is False
    # Then step 2 waits for it
    assert order.check(step(2), {}).parked is True


def test_equal_steps_and_other_journeys_do_not_wait(order: StepOrder, store: StatusStore) -> None:
    store.mark_enqueued([("a", step(2)), ("b", step(1, journey="ORD-2"))])
    assert order.check(step(2), {}).parked is False
    assert order.check(step(2, journey="ORD-3"), {}).parked is False


def test_finishing_the_lower_step_wakes_the_waiters(
    order: StepOrder, store: StatusStore, lot: ParkingLot, clock: FakeClock
) -> None:
    # Given step 2 parked behind step 1
    s1, s2 = step(1), step(2)
    store.mark_enqueued([("t1", s1), ("t2", s2)])
    assert order.check(s2, {}).parked is True
    assert lot.lease_due(ACCOUNT, 10) == []
    # When step 1 is dead-lettered
    clock.advance(5)
    assert store.mark_dead(s1, reason="bad template", code=-1124) == 1
    # Then step 2 is due now, and goes when checked again
    (due,) = lot.lease_due(ACCOUNT, 10)
    assert due.kwargs["step"] == 2
    assert order.check(s2, {}).parked is False


def test_after_the_maximum_wait_the_step_goes_anyway(
    order: StepOrder, store: StatusStore, clock: FakeClock
) -> None:
    # Given step 2 waiting for a step 1 that never finishes
    s1, s2 = step(1), step(2)
    store.mark_enqueued([("t1", s1), ("t2", s2)])
    first = order.check(s2, {})
    assert first.parked
    # When it is checked again before, then after its maximum wait (counted from its first wait)
    clock.advance(MAX_WAIT_S / 2)
    again = order.check(s2, {})
    assert again.parked and again.due_at == first.due_at
    overdue_before = metrics.ORDER_OVERDUE.labels(ACCOUNT)._value.get()
    clock.advance(MAX_WAIT_S / 2)
    late = order.check(s2, {})
    # Then it goes, counted and logged
    assert late.parked is False
    assert late.overdue_s == pytest.approx(MAX_WAIT_S)
    assert metrics.ORDER_OVERDUE.labels(ACCOUNT)._value.get() == overdue_before + 1


def test_each_wait_is_timed_from_its_own_start(
    order: StepOrder, store: StatusStore, clock: FakeClock
) -> None:
    # Given step 2 that waited once, then went when step 1 was dead-lettered
    s1, s2 = step(1), step(2)
    store.mark_enqueued([("t1", s1), ("t2", s2)])
    assert order.check(s2, {}).parked is True
    store.mark_dead(s1, reason="bad template", code=-1124)
    assert order.check(s2, {}).parked is False
    # When, much later, step 1 is enqueued again (replayed) before step 2 was sent
    clock.advance(MAX_WAIT_S * 2)
    store.reopen(ACCOUNT, s1.idempotency_key)
    store.mark_enqueued([("t1b", s1)])
    # Then step 2 waits a full maximum wait again, not "overdue" at once
    again = order.check(s2, {})
    assert again.parked and again.due_at == pytest.approx(clock() + MAX_WAIT_S)


def test_a_sent_step_is_not_held_back(
    order: StepOrder, store: StatusStore, client: redis.Redis, keys: Keys
) -> None:
    s1, s2 = step(1), step(2)
    store.mark_enqueued([("t1", s1), ("t2", s2)])
    client.hset(keys.status(ACCOUNT, s2.idempotency_key), "state", "sent")  # sent earlier
    assert order.check(s2, {}).parked is False


# -- through the sender (real sandbox, real Redis, no Celery) -----------------------------------


def attempt() -> Attempt:
    return Attempt(task_id=uuid.uuid4().hex)


def test_sender_parks_a_higher_step_without_calling_zalo_then_sends_in_order(
    runtime: Runtime, control: SandboxControl
) -> None:
    # Given steps 1 and 2 of a journey enqueued
    s1, s2 = step(1, journey="J-S"), step(2, journey="J-S")
    runtime.status.mark_enqueued([("t1", s1), ("t2", s2)])
    # When step 2 is processed first
    outcome = runtime.sender.process(s2, attempt())
    # Then it is parked for order, Zalo saw nothing and no claim is held
    assert isinstance(outcome, Park) and outcome.reason is ParkReason.ORDER
    assert control.stats().calls.get("send", 0) == 0
    assert runtime.idempotency.state(ACCOUNT, s2.idempotency_key) is None
    (parked,) = runtime.parking.entries(ACCOUNT)
    # When step 1 is sent, the sender reports the waiter woken; step 2 then goes
    woken: list[str] = []
    runtime.sender.on_wake = woken.append
    assert isinstance(runtime.sender.process(s1, attempt()), Sent)
    assert woken == [ACCOUNT]
    assert runtime.parking.lease_due(ACCOUNT, 10)[0].parking_id == parked.parking_id
    assert isinstance(runtime.sender.process(s2, attempt()), Sent)
    assert [m.template_data for m in control.messages()] == [{"a": 1}, {"a": 1}]
    assert [m.tracking_id for m in control.messages()] == [s1.tracking_id, s2.tracking_id]


def test_numbered_step_costs_one_more_round_trip(runtime: Runtime, control: SandboxControl) -> None:
    # Warm up scripts, tokens and the quota counter: steady state
    assert isinstance(runtime.sender.process(step(None, journey="RT"), attempt()), Sent)
    assert isinstance(runtime.sender.process(step(1, journey="RT"), attempt()), Sent)
    plain = _round_trips(runtime, step(None, journey="RT"))
    numbered = _round_trips(runtime, step(2, journey="RT"))
    assert plain == 2
    assert numbered == 3
    assert control.stats().sends_accepted == 4


def _round_trips(runtime: Runtime, job: Job) -> float:
    before = metrics.REDIS_ROUND_TRIPS._value.get()
    assert isinstance(runtime.sender.process(job, attempt()), Sent)
    return float(metrics.REDIS_ROUND_TRIPS._value.get() - before)


def test_parked_entries_are_due_in_ms(lot: ParkingLot, order: StepOrder, clock: FakeClock) -> None:
    order.check(step(1, journey="D"), {})
    order.check(step(2, journey="D"), {})
    (entry,) = lot.entries(ACCOUNT)
    assert entry.due_at is not None and ms(entry.due_at) == ms(clock() + MAX_WAIT_S)


def test_a_finished_step_releases_a_bounded_batch_of_woken_jobs(runtime: Runtime) -> None:
    # Given more due parked jobs than a task should publish itself
    for n in range(WOKEN_RELEASE_LIMIT + 5):
        runtime.parking.park(
            ACCOUNT,
            reason=ParkReason.ORDER,
            due_at=0,
            kwargs=step(2, journey=f"W{n}").kwargs(),
            meta={},
        )
    published: list[dict[str, Any]] = []
    # When a finished step releases the woken ones
    released = Maintenance(runtime, published.append).release_woken(ACCOUNT)
    # Then one bounded batch went out; the rest wait for the maintenance pass
    assert released == len(published) == WOKEN_RELEASE_LIMIT
    assert runtime.parking.count(ACCOUNT) == 5
    assert all(kwargs["step"] == 2 for kwargs in published)

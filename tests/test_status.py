"""StatusStore against a real Redis: each event of a step's life, the look-ups, early deliveries,
journey events, and the hot path's own status write (finish_sent.lua) with its round trips."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from tests.fakes import FakeClock
from worker import metrics
from worker.clock import ms
from worker.job import Job, parse_job
from worker.settings import Settings
from worker.state.keys import Keys
from worker.state.ratelimit import RateLimiter
from worker.state.step_gate import StepGate, StepKeys
from worker.state.step_status import (
    EARLY_DELIVERY_TTL_S,
    JOURNEY_EVENT_RETENTION_S,
    Delivery,
    StatusStore,
)
from worker.status import Lookup, StepState

ACCOUNT = "default"
PHONE = "84987654321"
RETENTION_S = 3600.0


@pytest.fixture
def store(client: redis.Redis, keys: Keys, clock: FakeClock) -> StatusStore:
    return StatusStore(client, keys, clock=clock, retention_s=RETENTION_S)


@pytest.fixture
def gate(client: redis.Redis, keys: Keys, clock: FakeClock) -> StepGate:
    limiter = RateLimiter(client, keys, accounts=Settings(_env_file=None).account, max_wait_s=1)
    return StepGate(
        client,
        keys,
        limiter=limiter,
        clock=clock,
        claim_ttl_s=150,
        retention_s=RETENTION_S,
        quota_floor=0,
    )


def job(**extra: Any) -> Job:
    raw = {"phone": PHONE, "template_id": "500", "template_data": {"a": 1}, "journey": "ORD-1"}
    return parse_job({**raw, **extra}, default_key=uuid.uuid4().hex)


def send(gate: StepGate, step: Job, msg_id: str = "m-1", sent_time: int = 1_700_000_000_000) -> int:
    """The hot path's finish for a step Zalo accepted (as JourneySender calls it)."""
    result = {
        "status": "sent",
        "msg_id": msg_id,
        "sent_time": sent_time,
        "journey_id": "jid-1",
        "tracking_id": step.tracking_id,
    }
    keys = StepKeys(step.account, step.idempotency_key, step.template_id, "unused-jt-key")
    return gate.finish_sent(keys, step, owner="task-1", result=result, quota=None).woken


def test_enqueued_is_found_by_idempotency_key_and_tracking_id(
    store: StatusStore, clock: FakeClock
) -> None:
    # Given a step recorded at enqueue
    step = job(idempotency_key="ORD-1-shipped", step=2)
    store.mark_enqueued([("task-1", step)])
    # Then both look-ups find it, with what the producer knew and the phone masked
    by_key = store.get(ACCOUNT, "ORD-1-shipped")
    by_tracking = store.get(ACCOUNT, step.tracking_id, Lookup.TRACKING_ID)
    assert by_key is not None and by_key == by_tracking
    assert by_key.state == StepState.ENQUEUED
    shown = by_key.as_dict()
    assert shown["enqueued_at_ms"] == ms(clock())
    assert shown["step"] == 2
    assert shown["task_id"] == "task-1"
    assert shown["phone"] == "8498****321"
    assert PHONE not in str(shown)
    assert store.get(ACCOUNT, "nope") is None
    assert store.get(ACCOUNT, "nope", Lookup.MSG_ID) is None


def test_a_journey_defaulting_to_the_phone_is_recorded_masked(store: StatusStore) -> None:
    step = parse_job(
        {"phone": PHONE, "template_id": "1", "template_data": {"a": 1}}, default_key="k1"
    )
    store.mark_enqueued([("t", step)])
    found = store.get(ACCOUNT, "k1")
    assert found is not None and found.get("journey") == "8498****321"


def test_sent_is_recorded_by_finish_sent_in_one_round_trip(
    store: StatusStore, gate: StepGate
) -> None:
    # Given an enqueued step (and the script already loaded, as in steady state)
    send(gate, job(idempotency_key="warm-up"), msg_id="m-warm-up")
    step = job(idempotency_key="k-sent")
    store.mark_enqueued([("t", step)])
    # When the hot path finishes it
    before = metrics.REDIS_ROUND_TRIPS._value.get()
    send(gate, step, msg_id="msg-42")
    # Then one round trip recorded the send and every look-up finds it
    assert metrics.REDIS_ROUND_TRIPS._value.get() - before == 1
    for value, by in (
        ("k-sent", Lookup.IDEMPOTENCY_KEY),
        (step.tracking_id, Lookup.TRACKING_ID),
        ("msg-42", Lookup.MSG_ID),
    ):
        found = store.get(ACCOUNT, value, by)
        assert found is not None, by
        assert found.state == StepState.SENT
        assert found.get("msg_id") == "msg-42"
        assert found.get("journey_id") == "jid-1"
        assert found.get("sent_at_ms") == "1700000000000"
        assert found.get("enqueued_at_ms") is not None


def test_a_step_sent_with_bare_celery_is_recorded_when_sent(
    store: StatusStore, gate: StepGate
) -> None:
    step = job(idempotency_key="bare", template_id="777")
    send(gate, step, msg_id="msg-bare")
    found = store.get(ACCOUNT, "msg-bare", Lookup.MSG_ID)
    assert found is not None and found.state == StepState.SENT
    assert found.get("template_id") == "777"
    assert found.get("enqueued_at_ms") is None
    assert [s.get("idempotency_key") for s in store.journey(ACCOUNT, PHONE, "ORD-1")] == ["bare"]


def test_state_moves_only_forward(store: StatusStore, gate: StepGate) -> None:
    # Given a sent step
    step = job(idempotency_key="fwd")
    send(gate, step, msg_id="m-fwd")
    # When a late park or a re-enqueue reports in
    assert store.mark_parked(step, reason="quota", due_at=None) is False
    store.mark_enqueued([("t2", step)])
    # Then the step stays sent
    found = store.get(ACCOUNT, "fwd")
    assert found is not None and found.state == StepState.SENT
    assert found.get("parked_reason") is None


def test_parked_then_dead_lettered_with_the_reason(store: StatusStore, clock: FakeClock) -> None:
    step = job(idempotency_key="dl")
    store.mark_enqueued([("t", step)])
    assert store.mark_parked(step, reason="night", due_at=clock() + 60) is True
    parked = store.get(ACCOUNT, "dl")
    assert parked is not None and parked.state == StepState.PARKED
    assert parked.get("parked_until_ms") == str(ms(clock() + 60))
    store.mark_dead(step, reason="template rejected", code=-1124)
    dead = store.get(ACCOUNT, step.tracking_id, Lookup.TRACKING_ID)
    assert dead is not None and dead.state == StepState.DEAD_LETTERED
    assert dead.as_dict()["dead_reason"] == "template rejected"
    assert dead.get("dead_code") == "-1124"


def test_delivery_is_recorded_once(store: StatusStore, gate: StepGate) -> None:
    step = job(idempotency_key="dlv")
    send(gate, step, msg_id="m-dlv")
    assert store.record_delivery(ACCOUNT, "m-dlv", 1_700_000_001_000, step.tracking_id) == (
        Delivery.RECORDED
    )
    assert store.mark_delivered(ACCOUNT, "m-dlv", 1_700_000_002_000, None) is False
    found = store.get(ACCOUNT, "dlv")
    assert found is not None and found.state == StepState.DELIVERED
    assert found.get("delivered_at_ms") == "1700000001000"  # the first report wins


def test_a_delivery_before_the_send_record_is_kept_and_merged(
    store: StatusStore, gate: StepGate, client: redis.Redis, keys: Keys
) -> None:
    # Given a delivery webhook for a msg_id we have not recorded yet
    step = job(idempotency_key="early")
    assert store.mark_delivered(ACCOUNT, "m-early", 1_700_000_003_000, step.tracking_id) is True
    assert store.record_delivery(ACCOUNT, "m-early", 1, None) == Delivery.DUPLICATE
    early = store.get(ACCOUNT, "m-early", Lookup.MSG_ID)
    assert early is not None and early.state == "delivered_unmatched"
    ttl_ms = int(client.pttl(keys.early_delivery(ACCOUNT, "m-early")))
    assert 0 < ttl_ms <= ms(EARLY_DELIVERY_TTL_S)
    # When the send is recorded
    send(gate, step, msg_id="m-early")
    # Then the step shows delivered and the kept delivery is gone
    found = store.get(ACCOUNT, "early")
    assert found is not None and found.state == StepState.DELIVERED
    assert found.get("delivered_at_ms") == "1700000003000"
    assert client.exists(keys.early_delivery(ACCOUNT, "m-early")) == 0


def test_journey_events_first_report_wins(
    store: StatusStore, client: redis.Redis, keys: Keys
) -> None:
    store.mark_journey_event(ACCOUNT, "jid-1", "charged", 1000)
    store.mark_journey_event(ACCOUNT, "jid-1", "charged", 2000)
    store.mark_journey_event(ACCOUNT, "jid-1", "timed_out", 3000)
    assert store.journey_events(ACCOUNT, ["jid-1", "jid-unknown"]) == {
        "jid-1": {"charged_at_ms": 1000, "timed_out_at_ms": 3000}
    }
    ttl_ms = int(client.pttl(keys.journey_events(ACCOUNT, "jid-1")))
    assert ms(JOURNEY_EVENT_RETENTION_S) - 60_000 < ttl_ms <= ms(JOURNEY_EVENT_RETENTION_S)
    with pytest.raises(ValueError, match="unknown journey event"):
        store.mark_journey_event(ACCOUNT, "jid-1", "opened", 1)


def test_status_keys_expire_after_the_retention(
    store: StatusStore, gate: StepGate, client: redis.Redis, keys: Keys
) -> None:
    step = job(idempotency_key="ttl", step=1)
    store.mark_enqueued([("t", step)])
    send(gate, step, msg_id="m-ttl")
    for key in (
        keys.status(ACCOUNT, "ttl"),
        keys.status_by_msg(ACCOUNT, "m-ttl"),
        keys.status_by_tracking(ACCOUNT, step.tracking_id),
        keys.journey_steps(ACCOUNT, PHONE, "ORD-1"),
    ):
        assert 0 < int(client.pttl(key)) <= ms(RETENTION_S), key


def test_the_journey_lists_its_steps_in_order(store: StatusStore, gate: StepGate) -> None:
    steps = [job(idempotency_key=f"j-{n}", step=n) for n in (3, 1, 2)]
    store.mark_enqueued([(f"t{n}", s) for n, s in enumerate(steps)])
    send(gate, steps[1], msg_id="m-j1")
    listed = store.journey(ACCOUNT, PHONE, "ORD-1")
    assert [s.get("step") for s in listed] == ["1", "2", "3"]
    assert [s.state for s in listed] == ["sent", "enqueued", "enqueued"]
    assert store.journey(ACCOUNT, PHONE, "other") == []


def test_a_replayed_dead_letter_is_enqueued_again(store: StatusStore) -> None:
    step = job(idempotency_key="replay", step=1)
    store.mark_dead(step, reason="bad template", code=-1124)
    assert store.reopen(ACCOUNT, "replay") is True
    store.mark_enqueued([("t-again", step)])
    found = store.get(ACCOUNT, "replay")
    assert found is not None and found.state == StepState.ENQUEUED
    assert found.get("task_id") == "t-again"
    assert store.reopen(ACCOUNT, "replay") is False  # only a dead letter reopens

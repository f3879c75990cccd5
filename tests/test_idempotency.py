"""A job's idempotency key against a real Redis, through what the hot path runs: the claim in
`StepGate.begin`, the send recorded by `StepGate.finish_sent`, and the store's release, mark_dead
and reopen. Claim ttl, expiry, finishing, releasing, reopening, races."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.fakes import FakeClock, run_in_threads, step_gate
from tests.support import wait_until
from worker.job import Job, parse_job
from worker.state.idempotency import IdempotencyStore
from worker.state.keys import Keys
from worker.state.quota import QuotaStore
from worker.state.step_gate import Begin, Started, StepGate, StepKeys

ACCOUNT = "default"
KEY = "order-42:step-1"
TEMPLATE = "tpl-1"
RESULT = {"msg_id": "m-1", "sent_time": 1_700_000_000_000, "quota": {"remainingQuota": 99}}
RETENTION_S = 3600.0
CLAIM_TTL_S = 30.0


@pytest.fixture
def store(client: redis.Redis, keys: Keys) -> IdempotencyStore:
    return IdempotencyStore(client, keys, retention_s=RETENTION_S)


def _gate(client: redis.Redis, keys: Keys, clock: FakeClock, claim_ttl_s: float) -> StepGate:
    """The hot path's gate, with quota known (or `begin` answers UNKNOWN and keeps no claim)
    for the accounts these tests use, and no rate limit."""
    quota = QuotaStore(client, keys, clock=clock)
    for account in (ACCOUNT, "other-oa"):
        quota.set(account, 1000, 1000)
    return step_gate(client, keys, clock, claim_ttl_s=claim_ttl_s, retention_s=RETENTION_S)


@pytest.fixture
def gate(client: redis.Redis, keys: Keys, clock: FakeClock) -> StepGate:
    return _gate(client, keys, clock, CLAIM_TTL_S)


@pytest.fixture
def short_gate(client: redis.Redis, keys: Keys, clock: FakeClock) -> StepGate:
    """Claims that live 0.2 s, to watch a dead worker's claim expire in real Redis."""
    return _gate(client, keys, clock, 0.2)


def _job() -> Job:
    raw = {"phone": "84987654321", "template_id": TEMPLATE, "template_data": {"a": 1}}
    return parse_job({**raw, "idempotency_key": KEY}, default_key=KEY)


def begin(gate: StepGate, owner: str, account: str = ACCOUNT) -> Started:
    """Claim KEY as `JourneySender` does."""
    return gate.begin(StepKeys(account, KEY, TEMPLATE, "unused-jt-key"), owner=owner, probe=False)


def finish_sent(gate: StepGate, owner: str, result: dict[str, Any] = RESULT) -> None:
    """Record KEY sent as `JourneySender` does after Zalo accepted."""
    step = StepKeys(ACCOUNT, KEY, TEMPLATE, "unused-jt-key")
    gate.finish_sent(step, _job(), owner=owner, result=dict(result), quota=None)


def test_first_claim_wins_and_the_key_carries_the_claim_ttl(
    gate: StepGate, store: IdempotencyStore, client: redis.Redis, keys: Keys
) -> None:
    assert begin(gate, "task-a").state is Begin.OK
    assert store.state(ACCOUNT, KEY) == "claimed"
    assert client.hget(keys.idempotency(ACCOUNT, KEY), "owner") == "task-a"
    pttl = int(client.pttl(keys.idempotency(ACCOUNT, KEY)))
    assert 0 < pttl <= CLAIM_TTL_S * 1000


def test_a_live_claim_is_busy_for_another_owner_with_retry_after(gate: StepGate) -> None:
    # Given a claim held by a live worker
    begin(gate, "task-a")
    # When another task tries to claim the same key
    started = begin(gate, "task-b")
    # Then it is told to come back when the claim would expire, and nothing is handed over
    assert started.state is Begin.BUSY
    assert 0 < started.delay_s <= CLAIM_TTL_S
    assert started.result is None


def test_sent_returns_the_stored_result_without_a_new_claim(
    gate: StepGate, store: IdempotencyStore, client: redis.Redis, keys: Keys
) -> None:
    # Given a job that was claimed and sent
    begin(gate, "task-a")
    finish_sent(gate, "task-a")
    # When it is delivered again (another task id)
    started = begin(gate, "task-b")
    # Then the stored result comes back and the record is kept for the retention period
    assert started == Started(Begin.SENT, result=RESULT)
    assert store.state(ACCOUNT, KEY) == "sent"
    pttl = int(client.pttl(keys.idempotency(ACCOUNT, KEY)))
    assert CLAIM_TTL_S * 1000 < pttl <= RETENTION_S * 1000


def test_dead_is_dead_for_every_later_delivery(gate: StepGate, store: IdempotencyStore) -> None:
    begin(gate, "task-a")
    reason = {"reason": "recipient blocked", "code": -108}
    assert store.mark_dead(ACCOUNT, KEY, owner="task-a", result=reason)

    started = begin(gate, "task-b")

    assert started.state is Begin.DEAD
    assert started.result == reason
    assert store.state(ACCOUNT, KEY) == "dead"


def test_release_only_by_the_owner(gate: StepGate, store: IdempotencyStore) -> None:
    # Given task-a holds the claim
    begin(gate, "task-a")
    # When task-b tries to release it, nothing happens
    assert not store.release(ACCOUNT, KEY, owner="task-b")
    assert begin(gate, "task-c").state is Begin.BUSY
    # When task-a releases it (nothing was sent), the key is free again
    assert store.release(ACCOUNT, KEY, owner="task-a")
    assert store.state(ACCOUNT, KEY) is None
    assert begin(gate, "task-c").state is Begin.OK


def test_release_never_undoes_a_send(gate: StepGate, store: IdempotencyStore) -> None:
    begin(gate, "task-a")
    finish_sent(gate, "task-a")
    assert not store.release(ACCOUNT, KEY, owner="task-a")
    assert store.state(ACCOUNT, KEY) == "sent"


def test_release_of_an_unknown_key_is_a_no_op(store: IdempotencyStore) -> None:
    assert not store.release(ACCOUNT, "never-claimed", owner="task-a")


def test_a_dead_workers_claim_expires_and_the_key_can_be_claimed_again(
    short_gate: StepGate, store: IdempotencyStore
) -> None:
    # Given a worker claimed the key and died (never finished, never released)
    assert begin(short_gate, "dead-worker").state is Begin.OK
    first_try = begin(short_gate, "task-b")
    assert first_try.state is Begin.BUSY
    assert 0 <= first_try.delay_s <= 0.2
    # When the redelivered job keeps trying
    tries: list[Started] = []

    def claimed() -> bool:
        tries.append(begin(short_gate, "task-b"))
        return tries[-1].state is Begin.OK

    wait_until(claimed, timeout_s=5, interval_s=0.02, what="the dead worker's claim to expire")
    # Then it gets the claim once Redis expired the old one, and the dead worker lost it
    assert all(t.state is Begin.BUSY for t in tries[:-1])
    assert not store.release(ACCOUNT, KEY, owner="dead-worker")
    assert store.state(ACCOUNT, KEY) == "claimed"


def test_reopen_forgets_a_dead_letter_so_a_replay_can_send(
    gate: StepGate, store: IdempotencyStore
) -> None:
    # Given a dead-lettered job
    begin(gate, "task-a")
    store.mark_dead(ACCOUNT, KEY, owner="task-a", result={"reason": "bad template"})
    # When an operator replays it
    assert store.reopen(ACCOUNT, KEY)
    # Then the replay may claim and send it
    assert store.state(ACCOUNT, KEY) is None
    assert begin(gate, "replay").state is Begin.OK


def test_reopen_of_nothing_recorded_is_allowed(store: IdempotencyStore) -> None:
    assert store.reopen(ACCOUNT, "never-seen")


def test_reopen_refuses_a_sent_job(gate: StepGate, store: IdempotencyStore) -> None:
    begin(gate, "task-a")
    finish_sent(gate, "task-a")

    assert not store.reopen(ACCOUNT, KEY)

    assert begin(gate, "replay") == Started(Begin.SENT, result=RESULT)


def test_reopen_refuses_a_job_in_flight(gate: StepGate, store: IdempotencyStore) -> None:
    begin(gate, "task-a")

    assert not store.reopen(ACCOUNT, KEY)

    assert store.state(ACCOUNT, KEY) == "claimed"
    assert begin(gate, "replay").state is Begin.BUSY


def test_finish_sent_wins_over_a_lost_claim(short_gate: StepGate, store: IdempotencyStore) -> None:
    # Given task-a claimed, was slow, and its claim expired and went to task-b
    begin(short_gate, "task-a")
    wait_until(
        lambda: begin(short_gate, "task-b").state is Begin.OK,
        timeout_s=5,
        interval_s=0.02,
        what="task-a's claim to expire",
    )
    # When task-a's send went through after all (Zalo accepted it: that is the truth)
    finish_sent(short_gate, "task-a")
    assert store.state(ACCOUNT, KEY) == "sent"
    # Then the key is sent; task-b can neither overwrite it, dead-letter it nor release it
    finish_sent(short_gate, "task-b", {**RESULT, "msg_id": "m-2"})
    assert not store.mark_dead(ACCOUNT, KEY, owner="task-b", result={"reason": "x"})
    assert not store.release(ACCOUNT, KEY, owner="task-b")
    assert begin(short_gate, "task-c") == Started(Begin.SENT, result=RESULT)


def test_mark_dead_is_refused_for_a_claim_held_by_another(
    gate: StepGate, store: IdempotencyStore
) -> None:
    begin(gate, "task-a")

    assert not store.mark_dead(ACCOUNT, KEY, owner="task-b", result={"reason": "x"})

    assert store.state(ACCOUNT, KEY) == "claimed"


def test_the_first_sent_wins(gate: StepGate, store: IdempotencyStore) -> None:
    begin(gate, "task-a")
    finish_sent(gate, "task-a")
    assert store.state(ACCOUNT, KEY) == "sent"
    finish_sent(gate, "task-a", {"msg_id": "other"})
    assert begin(gate, "task-b").result == RESULT


def test_keys_are_per_account(gate: StepGate) -> None:
    begin(gate, "task-a", account="default")
    assert begin(gate, "task-b", account="other-oa").state is Begin.OK


def test_twenty_threads_claiming_one_key_yield_exactly_one_claim(
    gate: StepGate, store: IdempotencyStore
) -> None:
    # Given 20 deliveries of the same job racing on 20 threads
    # When they all claim at once
    tries = run_in_threads(20, lambda i: begin(gate, f"task-{i}"))
    # Then exactly one goes ahead and the others are told it is busy
    states = [t.state for t in tries]
    assert states.count(Begin.OK) == 1
    assert states.count(Begin.BUSY) == 19
    winner = f"task-{states.index(Begin.OK)}"
    assert store.release(ACCOUNT, KEY, owner=winner)

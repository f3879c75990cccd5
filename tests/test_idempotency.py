"""Idempotency store against a real Redis: claim, finish, release, expiry, reopen, races."""

from __future__ import annotations

import pytest
import redis

from tests.fakes import run_in_threads
from tests.support import wait_until
from worker.state.idempotency import Claim, ClaimState, IdempotencyStore
from worker.state.keys import Keys

ACCOUNT = "default"
KEY = "order-42:step-1"
RESULT = {"msg_id": "m-1", "sent_time": 1_700_000_000_000, "quota": {"remainingQuota": 99}}
RETENTION_S = 3600.0
CLAIM_TTL_S = 30.0


@pytest.fixture
def store(client: redis.Redis, keys: Keys) -> IdempotencyStore:
    return IdempotencyStore(client, keys, claim_ttl_s=CLAIM_TTL_S, retention_s=RETENTION_S)


@pytest.fixture
def short_store(client: redis.Redis, keys: Keys) -> IdempotencyStore:
    """Claims that live 0.2 s, to watch a dead worker's claim expire in real Redis."""
    return IdempotencyStore(client, keys, claim_ttl_s=0.2, retention_s=RETENTION_S)


def test_first_claim_wins_and_the_key_carries_the_claim_ttl(
    store: IdempotencyStore, client: redis.Redis, keys: Keys
) -> None:
    assert store.claim(ACCOUNT, KEY, owner="task-a") == Claim(ClaimState.CLAIMED)
    assert store.state(ACCOUNT, KEY) == "claimed"
    assert client.hget(keys.idempotency(ACCOUNT, KEY), "owner") == "task-a"
    pttl = int(client.pttl(keys.idempotency(ACCOUNT, KEY)))
    assert 0 < pttl <= CLAIM_TTL_S * 1000


def test_a_live_claim_is_busy_for_another_owner_with_retry_after(store: IdempotencyStore) -> None:
    # Given a claim held by a live worker
    store.claim(ACCOUNT, KEY, owner="task-a")
    # When another task tries to claim the same key
    claim = store.claim(ACCOUNT, KEY, owner="task-b")
    # Then it is told to come back when the claim would expire, and nothing is handed over
    assert claim.state is ClaimState.BUSY
    assert 0 < claim.retry_after_s <= CLAIM_TTL_S
    assert claim.result is None


def test_sent_returns_the_stored_result_without_a_new_claim(
    store: IdempotencyStore, client: redis.Redis, keys: Keys
) -> None:
    # Given a job that was claimed and sent
    store.claim(ACCOUNT, KEY, owner="task-a")
    assert store.mark_sent(ACCOUNT, KEY, owner="task-a", result=RESULT)
    # When it is delivered again (another task id)
    claim = store.claim(ACCOUNT, KEY, owner="task-b")
    # Then the stored result comes back and the record is kept for the retention period
    assert claim == Claim(ClaimState.SENT, result=RESULT)
    assert store.state(ACCOUNT, KEY) == "sent"
    pttl = int(client.pttl(keys.idempotency(ACCOUNT, KEY)))
    assert CLAIM_TTL_S * 1000 < pttl <= RETENTION_S * 1000


def test_dead_is_dead_for_every_later_delivery(store: IdempotencyStore) -> None:
    store.claim(ACCOUNT, KEY, owner="task-a")
    reason = {"reason": "recipient blocked", "code": -108}
    assert store.mark_dead(ACCOUNT, KEY, owner="task-a", result=reason)

    claim = store.claim(ACCOUNT, KEY, owner="task-b")

    assert claim.state is ClaimState.DEAD
    assert claim.result == reason
    assert store.state(ACCOUNT, KEY) == "dead"


def test_release_only_by_the_owner(store: IdempotencyStore) -> None:
    # Given task-a holds the claim
    store.claim(ACCOUNT, KEY, owner="task-a")
    # When task-b tries to release it, nothing happens
    assert not store.release(ACCOUNT, KEY, owner="task-b")
    assert store.claim(ACCOUNT, KEY, owner="task-c").state is ClaimState.BUSY
    # When task-a releases it (nothing was sent), the key is free again
    assert store.release(ACCOUNT, KEY, owner="task-a")
    assert store.state(ACCOUNT, KEY) is None
    assert store.claim(ACCOUNT, KEY, owner="task-c").state is ClaimState.CLAIMED


def test_release_never_undoes_a_send(store: IdempotencyStore) -> None:
    store.claim(ACCOUNT, KEY, owner="task-a")
    store.mark_sent(ACCOUNT, KEY, owner="task-a", result=RESULT)
    assert not store.release(ACCOUNT, KEY, owner="task-a")
    assert store.state(ACCOUNT, KEY) == "sent"


def test_release_of_an_unknown_key_is_a_no_op(store: IdempotencyStore) -> None:
    assert not store.release(ACCOUNT, "never-claimed", owner="task-a")


def test_a_dead_workers_claim_expires_and_the_key_can_be_claimed_again(
    short_store: IdempotencyStore,
) -> None:
    # Given a worker claimed the key and died (never finished, never released)
    assert short_store.claim(ACCOUNT, KEY, owner="dead-worker").state is ClaimState.CLAIMED
    first_try = short_store.claim(ACCOUNT, KEY, owner="task-b")
    assert first_try.state is ClaimState.BUSY
    assert 0 <= first_try.retry_after_s <= 0.2
    # When the redelivered job keeps trying
    claims: list[Claim] = []

    def claimed() -> bool:
        claims.append(short_store.claim(ACCOUNT, KEY, owner="task-b"))
        return claims[-1].state is ClaimState.CLAIMED

    wait_until(claimed, timeout_s=5, interval_s=0.02, what="the dead worker's claim to expire")
    # Then it gets the claim once Redis expired the old one, and the dead worker lost it
    assert all(c.state is ClaimState.BUSY for c in claims[:-1])
    assert not short_store.release(ACCOUNT, KEY, owner="dead-worker")
    assert short_store.state(ACCOUNT, KEY) == "claimed"


def test_reopen_forgets_a_dead_letter_so_a_replay_can_send(store: IdempotencyStore) -> None:
    # Given a dead-lettered job
    store.claim(ACCOUNT, KEY, owner="task-a")
    store.mark_dead(ACCOUNT, KEY, owner="task-a", result={"reason": "bad template"})
    # When an operator replays it
    assert store.reopen(ACCOUNT, KEY)
    # Then the replay may claim and send it
    assert store.state(ACCOUNT, KEY) is None
    assert store.claim(ACCOUNT, KEY, owner="replay").state is ClaimState.CLAIMED


def test_reopen_of_nothing_recorded_is_allowed(store: IdempotencyStore) -> None:
    assert store.reopen(ACCOUNT, "never-seen")


def test_reopen_refuses_a_sent_job(store: IdempotencyStore) -> None:
    store.claim(ACCOUNT, KEY, owner="task-a")
    store.mark_sent(ACCOUNT, KEY, owner="task-a", result=RESULT)

    assert not store.reopen(ACCOUNT, KEY)

    assert store.claim(ACCOUNT, KEY, owner="replay") == Claim(ClaimState.SENT, result=RESULT)


def test_reopen_refuses_a_job_in_flight(store: IdempotencyStore) -> None:
    store.claim(ACCOUNT, KEY, owner="task-a")

    assert not store.reopen(ACCOUNT, KEY)

    assert store.state(ACCOUNT, KEY) == "claimed"
    assert store.claim(ACCOUNT, KEY, owner="replay").state is ClaimState.BUSY


def test_mark_sent_wins_over_a_lost_claim(short_store: IdempotencyStore) -> None:
    # Given task-a claimed, was slow, and its claim expired and went to task-b
    short_store.claim(ACCOUNT, KEY, owner="task-a")
    wait_until(
        lambda: short_store.claim(ACCOUNT, KEY, owner="task-b").state is ClaimState.CLAIMED,
        timeout_s=5,
        interval_s=0.02,
        what="task-a's claim to expire",
    )
    # When task-a's send went through after all (Zalo accepted it: that is the truth)
    assert short_store.mark_sent(ACCOUNT, KEY, owner="task-a", result=RESULT)
    # Then the key is sent; task-b can neither overwrite it, dead-letter it nor release it
    late = {**RESULT, "msg_id": "m-2"}
    assert not short_store.mark_sent(ACCOUNT, KEY, owner="task-b", result=late)
    assert not short_store.mark_dead(ACCOUNT, KEY, owner="task-b", result={"reason": "x"})
    assert not short_store.release(ACCOUNT, KEY, owner="task-b")
    assert short_store.claim(ACCOUNT, KEY, owner="task-c") == Claim(ClaimState.SENT, result=RESULT)


def test_mark_dead_is_refused_for_a_claim_held_by_another(store: IdempotencyStore) -> None:
    store.claim(ACCOUNT, KEY, owner="task-a")

    assert not store.mark_dead(ACCOUNT, KEY, owner="task-b", result={"reason": "x"})

    assert store.state(ACCOUNT, KEY) == "claimed"


def test_the_first_sent_wins(store: IdempotencyStore) -> None:
    store.claim(ACCOUNT, KEY, owner="task-a")
    assert store.mark_sent(ACCOUNT, KEY, owner="task-a", result=RESULT)
    assert not store.mark_sent(ACCOUNT, KEY, owner="task-a", result={"msg_id": "other"})
    assert store.claim(ACCOUNT, KEY, owner="task-b").result == RESULT


def test_keys_are_per_account(store: IdempotencyStore) -> None:
    store.claim("default", KEY, owner="task-a")
    assert store.claim("other-oa", KEY, owner="task-b").state is ClaimState.CLAIMED


def test_twenty_threads_claiming_one_key_yield_exactly_one_claim(store: IdempotencyStore) -> None:
    # Given 20 deliveries of the same job racing on 20 threads
    # When they all claim at once
    claims = run_in_threads(20, lambda i: store.claim(ACCOUNT, KEY, owner=f"task-{i}"))
    # Then exactly one goes ahead and the others are told it is busy
    states = [c.state for c in claims]
    assert states.count(ClaimState.CLAIMED) == 1
    assert states.count(ClaimState.BUSY) == 19
    winner = f"task-{states.index(ClaimState.CLAIMED)}"
    assert store.release(ACCOUNT, KEY, owner=winner)

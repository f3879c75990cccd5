"""Parking lot and dead-letter store against a real Redis, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.fakes import FakeClock
from worker.clock import ms
from worker.state.deadletters import DeadLetter, DeadLetterStore
from worker.state.keys import Keys
from worker.state.parking import ParkedJob, ParkingLot
from worker.status import ParkReason

ACCOUNT = "default"
LEASE_S = 60.0
JOB: dict[str, Any] = {
    "phone": "84987654321",
    "template_id": "tpl-1",
    "template_data": {"order": "A-1", "amount": 120000},
    "journey": "order-A-1",
    "idempotency_key": "order-A-1:step-1",
    "tracking_id": "trk-1",
    "account": ACCOUNT,
}


@pytest.fixture
def lot(client: redis.Redis, keys: Keys, clock: FakeClock) -> ParkingLot:
    return ParkingLot(client, keys, clock=clock, lease_s=LEASE_S)


@pytest.fixture
def dead(client: redis.Redis, keys: Keys, clock: FakeClock) -> DeadLetterStore:
    return DeadLetterStore(client, keys, clock=clock)


def park(
    lot: ParkingLot, reason: ParkReason, due_at: float | None, n: int = 1, **extra: Any
) -> ParkedJob:
    return lot.park(
        ACCOUNT,
        reason=reason,
        due_at=due_at,
        kwargs={**JOB, "idempotency_key": f"k-{n}"},
        meta={"retries": n},
        **extra,
    )


def ids(jobs: list[ParkedJob]) -> list[str]:
    return [job.parking_id for job in jobs]


# --- parking ----------------------------------------------------------------------------------


def test_a_parked_job_is_stored_whole(
    lot: ParkingLot, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    due = clock() + 3600
    job = park(lot, ParkReason.QUOTA, due, detail="daily quota used up")

    assert job.parked_at == clock()
    assert lot.entries(ACCOUNT) == [job]
    assert lot.count(ACCOUNT) == 1
    assert client.zscore(keys.parked(ACCOUNT), job.parking_id) == ms(due)
    stored = ParkedJob.from_json(str(client.hget(keys.parked_jobs(ACCOUNT), job.parking_id)))
    assert stored == job
    assert stored.kwargs == {**JOB, "idempotency_key": "k-1"}
    assert stored.meta == {"retries": 1}
    assert stored.detail == "daily quota used up"


def test_paused_jobs_wait_at_plus_infinity(
    lot: ParkingLot, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    # Given a job parked until a human resumes the account
    job = park(lot, ParkReason.PAUSED, None)
    # Then it is scored +inf and never becomes due by time alone
    assert client.zscore(keys.parked(ACCOUNT), job.parking_id) == float("inf")
    assert lot.entries(ACCOUNT)[0].due_at is None
    clock.advance(365 * 86_400)
    assert lot.lease_due(ACCOUNT, 100) == []


def test_lease_due_returns_only_due_jobs(lot: ParkingLot, clock: FakeClock) -> None:
    # Given jobs due in the past, right now, in the future, and never (paused)
    past = park(lot, ParkReason.NIGHT, clock() - 10, 1)
    now = park(lot, ParkReason.BUSY, clock(), 2)
    park(lot, ParkReason.QUOTA, clock() + 10, 3)
    park(lot, ParkReason.PAUSED, None, 4)
    # When a releaser leases what is due
    leased = lot.lease_due(ACCOUNT, 100)
    # Then it gets exactly the past and present ones, soonest first
    assert ids(leased) == [past.parking_id, now.parking_id]
    assert leased == [past, now]


def test_lease_due_honours_the_limit_soonest_first(lot: ParkingLot, clock: FakeClock) -> None:
    jobs = [park(lot, ParkReason.NIGHT, clock() - 100 + n, n) for n in range(5)]

    first = lot.lease_due(ACCOUNT, 2)
    second = lot.lease_due(ACCOUNT, 2)

    assert ids(first) == ids(jobs[:2])
    assert ids(second) == ids(jobs[2:4])


def test_a_lease_hides_jobs_until_it_runs_out_if_done_is_never_called(
    lot: ParkingLot, clock: FakeClock
) -> None:
    # Given a releaser leased a due job and died before re-enqueueing it
    job = park(lot, ParkReason.QUOTA, clock() - 1)
    assert ids(lot.lease_due(ACCOUNT, 10)) == [job.parking_id]
    # Then no other releaser sees it while the lease lasts
    assert lot.lease_due(ACCOUNT, 10) == []
    clock.advance(LEASE_S - 1)
    assert lot.lease_due(ACCOUNT, 10) == []
    # And once the lease has run out it comes back (a duplicate publish idempotency absorbs)
    clock.advance(1)
    assert ids(lot.lease_due(ACCOUNT, 10)) == [job.parking_id]
    assert lot.count(ACCOUNT) == 1


def test_done_forgets_re_enqueued_jobs(lot: ParkingLot, clock: FakeClock) -> None:
    # Given two due jobs leased and re-enqueued
    a = park(lot, ParkReason.QUOTA, clock(), 1)
    b = park(lot, ParkReason.QUOTA, clock(), 2)
    kept = park(lot, ParkReason.QUOTA, clock() + 3600, 3)
    lot.lease_due(ACCOUNT, 10)
    # When the releaser reports them done
    lot.done(ACCOUNT, [a.parking_id, b.parking_id])
    # Then they are gone for good, even after the lease would have run out
    clock.advance(LEASE_S * 2)
    assert lot.lease_due(ACCOUNT, 10) == []
    assert lot.entries(ACCOUNT) == [kept]
    lot.done(ACCOUNT, [])  # nothing to do is fine


def test_a_member_without_its_job_body_is_dropped_not_leased(
    lot: ParkingLot, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    job = park(lot, ParkReason.QUOTA, clock())
    client.hdel(keys.parked_jobs(ACCOUNT), job.parking_id)

    assert lot.lease_due(ACCOUNT, 10) == []

    assert lot.count(ACCOUNT) == 0


def test_wake_by_reason_makes_only_those_due_now(lot: ParkingLot, clock: FakeClock) -> None:
    # Given jobs waiting for a resume and for the quota reset
    paused = [park(lot, ParkReason.PAUSED, None, n) for n in range(3)]
    quota = park(lot, ParkReason.QUOTA, clock() + 3600, 9)
    # When the account is resumed
    woken = lot.wake(ACCOUNT, {ParkReason.PAUSED})
    # Then the paused jobs are due now, the quota job still waits for its reset
    assert woken == 3
    assert sorted(ids(lot.lease_due(ACCOUNT, 10))) == sorted(ids(paused))
    assert ids(lot.entries(ACCOUNT))[-1] == quota.parking_id  # due in an hour, not leased
    assert lot.count(ACCOUNT) == 4


def test_wake_without_reasons_wakes_everything(lot: ParkingLot, clock: FakeClock) -> None:
    park(lot, ParkReason.PAUSED, None, 1)
    park(lot, ParkReason.QUOTA, clock() + 3600, 2)
    park(lot, ParkReason.NIGHT, clock() + 60, 3)

    assert lot.wake(ACCOUNT) == 3

    assert len(lot.lease_due(ACCOUNT, 10)) == 3


def test_wake_of_an_account_with_nothing_parked(lot: ParkingLot) -> None:
    assert lot.wake(ACCOUNT, {ParkReason.PAUSED}) == 0


def test_parking_is_per_account(lot: ParkingLot, clock: FakeClock) -> None:
    lot.park("other-oa", reason=ParkReason.QUOTA, due_at=clock(), kwargs=JOB, meta={})
    assert lot.lease_due(ACCOUNT, 10) == []
    assert lot.count(ACCOUNT) == 0
    assert lot.count("other-oa") == 1


def test_entries_are_soonest_first_and_limited(lot: ParkingLot, clock: FakeClock) -> None:
    late = park(lot, ParkReason.QUOTA, clock() + 300, 1)
    never = park(lot, ParkReason.PAUSED, None, 2)
    soon = park(lot, ParkReason.NIGHT, clock() + 10, 3)

    assert ids(lot.entries(ACCOUNT)) == [soon.parking_id, late.parking_id, never.parking_id]
    assert ids(lot.entries(ACCOUNT, limit=2)) == [soon.parking_id, late.parking_id]


# --- dead letters -----------------------------------------------------------------------------

HISTORY = [
    {"attempt": 1, "code": -100, "error_class": "transient", "at_ms": 1},
    {"attempt": 2, "code": -108, "error_class": "recipient", "at_ms": 2},
]


def test_a_dead_letter_keeps_the_full_job_and_its_history(
    dead: DeadLetterStore, clock: FakeClock
) -> None:
    # Given a job Zalo refused for its recipient after a transient failure
    entry = dead.add(
        reason="phone is not a Zalo user",
        error_class="recipient",
        code=-108,
        kwargs=JOB,
        account=ACCOUNT,
        idempotency_key="order-A-1:step-1",
        history=HISTORY,
        task_id="task-1",
    )
    # When an operator looks it up
    stored = dead.get(entry.id)
    # Then everything needed to understand and replay it is there
    assert stored == entry
    assert stored == DeadLetter(
        id=entry.id,
        reason="phone is not a Zalo user",
        error_class="recipient",
        code=-108,
        account=ACCOUNT,
        idempotency_key="order-A-1:step-1",
        kwargs=JOB,
        history=HISTORY,
        task_id="task-1",
        dead_at_ms=ms(clock()),
    )


def test_a_malformed_job_is_kept_as_received(dead: DeadLetterStore) -> None:
    raw: list[Any] = ["not", "a", {"dict": None}]
    entry = dead.add(reason="job is not an object", error_class="invalid", code=None, kwargs=raw)
    stored = dead.get(entry.id)
    assert stored is not None
    assert stored.kwargs == raw
    assert stored.history == []
    assert stored.account is None


def test_get_of_an_unknown_id_is_none(dead: DeadLetterStore) -> None:
    assert dead.get("no-such-id") is None


def test_entries_are_oldest_first_with_offset_and_limit(
    dead: DeadLetterStore, clock: FakeClock
) -> None:
    added = []
    for n in range(5):
        added.append(dead.add(reason=f"r{n}", error_class="template", code=-109, kwargs={"n": n}))
        clock.advance(1)

    assert dead.entries() == added
    assert dead.entries(limit=2) == added[:2]
    assert dead.entries(limit=2, offset=3) == added[3:]
    assert dead.entries(offset=10) == []
    assert dead.all_ids() == [entry.id for entry in added]
    assert dead.count() == 5


def test_remove_returns_how_many_existed(dead: DeadLetterStore) -> None:
    a = dead.add(reason="a", error_class="template", code=-109, kwargs={})
    b = dead.add(reason="b", error_class="template", code=-109, kwargs={})
    kept = dead.add(reason="c", error_class="template", code=-109, kwargs={})

    assert dead.remove([a.id, b.id, "no-such-id"]) == 2
    assert dead.remove([a.id]) == 0
    assert dead.remove([]) == 0

    assert dead.get(a.id) is None
    assert dead.entries() == [kept]
    assert dead.count() == 1


def test_dead_letters_are_never_trimmed(dead: DeadLetterStore, client: redis.Redis) -> None:
    for n in range(300):
        dead.add(reason="r", error_class="recipient", code=-108, kwargs={"n": n})
    assert dead.count() == 300
    assert len(dead.entries(limit=1000)) == 300
    assert all(client.ttl(key) == -1 for key in client.keys("zns:{dl}:*"))  # no expiry either

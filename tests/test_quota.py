"""Quota gate against a real Redis: the gates and the atomic reservation under contention, through
`StepGate.begin` (what the hot path runs), settled by `release` or `StepGate.finish_sent`;
observe/set, expiry, rebase."""

from __future__ import annotations

import uuid

import pytest
import redis

from tests.fakes import FakeClock, run_in_threads, step_gate
from worker.clock import ms, next_quota_reset
from worker.job import parse_job
from worker.state.keys import Keys
from worker.state.quota import QuotaStore, QuotaView
from worker.state.step_gate import Begin, StepGate, StepKeys
from worker.zalo.models import Quota

ACCOUNT = "default"
TEMPLATE = "tpl-1"


@pytest.fixture
def quota(client: redis.Redis, keys: Keys, clock: FakeClock) -> QuotaStore:
    return QuotaStore(client, keys, clock=clock)


def make_gate(client: redis.Redis, keys: Keys, clock: FakeClock, floor: int = 0) -> StepGate:
    """The hot path's gate (no rate limit), keeping `floor` quota units back."""
    return step_gate(client, keys, clock, floor=floor)


@pytest.fixture
def gate(client: redis.Redis, keys: Keys, clock: FakeClock) -> StepGate:
    return make_gate(client, keys, clock)


def step(account: str = ACCOUNT, template: str = TEMPLATE) -> StepKeys:
    """A job never seen before: only the gates can stop it."""
    return StepKeys(account, uuid.uuid4().hex, template, "unused-jt-key")


def reserve(
    gate: StepGate, account: str = ACCOUNT, template: str = TEMPLATE, *, probe: bool = False
) -> Begin:
    """Pass the gates and take one unit, as a send's `begin` does (for a fresh job)."""
    return gate.begin(step(account, template), owner="task", probe=probe).state


def send(gate: StepGate, keys: StepKeys, reported: int) -> None:
    """A send Zalo accepted, `reported` units left: `finish_sent` as the sender calls it."""
    raw = {"phone": "84987654321", "template_id": keys.template_id, "template_data": {"a": 1}}
    job = parse_job({**raw, "idempotency_key": keys.idempotency_key}, default_key="unused")
    figure = Quota.model_validate({"remainingQuota": reported, "dailyQuota": 1000})
    gate.finish_sent(keys, job, owner="task", result={"msg_id": "m"}, quota=figure)


def remaining(quota: QuotaStore) -> int | None:
    return quota.view(ACCOUNT).remaining


# --- the gates --------------------------------------------------------------------------------


def test_unknown_quota_is_not_guessed(
    quota: QuotaStore, gate: StepGate, client: redis.Redis, keys: Keys
) -> None:
    # No figure from Zalo yet: the caller must probe, not send blind
    job = step()
    assert gate.begin(job, owner="task", probe=False).state is Begin.UNKNOWN
    assert remaining(quota) is None
    # and the claim is given back, so the job may begin again after the probe
    assert not client.exists(keys.idempotency(ACCOUNT, job.idempotency_key))


def test_reserve_takes_one_unit(quota: QuotaStore, gate: StepGate) -> None:
    quota.set(ACCOUNT, 3, 500)

    assert reserve(gate) is Begin.OK

    assert remaining(quota) == 2


def test_exhausted_at_zero_and_nothing_is_taken(quota: QuotaStore, gate: StepGate) -> None:
    # Given one unit left
    quota.set(ACCOUNT, 1, 500)
    # When two sends ask
    first = reserve(gate)
    second = reserve(gate)
    # Then one passes and the other is told the quota is used up; the counter never goes negative
    assert (first, second) == (Begin.OK, Begin.EXHAUSTED)
    assert remaining(quota) == 0


def test_reserve_floor_keeps_units_back(
    quota: QuotaStore, gate: StepGate, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    # Given a worker for low-priority work that must leave 2 units for others
    low_priority = make_gate(client, keys, clock, floor=2)
    quota.set(ACCOUNT, 4, 500)
    # When it reserves until refused
    gates = [reserve(low_priority) for _ in range(4)]
    # Then it stops with the floor still in the counter
    assert gates == [Begin.OK, Begin.OK, Begin.EXHAUSTED, Begin.EXHAUSTED]
    assert remaining(quota) == 2
    # And a worker without a floor may still use them
    assert reserve(gate) is Begin.OK


def test_paused_account_is_gated_before_quota(
    quota: QuotaStore, client: redis.Redis, keys: Keys, gate: StepGate
) -> None:
    # Given a paused account with quota left
    quota.set(ACCOUNT, 10, 500)
    client.hset(keys.paused(ACCOUNT), mapping={"reason": "OA suspended", "since_ms": "1"})
    # Then a normal send is refused without taking a unit
    assert reserve(gate) is Begin.PAUSED
    assert remaining(quota) == 10
    # But the one probe send may pass the pause gate (and takes a unit like any send)
    assert reserve(gate, probe=True) is Begin.OK
    assert remaining(quota) == 9


def test_paused_wins_over_every_other_gate(
    quota: QuotaStore, client: redis.Redis, keys: Keys, gate: StepGate
) -> None:
    quota.block_template(ACCOUNT, TEMPLATE)
    client.hset(keys.paused(ACCOUNT), "reason", "x")
    assert reserve(gate) is Begin.PAUSED  # no quota known, template blocked


def test_blocked_template_is_gated_but_others_pass(quota: QuotaStore, gate: StepGate) -> None:
    # Given a template that hit its daily limit (-147)
    quota.set(ACCOUNT, 10, 500)
    quota.block_template(ACCOUNT, TEMPLATE)
    # Then that template is refused without taking a unit; another template still sends
    assert reserve(gate) is Begin.TEMPLATE_BLOCKED
    assert remaining(quota) == 10
    assert reserve(gate, template="tpl-2") is Begin.OK
    assert remaining(quota) == 9


def test_blocked_template_is_gated_even_for_a_probe(quota: QuotaStore, gate: StepGate) -> None:
    quota.set(ACCOUNT, 10, 500)
    quota.block_template(ACCOUNT, TEMPLATE)
    assert reserve(gate, probe=True) is Begin.TEMPLATE_BLOCKED


def test_quota_is_per_account(quota: QuotaStore, gate: StepGate) -> None:
    quota.set(ACCOUNT, 0, 500)
    quota.set("other-oa", 5, 500)
    assert reserve(gate) is Begin.EXHAUSTED
    assert reserve(gate, "other-oa") is Begin.OK


def test_two_hundred_concurrent_reserves_never_exceed_the_quota(
    quota: QuotaStore, gate: StepGate
) -> None:
    # Given 50 units left and 200 sends racing on 200 threads
    quota.set(ACCOUNT, 50, 500)
    # When they all reserve at once
    gates = run_in_threads(200, lambda _: reserve(gate))
    # Then exactly 50 go ahead, the rest are told to park, and the counter is at zero
    assert gates.count(Begin.OK) == 50
    assert gates.count(Begin.EXHAUSTED) == 150
    assert remaining(quota) == 0


# --- observe / set / release ------------------------------------------------------------------


def test_observe_lowers_the_counter(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 100, 500)
    assert quota.observe(ACCOUNT, 40, 500) == 40
    assert remaining(quota) == 40


def test_observe_never_raises_the_counter(quota: QuotaStore) -> None:
    # Given sends in flight already took units (counter 10)
    quota.set(ACCOUNT, 10, 500)
    # When a send reports the figure Zalo had before those sends (12)
    after = quota.observe(ACCOUNT, 12, 500)
    # Then the counter stays at 10: raising it would let in-flight sends be counted twice
    assert after == 10
    assert remaining(quota) == 10


def test_observe_seeds_an_unknown_counter(quota: QuotaStore) -> None:
    assert quota.observe(ACCOUNT, 77, None) == 77
    assert quota.view(ACCOUNT).remaining == 77
    assert quota.view(ACCOUNT).daily is None


def test_set_raises_the_counter(quota: QuotaStore, gate: StepGate) -> None:
    # Given an exhausted account
    quota.exhaust(ACCOUNT)
    assert reserve(gate) is Begin.EXHAUSTED
    # When a probe finds Zalo reset the quota early
    assert quota.set(ACCOUNT, 500, 500) == 500
    # Then sending resumes
    assert reserve(gate) is Begin.OK


def test_view_reports_daily_and_update_time(quota: QuotaStore, clock: FakeClock) -> None:
    quota.set(ACCOUNT, 120, 500)
    assert quota.view(ACCOUNT) == QuotaView(remaining=120, daily=500, updated_at_ms=ms(clock()))
    clock.advance(10)
    quota.observe(ACCOUNT, 119, None)  # no daily figure: the stored one stays
    assert quota.view(ACCOUNT) == QuotaView(remaining=119, daily=500, updated_at_ms=ms(clock()))


def test_view_of_an_unknown_account_is_empty(quota: QuotaStore) -> None:
    assert quota.view(ACCOUNT) == QuotaView(remaining=None, daily=None, updated_at_ms=None)


def test_release_gives_a_unit_back(quota: QuotaStore, gate: StepGate) -> None:
    # Given a reserved unit for a send Zalo surely did not make (connect error)
    quota.set(ACCOUNT, 5, 500)
    reserve(gate)
    # When it is released
    quota.release(ACCOUNT)
    # Then the counter is back where it was
    assert remaining(quota) == 5


def test_release_does_nothing_when_the_counter_is_gone(
    quota: QuotaStore, client: redis.Redis, keys: Keys, gate: StepGate
) -> None:
    # Given the counter expired (the quota reset) between reserve and release
    quota.set(ACCOUNT, 5, 500)
    reserve(gate)
    client.delete(keys.quota(ACCOUNT))
    # When the unit is released
    quota.release(ACCOUNT)
    # Then no counter of 1 is invented (that would let one blind send through)
    assert not client.exists(keys.quota(ACCOUNT))
    assert reserve(gate) is Begin.UNKNOWN


# --- expiry at the assumed reset --------------------------------------------------------------


def expire_time_ms(client: redis.Redis, key: str) -> int:
    return int(client.pexpiretime(key))


def test_counter_expires_at_the_next_reset_of_the_injected_clock(
    quota: QuotaStore, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    # Given the (fake) time is 15:30 in Vietnam
    reset = next_quota_reset(clock())
    # When a figure is set, observed, or the quota is exhausted
    quota.set(ACCOUNT, 10, 500)
    assert expire_time_ms(client, keys.quota(ACCOUNT)) == ms(reset)
    quota.observe(ACCOUNT, 9, 500)
    assert expire_time_ms(client, keys.quota(ACCOUNT)) == ms(reset)
    # Then the counter dies at the next Vietnam midnight, after which a probe must set it anew
    clock.advance(reset - clock() + 60)  # 00:01 the next day
    quota.exhaust(ACCOUNT)
    assert expire_time_ms(client, keys.quota(ACCOUNT)) == ms(next_quota_reset(clock()))
    assert expire_time_ms(client, keys.quota(ACCOUNT)) == ms(reset + 86_400)


def test_reserve_does_not_change_the_expiry(
    quota: QuotaStore, client: redis.Redis, keys: Keys, clock: FakeClock, gate: StepGate
) -> None:
    quota.set(ACCOUNT, 10, 500)
    reserve(gate)
    quota.release(ACCOUNT)
    assert expire_time_ms(client, keys.quota(ACCOUNT)) == ms(next_quota_reset(clock()))


def test_template_block_lasts_until_the_next_reset(
    quota: QuotaStore, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    until = quota.block_template(ACCOUNT, TEMPLATE)
    assert until == next_quota_reset(clock())
    assert expire_time_ms(client, keys.template_block(ACCOUNT, TEMPLATE)) == ms(until)


def test_a_counter_set_at_a_past_reset_is_gone_at_once(client: redis.Redis, keys: Keys) -> None:
    # Given a clock years behind Redis's (its "next reset" is already in the past for Redis)
    stale = QuotaStore(client, keys, clock=FakeClock(start=1_000_000_000.0))
    # When it sets a figure
    stale.set(ACCOUNT, 10, 500)
    # Then Redis expires the counter absolutely at that reset: nothing stale survives
    assert not client.exists(keys.quota(ACCOUNT))


def test_answers_out_of_order_do_not_drift_the_counter(quota: QuotaStore, gate: StepGate) -> None:
    # Given 1000 left and two sends in flight (A then B reach Zalo in that order)
    quota.init(ACCOUNT, 1000, 1000)
    a, b = step(), step()
    assert gate.begin(a, owner="task", probe=False).state is Begin.OK
    assert gate.begin(b, owner="task", probe=False).state is Begin.OK
    # When B's answer (Zalo: 998 left) arrives before A's (Zalo: 999 left)
    send(gate, b, 998)
    send(gate, a, 999)
    # Then the counter is exact and nothing is left in flight
    view = quota.view(ACCOUNT)
    assert (view.remaining, view.inflight) == (998, 0)


def test_probe_after_exhaustion_discounts_sends_in_flight(
    quota: QuotaStore, gate: StepGate
) -> None:
    quota.init(ACCOUNT, 3, 3)
    for _ in range(3):
        assert reserve(gate) is Begin.OK
    # Zalo has not counted the three sends in flight yet and still says 3
    assert quota.set(ACCOUNT, 3, 3) == 0
    assert reserve(gate) is Begin.EXHAUSTED


def test_probe_discounts_sends_settled_while_it_was_on_its_way(
    quota: QuotaStore, gate: StepGate
) -> None:
    # Given 10 units, 2 sends reserved, and a probe that reads the settled count before its call
    quota.init(ACCOUNT, 10, 10)
    first, second = step(), step()
    for keys in (first, second):
        assert gate.begin(keys, owner="task", probe=False).state is Begin.OK
    settled_before = quota.settled(ACCOUNT)
    # When Zalo answers the probe "10" before it counts either send, and both sends settle
    # (Zalo reports 9 then 8) before the probe's figure is folded in
    send(gate, first, reported=9)
    send(gate, second, reported=8)
    # Then the fold does not take the stale 10 for today's truth: both sends stay counted
    assert quota.set(ACCOUNT, 10, 10, settled_before=settled_before) == 8
    # And without the settled count the same fold over-counts by the two sends
    assert quota.set(ACCOUNT, 10, 10) == 10


def test_a_send_kept_spent_without_a_figure_counts_as_settled(
    quota: QuotaStore, gate: StepGate
) -> None:
    quota.init(ACCOUNT, 5, 5)
    before = quota.settled(ACCOUNT)
    assert reserve(gate) is Begin.OK
    quota.release(ACCOUNT, give_back=False)  # Zalo may have sent it
    assert quota.settled(ACCOUNT) == before + 1
    assert reserve(gate) is Begin.OK
    quota.release(ACCOUNT, give_back=True)  # Zalo surely did not
    assert quota.settled(ACCOUNT) == before + 1


def test_concurrent_first_probes_keep_reservations(quota: QuotaStore, gate: StepGate) -> None:
    quota.init(ACCOUNT, 100, 100)
    assert reserve(gate) is Begin.OK
    assert quota.init(ACCOUNT, 100, 100) == 99  # a late first probe does not undo the reservation


# --- a daily quota change (webhook change_oa_daily_quota) ---------------------------------------


def test_a_raised_daily_quota_keeps_what_was_used(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 600, 1000)  # 400 used today
    assert quota.rebase(ACCOUNT, 2000, prev_daily=1000) == 1600
    assert quota.view(ACCOUNT).daily == 2000


def test_a_repeated_change_moves_the_counter_once(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 600, 1000)
    quota.rebase(ACCOUNT, 2000, prev_daily=1000)
    assert quota.rebase(ACCOUNT, 2000, prev_daily=1000) == 1600


def test_the_daily_figure_we_hold_wins_over_the_events_previous_one(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 600, 1500)  # Zalo's last answer said 1500; the event says it was 1000
    assert quota.rebase(ACCOUNT, 2000, prev_daily=1000) == 1100


def test_without_a_held_daily_figure_the_events_previous_one_is_used(
    quota: QuotaStore, client: redis.Redis, keys: Keys
) -> None:
    quota.set(ACCOUNT, 600, None)
    assert quota.rebase(ACCOUNT, 800, prev_daily=1000) == 400
    client.hdel(keys.quota(ACCOUNT), "daily")
    assert quota.rebase(ACCOUNT, 900) == 400  # nothing to measure the change by


def test_a_lowered_daily_quota_never_goes_below_zero(quota: QuotaStore, gate: StepGate) -> None:
    quota.set(ACCOUNT, 100, 1000)  # 900 used
    assert quota.rebase(ACCOUNT, 500, prev_daily=1000) == 0
    assert reserve(gate) is Begin.EXHAUSTED


def test_without_a_counter_only_the_daily_figure_is_kept(
    quota: QuotaStore, client: redis.Redis, keys: Keys, clock: FakeClock, gate: StepGate
) -> None:
    assert quota.rebase(ACCOUNT, 500, prev_daily=1000) is None
    view = quota.view(ACCOUNT)
    assert (view.remaining, view.daily) == (None, 500)
    assert reserve(gate) is Begin.UNKNOWN  # the next probe sets the counter
    assert client.pttl(keys.quota(ACCOUNT)) > 0
    assert int(client.pexpiretime(keys.quota(ACCOUNT))) == ms(next_quota_reset(clock()))

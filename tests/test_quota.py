"""Quota gate against a real Redis: gates, atomic reserve under contention, observe/set, expiry."""

from __future__ import annotations

import pytest
import redis

from tests.fakes import FakeClock, run_in_threads
from worker.clock import ms, next_quota_reset
from worker.state.keys import Keys
from worker.state.quota import Gate, QuotaStore, QuotaView

ACCOUNT = "default"
TEMPLATE = "tpl-1"


@pytest.fixture
def quota(client: redis.Redis, keys: Keys, clock: FakeClock) -> QuotaStore:
    return QuotaStore(client, keys, clock=clock)


def remaining(quota: QuotaStore) -> int | None:
    return quota.view(ACCOUNT).remaining


# --- the gates --------------------------------------------------------------------------------


def test_unknown_quota_is_not_guessed(quota: QuotaStore) -> None:
    # No figure from Zalo yet: the caller must probe, not send blind
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.UNKNOWN
    assert remaining(quota) is None


def test_reserve_takes_one_unit(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 3, 500)

    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.OK

    assert remaining(quota) == 2


def test_exhausted_at_zero_and_nothing_is_taken(quota: QuotaStore) -> None:
    # Given one unit left
    quota.set(ACCOUNT, 1, 500)
    # When two sends ask
    first = quota.reserve(ACCOUNT, TEMPLATE)
    second = quota.reserve(ACCOUNT, TEMPLATE)
    # Then one passes and the other is told the quota is used up; the counter never goes negative
    assert (first, second) == (Gate.OK, Gate.EXHAUSTED)
    assert remaining(quota) == 0


def test_reserve_floor_keeps_units_back(client: redis.Redis, keys: Keys, clock: FakeClock) -> None:
    # Given a worker for low-priority work that must leave 2 units for others
    low_priority = QuotaStore(client, keys, clock=clock, reserve_floor=2)
    low_priority.set(ACCOUNT, 4, 500)
    # When it reserves until refused
    gates = [low_priority.reserve(ACCOUNT, TEMPLATE) for _ in range(4)]
    # Then it stops with the floor still in the counter
    assert gates == [Gate.OK, Gate.OK, Gate.EXHAUSTED, Gate.EXHAUSTED]
    assert low_priority.view(ACCOUNT).remaining == 2
    # And a worker without a floor may still use them
    assert QuotaStore(client, keys, clock=clock).reserve(ACCOUNT, TEMPLATE) is Gate.OK


def test_paused_account_is_gated_before_quota(
    quota: QuotaStore, client: redis.Redis, keys: Keys
) -> None:
    # Given a paused account with quota left
    quota.set(ACCOUNT, 10, 500)
    client.hset(keys.paused(ACCOUNT), mapping={"reason": "OA suspended", "since_ms": "1"})
    # Then a normal send is refused without taking a unit
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.PAUSED
    assert remaining(quota) == 10
    # But the one probe send may pass the pause gate (and takes a unit like any send)
    assert quota.reserve(ACCOUNT, TEMPLATE, probe=True) is Gate.OK
    assert remaining(quota) == 9


def test_paused_wins_over_every_other_gate(
    quota: QuotaStore, client: redis.Redis, keys: Keys
) -> None:
    quota.block_template(ACCOUNT, TEMPLATE)
    client.hset(keys.paused(ACCOUNT), "reason", "x")
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.PAUSED  # no quota known, template blocked


def test_blocked_template_is_gated_but_others_pass(quota: QuotaStore) -> None:
    # Given a template that hit its daily limit (-147)
    quota.set(ACCOUNT, 10, 500)
    quota.block_template(ACCOUNT, TEMPLATE)
    # Then that template is refused without taking a unit; another template still sends
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.TEMPLATE_BLOCKED
    assert remaining(quota) == 10
    assert quota.reserve(ACCOUNT, "tpl-2") is Gate.OK
    assert remaining(quota) == 9


def test_blocked_template_is_gated_even_for_a_probe(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 10, 500)
    quota.block_template(ACCOUNT, TEMPLATE)
    assert quota.reserve(ACCOUNT, TEMPLATE, probe=True) is Gate.TEMPLATE_BLOCKED


def test_quota_is_per_account(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 0, 500)
    quota.set("other-oa", 5, 500)
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.EXHAUSTED
    assert quota.reserve("other-oa", TEMPLATE) is Gate.OK


def test_two_hundred_concurrent_reserves_never_exceed_the_quota(quota: QuotaStore) -> None:
    # Given 50 units left and 200 sends racing on 200 threads
    quota.set(ACCOUNT, 50, 500)
    # When they all reserve at once
    gates = run_in_threads(200, lambda _: quota.reserve(ACCOUNT, TEMPLATE))
    # Then exactly 50 go ahead, the rest are told to park, and the counter is at zero
    assert gates.count(Gate.OK) == 50
    assert gates.count(Gate.EXHAUSTED) == 150
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


def test_set_raises_the_counter(quota: QuotaStore) -> None:
    # Given an exhausted account
    quota.exhaust(ACCOUNT)
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.EXHAUSTED
    # When a probe finds Zalo reset the quota early
    assert quota.set(ACCOUNT, 500, 500) == 500
    # Then sending resumes
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.OK


def test_view_reports_daily_and_update_time(quota: QuotaStore, clock: FakeClock) -> None:
    quota.set(ACCOUNT, 120, 500)
    assert quota.view(ACCOUNT) == QuotaView(remaining=120, daily=500, updated_at_ms=ms(clock()))
    clock.advance(10)
    quota.observe(ACCOUNT, 119, None)  # no daily figure: the stored one stays
    assert quota.view(ACCOUNT) == QuotaView(remaining=119, daily=500, updated_at_ms=ms(clock()))


def test_view_of_an_unknown_account_is_empty(quota: QuotaStore) -> None:
    assert quota.view(ACCOUNT) == QuotaView(remaining=None, daily=None, updated_at_ms=None)


def test_release_gives_a_unit_back(quota: QuotaStore) -> None:
    # Given a reserved unit for a send Zalo surely did not make (connect error)
    quota.set(ACCOUNT, 5, 500)
    quota.reserve(ACCOUNT, TEMPLATE)
    # When it is released
    quota.release(ACCOUNT)
    # Then the counter is back where it was
    assert remaining(quota) == 5


def test_release_does_nothing_when_the_counter_is_gone(
    quota: QuotaStore, client: redis.Redis, keys: Keys
) -> None:
    # Given the counter expired (the quota reset) between reserve and release
    quota.set(ACCOUNT, 5, 500)
    quota.reserve(ACCOUNT, TEMPLATE)
    client.delete(keys.quota(ACCOUNT))
    # When the unit is released
    quota.release(ACCOUNT)
    # Then no counter of 1 is invented (that would let one blind send through)
    assert not client.exists(keys.quota(ACCOUNT))
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.UNKNOWN


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
    quota: QuotaStore, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    quota.set(ACCOUNT, 10, 500)
    quota.reserve(ACCOUNT, TEMPLATE)
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


def test_answers_out_of_order_do_not_drift_the_counter(quota: QuotaStore) -> None:
    # Given 1000 left and two sends in flight (A then B reach Zalo in that order)
    quota.init(ACCOUNT, 1000, 1000)
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.OK
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.OK
    # When B's answer (Zalo: 998 left) arrives before A's (Zalo: 999 left)
    quota.observe(ACCOUNT, 998, 1000)
    quota.observe(ACCOUNT, 999, 1000)
    # Then the counter is exact and nothing is left in flight
    view = quota.view(ACCOUNT)
    assert (view.remaining, view.inflight) == (998, 0)


def test_probe_after_exhaustion_discounts_sends_in_flight(quota: QuotaStore) -> None:
    quota.init(ACCOUNT, 3, 3)
    for _ in range(3):
        assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.OK
    # Zalo has not counted the three sends in flight yet and still says 3
    assert quota.set(ACCOUNT, 3, 3) == 0
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.EXHAUSTED


def test_concurrent_first_probes_keep_reservations(quota: QuotaStore) -> None:
    quota.init(ACCOUNT, 100, 100)
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.OK
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


def test_a_lowered_daily_quota_never_goes_below_zero(quota: QuotaStore) -> None:
    quota.set(ACCOUNT, 100, 1000)  # 900 used
    assert quota.rebase(ACCOUNT, 500, prev_daily=1000) == 0
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.EXHAUSTED


def test_without_a_counter_only_the_daily_figure_is_kept(
    quota: QuotaStore, client: redis.Redis, keys: Keys, clock: FakeClock
) -> None:
    assert quota.rebase(ACCOUNT, 500, prev_daily=1000) is None
    view = quota.view(ACCOUNT)
    assert (view.remaining, view.daily) == (None, 500)
    assert quota.reserve(ACCOUNT, TEMPLATE) is Gate.UNKNOWN  # the next probe sets the counter
    assert client.pttl(keys.quota(ACCOUNT)) > 0
    assert int(client.pexpiretime(keys.quota(ACCOUNT))) == ms(next_quota_reset(clock()))

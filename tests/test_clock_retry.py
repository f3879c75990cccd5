"""Quota reset and morning in Asia/Ho_Chi_Minh; backoff bounds and cap; RetryPolicy validation."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.clock import VIETNAM, ms, next_morning, next_quota_reset, night_hours_resume_at
from worker.pipeline.retry import RetryPolicy, compute_backoff

DAY_S = 86_400.0


def vn(wall_time: str) -> float:
    """A wall time in Vietnam ("2024-05-10 23:59:59") as an epoch timestamp."""
    return datetime.fromisoformat(wall_time).replace(tzinfo=VIETNAM).timestamp()


def local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, VIETNAM)


# --- next_quota_reset -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (vn("2024-05-10 15:30:00"), vn("2024-05-11 00:00:00")),
        (vn("2024-05-10 23:59:59"), vn("2024-05-11 00:00:00")),
        (vn("2024-05-11 00:00:00"), vn("2024-05-12 00:00:00")),  # at midnight: the next one
        (vn("2024-05-11 00:00:01"), vn("2024-05-12 00:00:00")),
        (vn("2024-12-31 23:30:00"), vn("2025-01-01 00:00:00")),
        (vn("2024-02-28 12:00:00"), vn("2024-02-29 00:00:00")),  # leap day
    ],
)
def test_next_quota_reset_is_the_next_vietnam_midnight(now: float, expected: float) -> None:
    assert next_quota_reset(now) == expected


def test_quota_reset_follows_vietnam_not_utc() -> None:
    # Given 16:59:59 UTC, which is 23:59:59 in Vietnam (UTC+7)
    now = datetime(2024, 5, 10, 16, 59, 59, tzinfo=UTC).timestamp()
    # Then the reset is one second away, not seven hours later at UTC midnight
    assert next_quota_reset(now) - now == 1.0
    # And at 17:00 UTC (00:00 Vietnam) the next reset is a full day away
    assert next_quota_reset(now + 1) - (now + 1) == DAY_S


def test_fractional_seconds_just_before_midnight() -> None:
    now = vn("2024-05-10 23:59:59") + 0.999
    assert next_quota_reset(now) == vn("2024-05-11 00:00:00")


#: Instants between 2000 and 2100 at microsecond resolution (what `datetime` can represent; a
#: float a fraction of a microsecond before midnight is rounded onto it by `fromtimestamp`).
INSTANTS = st.integers(
    min_value=int(vn("2000-01-01 00:00:00")) * 1_000_000,
    max_value=int(vn("2100-01-01 00:00:00")) * 1_000_000,
).map(lambda us: us / 1_000_000)


@given(INSTANTS)
def test_quota_reset_is_a_midnight_within_one_day(now: float) -> None:
    reset = next_quota_reset(now)
    assert 0 < reset - now <= DAY_S
    assert local(reset).time().isoformat() == "00:00:00"


# --- next_morning -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (vn("2024-05-10 22:00:00"), vn("2024-05-11 06:00:00")),  # night starts: tomorrow 06:00
        (vn("2024-05-10 23:59:59"), vn("2024-05-11 06:00:00")),
        (vn("2024-05-11 00:00:00"), vn("2024-05-11 06:00:00")),  # after midnight: the same day
        (vn("2024-05-11 00:30:00"), vn("2024-05-11 06:00:00")),
        (vn("2024-05-11 05:59:59"), vn("2024-05-11 06:00:00")),
        (vn("2024-05-11 06:00:00"), vn("2024-05-12 06:00:00")),  # at 06:00: the next one
        (vn("2024-05-11 06:00:01"), vn("2024-05-12 06:00:00")),
        (vn("2024-12-31 22:15:00"), vn("2025-01-01 06:00:00")),
    ],
)
def test_next_morning_is_the_next_0600_in_vietnam(now: float, expected: float) -> None:
    assert next_morning(now) == expected


def test_next_morning_just_before_six_is_moments_away() -> None:
    now = vn("2024-05-11 05:59:59") + 0.5
    assert next_morning(now) - now == pytest.approx(0.5)


def test_next_morning_follows_vietnam_not_utc() -> None:
    # 22:30 UTC is 05:30 in Vietnam: half an hour to go, not 7.5 hours to 06:00 UTC
    now = datetime(2024, 5, 10, 22, 30, tzinfo=UTC).timestamp()
    assert next_morning(now) - now == 30 * 60


@given(INSTANTS)
def test_next_morning_is_a_six_oclock_within_one_day(now: float) -> None:
    morning = next_morning(now)
    assert 0 < morning - now <= DAY_S
    assert local(morning).time().isoformat() == "06:00:00"


def test_ms_truncates_to_integer_milliseconds() -> None:
    assert ms(1.2345) == 1234
    assert ms(0) == 0
    assert isinstance(ms(1.5), int)


# --- compute_backoff --------------------------------------------------------------------------


class Edges(random.Random):
    """A Random whose `uniform` returns one end of the range, to read the bounds exactly."""

    def __init__(self, *, upper: bool) -> None:
        super().__init__(0)
        self.upper = upper

    def uniform(self, a: float, b: float) -> float:
        return b if self.upper else a


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0), (4, 32.0), (5, 60.0), (6, 60.0), (50, 60.0)],
)
def test_backoff_ceiling_doubles_per_attempt_up_to_the_cap(attempt: int, ceiling: float) -> None:
    high = compute_backoff(attempt, base_s=2.0, max_s=60.0, rand=Edges(upper=True))
    low = compute_backoff(attempt, base_s=2.0, max_s=60.0, rand=Edges(upper=False))
    assert high == ceiling
    assert low == 1.0  # half the base, so a retry never fires immediately


def test_negative_attempt_counts_as_the_first() -> None:
    assert compute_backoff(-3, base_s=2.0, max_s=60.0, rand=Edges(upper=True)) == 2.0


def test_cap_below_half_the_base_is_still_respected() -> None:
    # max_s < base_s/2: the floor is lowered to the cap rather than exceeding it
    for upper in (True, False):
        assert compute_backoff(0, base_s=10.0, max_s=1.0, rand=Edges(upper=upper)) == 1.0


@pytest.mark.parametrize("attempt", range(12))
def test_backoff_stays_within_bounds(attempt: int) -> None:
    rand = random.Random(attempt)
    ceiling = min(60.0, 2.0 * 2**attempt)
    for _ in range(200):
        delay = compute_backoff(attempt, base_s=2.0, max_s=60.0, rand=rand)
        assert 1.0 <= delay <= ceiling


def test_backoff_is_jittered_across_the_whole_range() -> None:
    # Given many draws at one attempt
    rand = random.Random(42)
    delays = [compute_backoff(5, base_s=1.0, max_s=60.0, rand=rand) for _ in range(1000)]
    # Then they spread from near the floor to near the ceiling (no thundering herd)
    assert min(delays) < 2.0
    assert max(delays) > 30.0
    assert len(set(delays)) > 900


def test_backoff_without_a_random_uses_the_module_random() -> None:
    delay = compute_backoff(3, base_s=2.0, max_s=60.0)
    assert 1.0 <= delay <= 16.0


def test_backoff_with_a_huge_attempt_is_capped_not_an_overflow() -> None:
    assert compute_backoff(2000, base_s=2.0, max_s=60.0, rand=Edges(upper=True)) == 60.0


# --- RetryPolicy ------------------------------------------------------------------------------


def test_retry_policy_defaults_are_valid() -> None:
    policy = RetryPolicy()
    assert 0 < policy.base_delay_s <= policy.max_delay_s
    assert policy.max_transient_retries >= 0
    assert policy.max_unknown_retries >= 0


def test_retry_policy_accepts_equal_base_and_max() -> None:
    policy = RetryPolicy(base_delay_s=5.0, max_delay_s=5.0, max_transient_retries=0)
    assert policy.max_delay_s == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_delay_s": 0.0},
        {"base_delay_s": -1.0},
        {"base_delay_s": 10.0, "max_delay_s": 5.0},
        {"max_transient_retries": -1},
        {"max_unknown_retries": -1},
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"base_delay_s|retry caps"):
        RetryPolicy(**kwargs)


def test_retry_policy_is_immutable() -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.base_delay_s = 1.0  # type: ignore[misc]


def test_night_hours_error_at_night_waits_for_morning() -> None:
    night = datetime(2026, 11, 26, 23, 30, tzinfo=VIETNAM).timestamp()
    assert night_hours_resume_at(night, daytime_retry_s=600) == next_morning(night)


def test_night_hours_error_in_the_day_retries_soon_not_tomorrow() -> None:
    # Zalo's clock lags ours: its -133 arrives at 06:00:05 by our clock
    morning = datetime(2026, 11, 26, 6, 0, 5, tzinfo=VIETNAM).timestamp()
    assert night_hours_resume_at(morning, daytime_retry_s=600) == morning + 600

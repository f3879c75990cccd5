"""Injected time: every expiry, reset and backoff reads a `Clock`, so tests never sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], float]
"""Seconds since the epoch, like `time.time`."""

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
MORNING_HOUR = 6  # -133: no sending 22:00-06:00 Vietnam time
NIGHT_HOUR = 22


def system_clock() -> float:
    """The real wall clock."""
    return time.time()


def ms(seconds: float) -> int:
    """Seconds -> integer milliseconds."""
    return int(seconds * 1000)


def next_quota_reset(now: float) -> float:
    """Next midnight Asia/Ho_Chi_Minh: Zalo does not publish its reset; this is the assumption."""
    local = datetime.fromtimestamp(now, VIETNAM)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


def next_morning(now: float) -> float:
    """Next 06:00 in Asia/Ho_Chi_Minh, when sending is allowed again after -133."""
    local = datetime.fromtimestamp(now, VIETNAM)
    morning = local.replace(hour=MORNING_HOUR, minute=0, second=0, microsecond=0)
    if morning <= local:
        morning += timedelta(days=1)
    return morning.timestamp()


def night_hours_resume_at(now: float, *, daytime_retry_s: float) -> float:
    """When to try again after -133: 06:00, unless our clock says it is already day (Zalo's clock
    lags ours by a little, or its window differs): then soon, not a whole day later."""
    hour = datetime.fromtimestamp(now, VIETNAM).hour
    if MORNING_HOUR <= hour < NIGHT_HOUR:
        return now + daytime_retry_s
    return next_morning(now)

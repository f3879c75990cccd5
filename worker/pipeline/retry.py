"""Retry policy: how often and how long to wait, as one validated object and one pure function."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_DOUBLINGS = 62  # 2**62 * any sane base is past any cap; more would overflow a float


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Caps and delays for retries. Every delay stays far below the broker's visibility timeout."""

    base_delay_s: float = 2.0
    max_delay_s: float = 60.0
    max_transient_retries: int = 8  # ~5 minutes of Zalo saying "later" before a dead letter
    max_unknown_retries: int = 3  # a code we do not know: a few tries, then a human looks

    def __post_init__(self) -> None:
        if self.base_delay_s <= 0 or self.max_delay_s < self.base_delay_s:
            raise ValueError("need 0 < base_delay_s <= max_delay_s")
        if self.max_transient_retries < 0 or self.max_unknown_retries < 0:
            raise ValueError("retry caps must be >= 0")


def compute_backoff(
    attempt: int, *, base_s: float, max_s: float, rand: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(max, base * 2**attempt)]."""
    ceiling = min(max_s, base_s * 2.0 ** min(max(attempt, 0), MAX_DOUBLINGS))
    low = min(base_s / 2, ceiling)
    return (rand or random).uniform(low, ceiling)

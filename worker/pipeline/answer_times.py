"""How long Zalo has been taking to answer each account's sends, as this process saw them.

An exponentially weighted average per account, updated after every send. It tells a slow account
(Zalo answering it in seconds) from a busy process: answer times are measured in the worker's
threads, and a process saturated by its own work (one fast account keeping every thread busy)
makes every answer look slow while each thread waits for the interpreter. So an account is slow
only when its answers average over the threshold *and* over `RELATIVE` times those of the fastest
other account that sent in the last `RECENT_S`: slower than its neighbours under the same load.
With no other account sending there is nobody to make room for, and nothing is slow. The
in-flight cap is enforced on steps arriving from the queue only for slow accounts
(docs/design.md, fair lanes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Weight of the newest answer: the average follows a change within a handful of sends.
ALPHA = 0.3
#: Slower than the fastest other account by this factor.
RELATIVE = 3.0
#: Other accounts count as neighbours while they sent within this many seconds.
RECENT_S = 60.0


@dataclass(slots=True)
class _Answers:
    average: float
    at: float


class AnswerTimes:
    """Per-account average time of Zalo's answers to sends (seconds)."""

    def __init__(self, slow_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._slow_s = slow_s
        self._clock = clock
        self._seen: dict[str, _Answers] = {}
        self._lock = threading.Lock()

    def record(self, account: str, seconds: float) -> None:
        """One send's answer time."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(account)
            if seen is None:
                self._seen[account] = _Answers(seconds, now)
            else:
                seen.average += ALPHA * (seconds - seen.average)
                seen.at = now

    def slow(self, account: str) -> bool:
        """Whether Zalo's recent answers to this account are slow (see the module docstring)."""
        mine = self._seen.get(account)
        if mine is None or mine.average <= self._slow_s:
            return False
        now = self._clock()
        with self._lock:
            others = [
                seen.average
                for name, seen in self._seen.items()
                if name != account and now - seen.at <= RECENT_S
            ]
        return bool(others) and mine.average > RELATIVE * min(others)

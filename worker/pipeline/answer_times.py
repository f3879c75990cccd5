"""How long Zalo has been taking to answer each account's sends, as this process saw them.

An exponentially weighted average per account, updated after every send. It tells a slow account
(Zalo answering it in seconds) from a busy process: answer times are measured in the worker's
threads, and a process saturated by its own work (one fast account keeping every thread busy)
makes every answer look slow while each thread waits for the interpreter. That wait is measured
too: a probe thread sleeps a short while and records how late it wakes (`record_lag`), which is
how long a thread whose answer has arrived waits for its turn. An account is slow when its
answers average over the threshold and either

- still do after taking `LAG_FACTOR` times that wait off (Zalo is slow for it, whatever the
  process's load, alone or not), or
- are over `RELATIVE` times those of the fastest other account that sent in the last
  `RECENT_S` (slower than its neighbours under the same load).

The in-flight cap is enforced (`capped`) for slow accounts, and for accounts this process has
no answer from yet: until the first answers show Zalo fast for an account, its steps cannot take
every thread of the process for seconds (docs/design.md, fair lanes).
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
#: A send waits for the interpreter more than once (to send, to read the answer, to parse it):
#: this many times the probe's wait is taken off an answer time before it counts as Zalo's.
LAG_FACTOR = 3.0


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
        self._lag = 0.0
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

    def record_lag(self, seconds: float) -> None:
        """How late the probe thread woke: what a thread waits for the interpreter now."""
        self._lag += ALPHA * (max(0.0, seconds) - self._lag)

    @property
    def lag(self) -> float:
        """The average wait for the interpreter (seconds)."""
        return self._lag

    def capped(self, account: str) -> bool:
        """Whether the account's in-flight cap applies: Zalo is slow for it, or no answer for it
        has come back to this process yet."""
        return account not in self._seen or self.slow(account)

    def slow(self, account: str) -> bool:
        """Whether Zalo's recent answers to this account are slow (see the module docstring)."""
        mine = self._seen.get(account)
        if mine is None or mine.average <= self._slow_s:
            return False
        if mine.average - LAG_FACTOR * self._lag > self._slow_s:
            return True
        now = self._clock()
        with self._lock:
            others = [
                seen.average
                for name, seen in self._seen.items()
                if name != account and now - seen.at <= RECENT_S
            ]
        return bool(others) and mine.average > RELATIVE * min(others)

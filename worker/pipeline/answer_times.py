"""How long Zalo has been taking to answer each account's sends, as this process saw them.

An exponentially weighted average per account, updated after every send. It tells a slow account
(Zalo answering it in seconds) from a busy one (a process saturated by a fast account keeps as
many steps claimed as it has threads, each waiting for the interpreter, not for Zalo): the
in-flight cap is enforced on steps arriving from the queue only for slow accounts
(docs/design.md, fair lanes).
"""

from __future__ import annotations

import threading

#: Weight of the newest answer: the average follows a change within a handful of sends.
ALPHA = 0.3


class AnswerTimes:
    """Per-account average time of Zalo's answers to sends (seconds)."""

    def __init__(self, slow_s: float) -> None:
        self._slow_s = slow_s
        self._average: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, account: str, seconds: float) -> None:
        """One send's answer time."""
        with self._lock:
            before = self._average.get(account)
            self._average[account] = (
                seconds if before is None else before + ALPHA * (seconds - before)
            )

    def slow(self, account: str) -> bool:
        """Whether Zalo's recent answers to this account took longer than the threshold."""
        average = self._average.get(account)
        return average is not None and average > self._slow_s

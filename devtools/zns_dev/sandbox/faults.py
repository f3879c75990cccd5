"""Fault injection: how late a Zalo call is answered and which failure (if any) it suffers.

Pure decisions from seeded dice; the HTTP app carries them out. Faults never touch the
`/_sandbox` control API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from zns_dev.sandbox.config import REFRESH, SEND, SandboxConfig


class Fault(StrEnum):
    """A failure the sandbox can inflict instead of (or after) a normal answer."""

    DROP = "drop"  # connection closed, nothing processed
    HTTP_5XX = "5xx"  # HTTP 502/503 with an HTML body, nothing processed
    HTTP_429 = "429"  # HTTP 429, nothing processed
    ERROR_100 = "-100"  # HTTP 200 {"error": -100}, nothing processed
    DROP_AFTER_SEND = "drop_after_send"  # send processed, then the connection closed
    STALL = "stall"  # answered stall_ms late


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What happens to one call: wait `delay_s`, then fail with `before` or process it."""

    delay_s: float = 0.0
    before: Fault | None = None
    http_status: int | None = None  # for HTTP_5XX and HTTP_429
    drop_after: bool = False
    stalled: bool = False


NO_FAULT = FaultPlan()


class FaultDice:
    """Rolls a `FaultPlan` per call from the current config; seeded for reproducible runs."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - fault dice, not cryptography

    def reseed(self, seed: int | None) -> None:
        """Start the dice over (after a reset) so a seeded run replays the same faults."""
        self._rng.seed(seed)

    def plan(
        self, config: SandboxConfig, endpoint: str, *, oa_latency_ms: int | None = None
    ) -> FaultPlan:
        """The delay and fault for one call to `endpoint`; `oa_latency_ms`, the calling OA's own
        latency, replaces `config.latency_ms` (never the refresh's `oauth_latency_ms`)."""
        if endpoint == REFRESH:
            latency_ms = config.oauth_latency_ms
        else:
            latency_ms = config.latency_ms if oa_latency_ms is None else oa_latency_ms
        if endpoint not in config.fault_endpoints:
            return FaultPlan(delay_s=latency_ms / 1000) if latency_ms else NO_FAULT
        stalled = self._hit(config.stall_rate)
        delay_ms = latency_ms + (config.stall_ms if stalled else 0)
        before, status = self._before(config)
        drop_after = before is None and endpoint == SEND and self._hit(config.fault_drop_after_send)
        if not (delay_ms or before or drop_after or stalled):
            return NO_FAULT
        return FaultPlan(delay_ms / 1000, before, status, drop_after, stalled)

    def _before(self, config: SandboxConfig) -> tuple[Fault | None, int | None]:
        if self._hit(config.fault_drop):
            return Fault.DROP, None
        if self._hit(config.fault_5xx):
            return Fault.HTTP_5XX, self._rng.choice((502, 503))
        if self._hit(config.fault_429):
            return Fault.HTTP_429, 429
        if self._hit(config.fault_100):
            return Fault.ERROR_100, None
        return None, None

    def _hit(self, rate: float) -> bool:
        # No dice thrown for a zero rate: the fast path stays fast and the sequence stable.
        return rate > 0.0 and self._rng.random() < rate

"""Global rate limit per account, shared by every process and pod: GCRA in Redis (one round trip,
Redis server time, fails closed: no Redis, no slot, no send), plus a cool-off after HTTP 429.

Celery's own `rate_limit` is per worker process, so it cannot cap an OA's total send rate.
The hot path takes its slot inside `begin_step.lua`; `RateLimiter.slot` is the same algorithm
on its own (operators, tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import redis

from worker.settings import AccountSettings
from worker.state.keys import Keys
from worker.state.scripts import register


@dataclass(frozen=True, slots=True)
class RateParams:
    """GCRA parameters in microseconds: one send per `emission_us`, `tolerance_us` of burst
    credit. The interval is `rate_per_s` less the account's `rate_headroom`: a send reaches Zalo
    a little after its slot (thread wake-up, the HTTP write), and that jitter must not push any
    second above the configured rate."""

    emission_us: int
    tolerance_us: int

    @classmethod
    def of(cls, account: AccountSettings | None) -> RateParams:
        """From an account's `rate_per_s`, `rate_headroom` and `rate_burst` (no rate: no limit)."""
        if account is None or account.rate_per_s is None:
            return cls(0, 0)
        rate = account.rate_per_s * (1 - account.rate_headroom)
        emission = max(1, math.ceil(1_000_000 / rate))
        return cls(emission, emission * (account.rate_burst - 1))


@dataclass(frozen=True, slots=True)
class Slot:
    """A granted slot (send after `delay_s`) or a refusal (try again after `delay_s`)."""

    granted: bool
    delay_s: float
    at_s: float = 0.0  # a granted slot's time on Redis's clock (0: no limit)


class RateLimiter:
    """Slots and cool-offs for each account."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        accounts: Callable[[str], AccountSettings | None],
        max_wait_s: float,
    ) -> None:
        self._client = client
        self._keys = keys
        self._accounts = accounts
        self.max_wait_ms = int(max_wait_s * 1000)
        self._slot = register(client, "rate_slot")

    def params(self, account: str) -> RateParams:
        """The account's limit."""
        return RateParams.of(self._accounts(account))

    def slot(self, account: str) -> Slot:
        """Take a slot if one is free within `max_wait_s`."""
        keys, args = rate_slot_args(
            self._keys, account, self.params(account), max_wait_ms=self.max_wait_ms
        )
        reply = self._slot(keys=keys, args=args)
        at_ms = int(reply[2]) if len(reply) > 2 else 0  # noqa: PLR2004 (the reply's shape)
        return Slot(str(reply[0]) == "ok", int(reply[1]) / 1000, at_ms / 1000)

    def cool_off(self, account: str, seconds: float) -> None:
        """Hold every pod back for `seconds` (Zalo said HTTP 429); a longer cool-off wins."""
        key = self._keys.cooloff(account)
        ttl_ms = max(1, int(seconds * 1000))
        current = self._client.pttl(key)
        if not isinstance(current, int) or current < ttl_ms:
            self._client.set(key, "1", px=ttl_ms)


def rate_slot_args(
    keys: Keys, account: str, rate: RateParams, *, max_wait_ms: int
) -> tuple[list[str], list[int]]:
    """rate_slot.lua's KEYS and ARGV."""
    return (
        [keys.rate(account), keys.cooloff(account)],
        [rate.emission_us, rate.tolerance_us, max_wait_ms],
    )

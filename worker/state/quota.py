"""Quota gate: the account's `remainingQuota`, shared in Redis and reserved atomically per send.

The counter starts from what Zalo reports (a probe of `GET /message/quota`, free of charge), is
decremented once per send before the call, given back when Zalo surely did not send, and lowered
(never raised) by the figure each send reports, since sends still in flight are already subtracted.
It expires at the assumed reset (midnight Asia/Ho_Chi_Minh); a probe or a reset sets it anew.
Reserved units are counted in `inflight` until settled, so a probe's figure (which may not yet
count our sends in flight) is read as `figure - inflight`. A worker that dies mid-send leaves its
unit in `inflight`: the counter errs low (never over quota) until the next probe or reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from worker.clock import Clock, ms, next_quota_reset
from worker.state.keys import Keys
from worker.state.scripts import register


class Gate(StrEnum):
    """The answer of the account gates."""

    OK = "ok"
    PAUSED = "paused"
    TEMPLATE_BLOCKED = "template_blocked"
    UNKNOWN = "unknown"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class QuotaView:
    """What we believe of an account's quota."""

    remaining: int | None
    daily: int | None
    updated_at_ms: int | None
    inflight: int = 0


class QuotaStore:
    """Per-account quota counter, template blocks, and the pause gate, in one round trip."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, clock: Clock, reserve_floor: int = 0
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._floor = reserve_floor
        self._reserve = register(client, "reserve")
        self._observe = register(client, "quota_observe")
        self._give_back = register(client, "quota_release")
        self._rebase = register(client, "quota_rebase")

    def reserve(self, account: str, template_id: str, *, probe: bool = False) -> Gate:
        """Pass the pause, template and quota gates and take one unit, atomically."""
        keys = [
            self._keys.paused(account),
            self._keys.quota(account),
            self._keys.template_block(account, template_id),
        ]
        reply = self._reserve(keys=keys, args=[self._floor, "1" if probe else "0"])
        return Gate(str(reply[0]))

    def release(self, account: str, *, give_back: bool = True) -> None:
        """Settle a reserved unit without a figure from Zalo: give it back when Zalo surely did
        not send, keep it spent when it did (or may have)."""
        self._give_back(keys=[self._keys.quota(account)], args=["1" if give_back else "0"])

    def observe(self, account: str, remaining: int, daily: int | None) -> int:
        """Settle our send's unit and fold Zalo's figure in (lowers the counter, never raises)."""
        return self._fold(account, remaining, daily, "sent")

    def init(self, account: str, remaining: int, daily: int | None) -> int:
        """Start the counter from a probe, unless another process already did."""
        return self._fold(account, remaining, daily, "init")

    def set(self, account: str, remaining: int, daily: int | None) -> int:
        """Take Zalo's figure (minus sends in flight) after exhaustion or a reset."""
        return self._fold(account, remaining, daily, "set")

    def rebase(self, account: str, new_daily: int, *, prev_daily: int | None = None) -> int | None:
        """Zalo changed the daily quota: move the counter by the change (once, however often the
        event comes); None when there is no counter yet."""
        now = self._clock()
        prev = "" if prev_daily is None else prev_daily
        args = [prev, new_daily, ms(next_quota_reset(now)), ms(now)]
        result = int(self._rebase(keys=[self._keys.quota(account)], args=args))
        return None if result < 0 else result

    def exhaust(self, account: str) -> None:
        """Zalo said the daily quota is used up (-144 and friends): counter to zero until reset."""
        self._fold(account, 0, None, "set")

    def block_template(self, account: str, template_id: str) -> float:
        """Zalo said this template's daily limit is reached (-147); returns the unblock time."""
        until = next_quota_reset(self._clock())
        self._client.set(self._keys.template_block(account, template_id), "1", pxat=ms(until))
        return until

    def view(self, account: str) -> QuotaView:
        """The counter as it stands."""
        raw: dict[str, str] = self._client.hgetall(self._keys.quota(account))  # type: ignore[assignment]
        return QuotaView(
            remaining=_opt_int(raw.get("remaining")),
            daily=_opt_int(raw.get("daily")),
            updated_at_ms=_opt_int(raw.get("updated_at_ms")),
            inflight=_opt_int(raw.get("inflight")) or 0,
        )

    def _fold(self, account: str, remaining: int, daily: int | None, mode: str) -> int:
        now = self._clock()
        args = [remaining, "" if daily is None else daily, mode, ms(next_quota_reset(now)), ms(now)]
        return int(self._observe(keys=[self._keys.quota(account)], args=args))


def _opt_int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None

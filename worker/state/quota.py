"""Quota gate: the account's `remainingQuota`, shared in Redis and reserved atomically per send.

The gates and the reservation run in `begin_step.lua` (`StepGate.begin`), a send's figure is
folded in by `finish_sent.lua` (`StepGate.finish_sent`); this store probes, settles, rebases and
reads the counter, with the same Lua functions (`lua/lib/quota.lua`).

The counter starts from what Zalo reports (a probe of `GET /message/quota`, free of charge), is
decremented once per send before the call, given back when Zalo surely did not send, and lowered
(never raised) by the figure each send reports, since sends still in flight are already subtracted.
It expires at the assumed reset (midnight Asia/Ho_Chi_Minh); a probe or a reset sets it anew.
Reserved units are counted in `inflight` until settled, so a probe's figure (which may not yet
count our sends in flight) is read as `figure - inflight`, less the sends settled while the probe
was on its way (`settled`, counted per send settled as spent). A worker that dies mid-send leaves
its unit in `inflight`: the counter errs low (never over quota) until the next probe or reset.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker.clock import Clock, ms, next_quota_reset
from worker.state.keys import Keys
from worker.state.scripts import register


@dataclass(frozen=True, slots=True)
class QuotaView:
    """What we believe of an account's quota."""

    remaining: int | None
    daily: int | None
    updated_at_ms: int | None
    inflight: int = 0


class QuotaStore:
    """Per-account quota counter and template blocks (the gates themselves: `StepGate.begin`)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Clock) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._observe = register(client, "quota_observe")
        self._give_back = register(client, "quota_release")
        self._rebase = register(client, "quota_rebase")

    def release(self, account: str, *, give_back: bool = True) -> None:
        """Settle a reserved unit without a figure from Zalo: give it back when Zalo surely did
        not send, keep it spent when it did (or may have)."""
        keys, args = quota_release_args(self._keys, account, give_back=give_back)
        self._give_back(keys=keys, args=args)

    def observe(self, account: str, remaining: int, daily: int | None) -> int:
        """Settle our send's unit and fold Zalo's figure in (lowers the counter, never raises)."""
        return self._fold(account, remaining, daily, "sent")

    def settled(self, account: str) -> int:
        """Sends settled as spent so far: read before a probe, given to `init`/`set` after it."""
        return int(self._client.hget(self._keys.quota(account), "settled") or 0)

    def init(
        self, account: str, remaining: int, daily: int | None, *, settled_before: int | None = None
    ) -> int:
        """Start the counter from a probe, unless another process already did."""
        return self._fold(account, remaining, daily, "init", settled_before)

    def set(
        self, account: str, remaining: int, daily: int | None, *, settled_before: int | None = None
    ) -> int:
        """Take Zalo's figure after exhaustion or a reset, less the sends in flight and those
        settled since `settled_before` (read before the probe)."""
        return self._fold(account, remaining, daily, "set", settled_before)

    def rebase(self, account: str, new_daily: int, *, prev_daily: int | None = None) -> int | None:
        """Zalo changed the daily quota: move the counter by the change (once, however often the
        event comes); None when there is no counter yet."""
        keys, args = quota_rebase_args(
            self._keys, account, prev_daily=prev_daily, new_daily=new_daily, now=self._clock()
        )
        result = int(self._rebase(keys=keys, args=args))
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

    def _fold(
        self,
        account: str,
        remaining: int,
        daily: int | None,
        mode: str,
        settled_before: int | None = None,
    ) -> int:
        keys, args = quota_observe_args(
            self._keys,
            account,
            reported=remaining,
            daily=daily,
            mode=mode,
            now=self._clock(),
            settled_before=settled_before,
        )
        return int(self._observe(keys=keys, args=args))


def quota_observe_args(
    keys: Keys,
    account: str,
    *,
    reported: int,
    daily: int | None,
    mode: str,
    now: float,
    settled_before: int | None = None,
) -> tuple[list[str], list[str | int]]:
    """quota_observe.lua's KEYS and ARGV (mode: 'sent' | 'init' | 'set')."""
    daily_arg = "" if daily is None else daily
    before = "" if settled_before is None else settled_before
    return (
        [keys.quota(account)],
        [reported, daily_arg, mode, ms(next_quota_reset(now)), ms(now), before],
    )


def quota_release_args(keys: Keys, account: str, *, give_back: bool) -> tuple[list[str], list[str]]:
    """quota_release.lua's KEYS and ARGV."""
    return [keys.quota(account)], ["1" if give_back else "0"]


def quota_rebase_args(
    keys: Keys, account: str, *, prev_daily: int | None, new_daily: int, now: float
) -> tuple[list[str], list[str | int]]:
    """quota_rebase.lua's KEYS and ARGV (prev_daily None: the event did not say)."""
    prev = "" if prev_daily is None else prev_daily
    return [keys.quota(account)], [prev, new_daily, ms(next_quota_reset(now)), ms(now)]


def _opt_int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None

"""The lane feeder every worker process runs: steps waiting in their account's lane go back to
the `zns` queue as fast as their account can send them, realtime first (worker/state/lanes.py).

Each pass looks at the accounts that may have steps in a lane (a set in Redis, swept in full
now and then in case a hint was lost), and for each takes, in one Lua call, what the account's
rate grants within the horizon, no more than `lane_max_released` released and not begun, and,
while Zalo is slow for the account or not yet seen fast (worker/pipeline/answer_times.py), no
more than its in-flight cap leaves room for; each step with its rate-limit slot taken. Those are
published, each in a message of its own under its own task id, with the slot in their sealed
`_meta`, and their leases ended. One step per message: several would run one after the other in
one thread, each in a slot taken for it and counted in flight only while it runs, so a message
released while its account looked fast could hold a thread for ten slow answers, beyond the cap.
Many feeders may run at once: the Lua call is atomic, so each step is taken by one of them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis
from kombu.exceptions import KombuError

from worker import metrics
from worker.clock import Clock, ms, system_clock
from worker.errors import ZnsError
from worker.pipeline.step_meta import META_FIELD, StepMeta
from worker.runtime import Runtime
from worker.state.lanes import LaneEntry, Release, Released, ReleaseLimits
from worker.state.ratelimit import RateParams

log = logging.getLogger(__name__)

PublishEntries = Callable[[list[tuple[LaneEntry, dict[str, Any]]]], object]
"""Publish lane entries on the `zns` queue, each in a message of its own under its task id, with
the kwargs given (several at once: one broker round trip where the broker allows)."""
#: What a pass survives: the state Redis or the broker unreachable (a failed publish leaves its
#: steps leased: they go back to their lane when the lease runs out).
UNREACHABLE = (ZnsError, OSError, redis.RedisError, KombuError)
#: The most steps one feeder takes for one account in one pass.
RELEASE_LIMIT = 200
#: Every this many seconds a pass looks at every configured account, not only the active set.
FULL_SWEEP_S = 5.0


class LaneFeeder:
    """One pass over the accounts with waiting steps; safe to run in many processes at once."""

    def __init__(
        self, runtime: Runtime, publish: PublishEntries, *, clock: Clock = system_clock
    ) -> None:
        self._rt = runtime
        self._publish = publish
        self._clock = clock
        self._swept_at = 0.0

    def run_once(self) -> int:
        """Release what every account can send next; returns how many steps. Never raises."""
        released = 0
        try:
            accounts = self._accounts()
        except UNREACHABLE as exc:  # Redis unreachable: the next pass tries again
            log.warning("lane feeder: %s: %s", type(exc).__name__, exc)
            return 0
        for account in sorted(accounts):
            try:
                released += self.feed(account)
            except UNREACHABLE as exc:
                log.warning("lane feeder for %s: %s: %s", account, type(exc).__name__, exc)
        return released

    def feed(self, account: str) -> int:
        """Release what one account can send next; returns how many steps."""
        limits = self._limits(account)
        release = self._rt.lanes.release(account, limits)
        self._publish_all(account, release)
        if release.empty and not release.taken:
            self._rt.lanes.forget_if_empty(account)
        return len(release.taken)

    def _accounts(self) -> set[str]:
        now = self._clock()
        if now - self._swept_at >= FULL_SWEEP_S:
            self._swept_at = now
            return set(self._rt.settings.account_names()) | self._rt.lanes.active()
        return self._rt.lanes.active()

    def _limits(self, account: str) -> ReleaseLimits:
        """The account's own; an account this deployment does not know (a producer enqueued a
        bulk run for it, or it left the configuration) is released without limits, and its
        steps are dead-lettered as unknown like any step of it from the queue."""
        settings = self._rt.settings.account(account)
        pipeline = self._rt.settings.pipeline
        return ReleaseLimits(
            rate=RateParams.of(settings),
            horizon_ms=ms(pipeline.lane_horizon_s),
            max_in_flight=settings.max_in_flight if settings else 0,
            limit=RELEASE_LIMIT,
            max_released=pipeline.lane_max_released,
            enforce_cap=self._rt.sender.answer_times.capped(account),
        )

    def _publish_all(self, account: str, release: Release) -> None:
        """Publish the taken steps, then end their leases. A failed publish (the broker is
        down) gives them back at once: the next pass after the broker returns releases them
        again (a repeat for any published before the failure, which the idempotency key makes
        harmless); if even that fails, their leases run out."""
        if not release.taken:
            return
        try:
            self._publish([(item.entry, self._kwargs(item)) for item in release.taken])
        except UNREACHABLE:
            with contextlib.suppress(*UNREACHABLE):
                self._rt.lanes.give_back(account, release.taken)
            raise
        self._rt.lanes.done(account, release.taken)
        for item in release.taken:
            metrics.RELEASED.labels(account, item.entry.lane.value).inc()

    def _kwargs(self, item: Released) -> dict[str, Any]:
        entry = item.entry
        meta = StepMeta(history=entry.history, probe=entry.probe, slot=item.slot_at_ms)
        return {**entry.kwargs, META_FIELD: self._rt.meta_seal.seal(meta, entry.kwargs)}

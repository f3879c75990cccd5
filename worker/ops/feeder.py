"""The lane feeder every worker process runs: steps waiting in their account's lane go back to
the `zns` queue as fast as their account can send them, realtime first (worker/state/lanes.py).

Each pass looks at the accounts that may have steps in a lane (a set in Redis, swept in full
now and then in case a hint was lost), and for each takes, in one Lua call, what the account's
rate grants within the horizon and its in-flight cap leaves room for, each step with its
rate-limit slot taken. Those are published under their own task ids, with the slot in their
sealed `_meta`, and their leases ended: for an account without a rate limit several to a message
(`steps_per_message`, as bulk enqueue does; one thread runs a message's steps one after the
other), for a rate-limited one each in its own message, so that every step can go in its slot.
Many feeders may run at once: the Lua call is atomic, so each step is taken by one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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
"""Publish lane entries (each with the kwargs to publish) on the `zns` queue under their own
task ids, in one message when there are several (they share their callbacks)."""
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
        self._publish_all(account, release, limits.per_message)
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
        rate = RateParams.of(settings)
        pipeline = self._rt.settings.pipeline
        return ReleaseLimits(
            rate=rate,
            horizon_ms=ms(pipeline.lane_horizon_s),
            max_in_flight=settings.max_in_flight if settings else 0,
            limit=RELEASE_LIMIT,
            per_message=1 if rate.emission_us > 0 else pipeline.steps_per_message,
        )

    def _publish_all(self, account: str, release: Release, per_message: int) -> None:
        """Publish the taken steps; a failed publish leaves its steps' leases to run out (they
        go back to their lane), and ends the others'."""
        published: list[Released] = []
        try:
            for group in _groups(release.taken, per_message):
                self._publish([(item.entry, self._kwargs(item)) for item in group])
                published += group
                for item in group:
                    metrics.RELEASED.labels(account, item.entry.lane.value).inc()
        finally:
            self._rt.lanes.done(account, published)

    def _kwargs(self, item: Released) -> dict[str, Any]:
        entry = item.entry
        meta = StepMeta(history=entry.history, probe=entry.probe, slot=item.slot_at_ms)
        return {**entry.kwargs, META_FIELD: self._rt.meta_seal.seal(meta, entry.kwargs)}


def _groups(taken: list[Released], per_message: int) -> Iterator[list[Released]]:
    """Consecutive steps with the same callbacks, at most `per_message` to a group; a step with
    an error callback or several callbacks goes alone (a bulk message carries one `link`)."""
    group: list[Released] = []
    for item in taken:
        fits = (
            group
            and len(group) < per_message
            and _batchable(item.entry)
            and _batchable(group[0].entry)
            and item.entry.link == group[0].entry.link
        )
        if group and not fits:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _batchable(entry: LaneEntry) -> bool:
    return entry.link_error is None and len(entry.link or ()) <= 1

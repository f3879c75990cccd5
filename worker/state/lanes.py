"""Lanes: each account's steps that wait for its capacity, out of the shared queue.

The `zns` queue is one FIFO for every account. A step that cannot go now because of its own
account (no rate-limit slot soon enough, the account's in-flight cap reached, or steps of its
account already waiting ahead of it) leaves that queue for its account's lane in Redis, holding no
worker thread and no place in front of other accounts' steps. Each account has two lanes,
`realtime` and `bulk`; a feeder in every worker process (`worker/ops/feeder.py`) releases from
them what the account can send next, realtime first, with the rate-limit slot already taken
(`lane_release.lua`), and publishes them back to `zns`. So the shared queue only ever holds
steps that can be sent about now, and an account's backlog waits in its own lane.

An entry is the step as it will be published again: its task id (results, `link` and Flower keep
following it), its public kwargs, its attempt history and its callbacks. A feeder leases what it
takes; if it dies before publishing, the lease runs out and the entry goes back to the head of its
lane (a repeat publish, which the idempotency key makes harmless).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from worker.clock import ms
from worker.job import Lane
from worker.state.keys import Keys
from worker.state.ratelimit import RateParams
from worker.state.scripts import register


@dataclass(frozen=True, slots=True)
class LaneEntry:
    """A step waiting in a lane, as stored."""

    task_id: str
    account: str
    lane: Lane
    kwargs: dict[str, Any]  # the public kwargs (no `_meta`)
    history: tuple[dict[str, Any], ...] = ()
    link: list[dict[str, Any]] | None = None  # callbacks, as Celery serialises signatures
    link_error: list[dict[str, Any]] | None = None
    probe: bool = False  # the canary of a paused account (worker/pipeline/step_meta.py)
    queued_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        """Serialised for Redis."""
        body = {
            "id": self.task_id,
            "account": self.account,
            "lane": self.lane.value,
            "kwargs": self.kwargs,
            "history": list(self.history),
            "link": self.link,
            "link_error": self.link_error,
            "probe": self.probe,
            "queued_at": self.queued_at,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> LaneEntry:
        """Parse a stored entry (written by `to_json`: the lane store is ours alone)."""
        body = json.loads(text)
        return cls(
            task_id=body["id"],
            account=body["account"],
            lane=Lane(body["lane"]),
            kwargs=body["kwargs"],
            history=tuple(body.get("history") or ()),
            link=body.get("link"),
            link_error=body.get("link_error"),
            probe=body.get("probe") is True,
            queued_at=float(body.get("queued_at") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class Released:
    """An entry a feeder took, with the rate-limit slot taken for it (0: none needed)."""

    entry: LaneEntry
    raw: str
    slot_at_ms: int


@dataclass(frozen=True, slots=True)
class Release:
    """What one `release` call took, and what is left in the account's lanes."""

    taken: list[Released]
    realtime_left: int
    bulk_left: int
    leased: int = 0  # entries taken by feeders and not yet published (these included)

    @property
    def empty(self) -> bool:
        """Nothing left in either lane, nothing leased."""
        return self.realtime_left == 0 and self.bulk_left == 0 and self.leased == 0


@dataclass(frozen=True, slots=True)
class ReleaseLimits:
    """How much one `release` call may take for an account."""

    rate: RateParams
    horizon_ms: int
    max_in_flight: int
    limit: int
    max_released: int = 200  # released to the queue and not begun yet
    enforce_cap: bool = True  # release no more than the in-flight cap leaves room for


class LaneStore:
    """Push steps into an account's lanes; lease, release and count them."""

    def __init__(self, client: redis.Redis, keys: Keys, *, lease_s: float, grace_s: float) -> None:
        self._client = client
        self._keys = keys
        self._lease_ms = ms(lease_s)
        self._grace_ms = ms(grace_s)
        self._release = register(client, "lane_release")

    def push(self, entries: Sequence[LaneEntry], *, front: bool = False) -> None:
        """Add steps at the tail of their lanes (`front`: at the head, in the order given, for
        steps released once already), in one round trip."""
        if not entries:
            return
        pipe = self._client.pipeline(transaction=False)
        for entry in reversed(entries) if front else entries:
            key = self._keys.lane(entry.account, entry.lane.value)
            (pipe.lpush if front else pipe.rpush)(key, entry.to_json())
        for account in {entry.account for entry in entries}:
            pipe.sadd(self._keys.lanes_active(), account)
        pipe.execute()

    def release(self, account: str, limits: ReleaseLimits) -> Release:
        """Take what the account can send next (see `lane_release.lua`)."""
        keys, args = lane_release_args(
            self._keys, account, limits, lease_ms=self._lease_ms, grace_ms=self._grace_ms
        )
        reply = self._release(keys=keys, args=args)
        taken = [
            Released(LaneEntry.from_json(raw), _text(raw), int(slot))
            for raw, slot in zip(reply[3::2], reply[4::2], strict=True)
        ]
        return Release(
            taken, realtime_left=int(reply[0]), bulk_left=int(reply[1]), leased=int(reply[2])
        )

    def done(self, account: str, taken: Sequence[Released]) -> None:
        """The entries are published: end their leases."""
        if taken:
            self._client.zrem(self._keys.lane_leases(account), *(item.raw for item in taken))

    def give_back(self, account: str, taken: Sequence[Released]) -> None:
        """Their publish failed: end their leases now, so the next release puts them back at the
        head of their lanes (instead of when the leases run out). Some may have been published
        before the failure: a repeat, which the idempotency key makes harmless."""
        if taken:
            ends = {item.raw: len(taken) - i for i, item in enumerate(taken)}  # long past, ordered
            self._client.zadd(self._keys.lane_leases(account), ends, xx=True)  # as the release

    def active(self) -> set[str]:
        """Accounts that may have steps in a lane."""
        return {_text(name) for name in self._client.smembers(self._keys.lanes_active())}

    def forget_if_empty(self, account: str) -> bool:
        """Drop the account from the active set if both its lanes are empty and nothing of it is
        leased; a push racing this puts it back (it adds the account after its entry, and this
        looks again after)."""
        self._client.srem(self._keys.lanes_active(), account)
        if self.depth(account) != (0, 0) or self._client.zcard(self._keys.lane_leases(account)):
            self._client.sadd(self._keys.lanes_active(), account)
            return False
        return True

    def depth(self, account: str) -> tuple[int, int]:
        """(realtime, bulk) steps waiting in the account's lanes."""
        pipe = self._client.pipeline(transaction=False)
        pipe.llen(self._keys.lane(account, Lane.REALTIME.value))
        pipe.llen(self._keys.lane(account, Lane.BULK.value))
        realtime, bulk = pipe.execute()
        return int(realtime), int(bulk)

    def leave_in_flight(self, account: str, task_id: str) -> None:
        """A released step ended before `begin` (parked for its journey's order): it no longer
        counts in flight."""
        pipe = self._client.pipeline(transaction=False)
        pipe.zrem(self._keys.inflight(account), released_member(task_id))
        pipe.zrem(self._keys.lane_released(account), released_member(task_id))
        pipe.execute()

    def in_flight(self, account: str) -> int:
        """The account's steps counted in flight (begun, or released and not begun yet)."""
        return int(self._client.zcount(self._keys.inflight(account), time.time() * 1000, "+inf"))


def released_member(task_id: str) -> str:
    """A released step's entry in its account's in-flight set until it begins."""
    return f"r:{task_id}"


def lane_release_args(
    keys: Keys, account: str, limits: ReleaseLimits, *, lease_ms: int, grace_ms: int
) -> tuple[list[str], list[int | str]]:
    """lane_release.lua's KEYS and ARGV."""
    return (
        [
            keys.lane(account, Lane.REALTIME.value),  # lane_realtime
            keys.lane(account, Lane.BULK.value),  # lane_bulk
            keys.lane_leases(account),  # leases
            keys.inflight(account),  # inflight
            keys.rate(account),  # rate_key
            keys.cooloff(account),  # cooloff_key
            keys.lane_released(account),  # released
        ],
        [
            limits.rate.emission_us,
            limits.rate.tolerance_us,
            limits.horizon_ms,
            limits.max_in_flight,
            limits.limit,
            lease_ms,
            grace_ms,
            limits.max_released,
            "1" if limits.enforce_cap else "0",
        ],
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

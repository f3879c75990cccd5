"""Parking: long waits (quota reset, night hours, paused account) live in Redis, not in countdowns.

A Redis-broker message held longer than the visibility timeout is delivered twice, so no Celery
countdown may be long. A parked job sits in a per-account sorted set scored by its due time (+inf
while it waits for a resume). Every worker process runs a releaser; a releaser leases due jobs
atomically (`park_claim_due.lua`), re-enqueues them, then deletes them. If it dies in between, the
lease runs out and another releaser publishes the job again: a duplicate publish, which the
idempotency key makes harmless. No single process is needed for jobs to come back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from worker.clock import Clock, ms
from worker.state.keys import Keys
from worker.state.scripts import register
from worker.status import ParkReason

WAKE_BATCH = 500


@dataclass(frozen=True, slots=True)
class ParkedJob:
    """A parked job as stored."""

    parking_id: str
    account: str
    reason: ParkReason
    due_at: float | None  # None: until the account is resumed
    parked_at: float
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    detail: str = ""

    def to_json(self) -> str:
        """Serialised for Redis."""
        body = {
            "parking_id": self.parking_id,
            "account": self.account,
            "reason": self.reason.value,
            "due_at": self.due_at,
            "parked_at": self.parked_at,
            "kwargs": self.kwargs,
            "meta": self.meta,
            "detail": self.detail,
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ParkedJob:
        """Parse a stored entry."""
        body = json.loads(text)
        return cls(
            parking_id=body["parking_id"],
            account=body["account"],
            reason=ParkReason(body["reason"]),
            due_at=body["due_at"],
            parked_at=body["parked_at"],
            kwargs=body["kwargs"],
            meta=body.get("meta", {}),
            detail=body.get("detail", ""),
        )


class ParkingLot:
    """Per-account parked jobs: park, lease the due ones, wake some early, list."""

    def __init__(self, client: redis.Redis, keys: Keys, *, clock: Clock, lease_s: float) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._lease_ms = ms(lease_s)
        self._claim_due = register(client, "park_claim_due")

    def park(
        self,
        account: str,
        *,
        reason: ParkReason,
        due_at: float | None,
        kwargs: dict[str, Any],
        meta: dict[str, Any],
        detail: str = "",
    ) -> ParkedJob:
        """Store a job until `due_at` (None: until the account is resumed)."""
        job = ParkedJob(
            parking_id=uuid.uuid4().hex,
            account=account,
            reason=reason,
            due_at=due_at,
            parked_at=self._clock(),
            kwargs=kwargs,
            meta=meta,
            detail=detail,
        )
        score = float("inf") if due_at is None else ms(due_at)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._keys.parked_jobs(account), job.parking_id, job.to_json())
        pipe.zadd(self._keys.parked(account), {job.parking_id: score})
        pipe.execute()
        return job

    def lease_due(self, account: str, limit: int) -> list[ParkedJob]:
        """Lease up to `limit` due jobs for re-enqueueing; call `done` after publishing each."""
        keys, args = park_claim_due_args(
            self._keys, account, now_ms=ms(self._clock()), lease_ms=self._lease_ms, limit=limit
        )
        flat = self._claim_due(keys=keys, args=args)
        return [ParkedJob.from_json(str(flat[i + 1])) for i in range(0, len(flat), 2)]

    def done(self, account: str, parking_ids: list[str]) -> None:
        """Forget jobs that were re-enqueued."""
        if not parking_ids:
            return
        pipe = self._client.pipeline(transaction=True)
        pipe.zrem(self._keys.parked(account), *parking_ids)
        pipe.hdel(self._keys.parked_jobs(account), *parking_ids)
        pipe.execute()

    def wake(self, account: str, reasons: set[ParkReason] | None = None) -> int:
        """Make parked jobs due now (all, or those parked for `reasons`); returns how many."""
        now_ms = ms(self._clock())
        woken = 0
        for job in self.entries(account):
            if reasons is None or job.reason in reasons:
                changed = self._client.zadd(
                    self._keys.parked(account), {job.parking_id: now_ms}, xx=True, ch=True
                )
                woken += int(changed or 0)
        return woken

    def entries(self, account: str, limit: int | None = None) -> list[ParkedJob]:
        """Parked jobs of an account, soonest first."""
        ids: list[str] = self._client.zrange(  # type: ignore[assignment]
            self._keys.parked(account), 0, -1 if limit is None else limit - 1
        )
        if not ids:
            return []
        bodies: list[str | None] = self._client.hmget(self._keys.parked_jobs(account), ids)  # type: ignore[assignment]
        return [ParkedJob.from_json(body) for body in bodies if body]

    def count(self, account: str) -> int:
        """How many jobs the account has parked."""
        return int(self._client.zcard(self._keys.parked(account)))


def park_claim_due_args(
    keys: Keys, account: str, *, now_ms: int, lease_ms: int, limit: int
) -> tuple[list[str], list[int]]:
    """park_claim_due.lua's KEYS and ARGV."""
    return [keys.parked(account), keys.parked_jobs(account)], [now_ms, lease_ms, limit]

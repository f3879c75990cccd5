"""Ordering within a journey: a numbered step is not sent before the journey's lower steps are sent
or dead-lettered, for at most `order_max_wait_s`.

Which lower steps: those known to exist. A producer using `worker.producer` records every step it
enqueues (`status_enqueued.lua`, pipelined with the batch and written before the publish); a step
enqueued with bare Celery becomes known when a worker first checks it. A step whose lower steps
were never enqueued (a journey starting at step 2) is not held back by them.

A waiting step does not hold a worker slot: it is parked (reason `order`, due at the end of its
maximum wait) and registered as a waiter of its journey, in the same Lua call as the check
(`order_wait.lua`). When a lower step is sent (`finish_sent.lua`) or dead-lettered
(`status_dead.lua`) the waiters become due at once; the releasers re-enqueue them and each checks
again. The maximum wait runs from the step's first wait; past it the step is sent anyway, logged
and counted (`zns_order_overdue_total`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from worker import metrics
from worker.clock import Clock, ms
from worker.job import Job
from worker.state.keys import Keys
from worker.state.parking import ParkedJob
from worker.state.scripts import register
from worker.state.step_status import step_identity
from worker.status import ParkReason

log = logging.getLogger(__name__)

_DUE_PLACEHOLDER = -1.0
_DUE_FIELD = '"due_at":'


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """What the check found: go, or parked (already, by the check) until `due_at`."""

    parked: bool = False
    due_at: float | None = None
    detail: str = ""
    overdue_s: float = 0.0  # > 0: sent although a lower step is still pending


class StepOrder:
    """Holds numbered steps back until the lower steps of their journey finished."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        clock: Clock,
        max_wait_s: float,
        retention_s: float,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._max_wait_ms = ms(max_wait_s)
        self._retention_ms = ms(retention_s)
        self._wait = register(client, "order_wait")

    def check(self, job: Job, meta: dict[str, Any]) -> OrderCheck:
        """Go, or park the job (meta: what the parked job carries, e.g. its history)."""
        if job.step is None:
            return OrderCheck()
        keys, args = order_wait_args(
            self._keys,
            job,
            self._parked_job(job, meta),
            now_ms=ms(self._clock()),
            retention_ms=self._retention_ms,
            max_wait_ms=self._max_wait_ms,
        )
        reply = self._wait(keys=keys, args=args)
        return _verdict(job, [str(part) for part in reply])

    def _parked_job(self, job: Job, meta: dict[str, Any]) -> ParkedJob:
        return ParkedJob(
            parking_id=uuid.uuid4().hex,
            account=job.account,
            reason=ParkReason.ORDER,
            due_at=_DUE_PLACEHOLDER,
            parked_at=self._clock(),
            kwargs=job.kwargs(),
            meta=meta,
            detail=f"waiting for a lower step than {job.step}",
        )


def order_wait_args(
    keys: Keys, job: Job, parked: ParkedJob, *, now_ms: int, retention_ms: int, max_wait_ms: int
) -> tuple[list[str], list[str | int]]:
    """order_wait.lua's KEYS and ARGV for a numbered step (the identity carries its number),
    and the job it parks if it must wait."""
    a = job.account
    job_head, job_tail = _split_due(parked.to_json())
    return (
        [
            keys.order_pending(a, job.phone, job.journey),  # order_pending
            keys.status(a, job.idempotency_key),  # status_hash
            keys.journey_steps(a, job.phone, job.journey),  # journey_steps
            keys.order_waiters(a, job.phone, job.journey),  # order_waiters
            keys.parked(a),  # parked
            keys.parked_jobs(a),  # parked_jobs
        ],
        [
            *step_identity(job),
            now_ms,
            retention_ms,
            max_wait_ms,
            parked.parking_id,
            job_head,
            job_tail,
        ],
    )


def _split_due(text: str) -> tuple[str, str]:
    """The parked job's JSON around its due time, which the script fills in."""
    marker = f"{_DUE_FIELD}{_DUE_PLACEHOLDER}"
    head, tail = text.split(marker, 1)
    return head + _DUE_FIELD, tail


def _verdict(job: Job, reply: list[str]) -> OrderCheck:
    if reply[0] == "go":
        return OrderCheck()
    lower = int(float(reply[2]))
    if reply[0] == "overdue":
        waited_s = int(reply[1]) / 1000
        metrics.ORDER_OVERDUE.labels(job.account).inc()
        log.warning(
            "step %d of journey sent after waiting %.0fs for step %d (maximum wait reached)",
            job.step,
            waited_s,
            lower,
        )
        return OrderCheck(overdue_s=waited_s)
    due_at = int(reply[1]) / 1000
    detail = f"step {job.step} waits for step {lower} of its journey"
    return OrderCheck(parked=True, due_at=due_at, detail=detail)

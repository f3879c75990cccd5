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
from worker.pipeline.outcomes import Park
from worker.state.keys import Keys
from worker.state.parking import ParkedJob, ParkReason
from worker.state.scripts import register
from worker.state.step_status import step_identity

log = logging.getLogger(__name__)

_DUE_PLACEHOLDER = -1.0
_DUE_FIELD = '"due_at":'


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """What the check found: go, or parked until `due_at` behind `lower_step`."""

    parked: Park | None = None
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
        parked = self._parked_job(job, meta)
        head, tail = _split_due(parked.to_json())
        a = job.account
        keys = [
            self._keys.order_pending(a, job.phone, job.journey),
            self._keys.status(a, job.idempotency_key),
            self._keys.journey_steps(a, job.phone, job.journey),
            self._keys.order_waiters(a, job.phone, job.journey),
            self._keys.parked(a),
            self._keys.parked_jobs(a),
        ]
        now_ms = ms(self._clock())
        args = [job.step, now_ms, self._max_wait_ms, self._retention_ms, parked.parking_id, head]
        reply = self._wait(keys=keys, args=[*args, tail, *step_identity(job)])
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
    return OrderCheck(parked=Park(ParkReason.ORDER, due_at, detail, stored=True))

"""Producer API for Python apps: validate in the billing app, then enqueue one or many steps.

A producer needs nothing of ours to enqueue (`Celery(broker=URL).send_task(TASK_NAME, kwargs=…,
queue="zns")` works); this module adds validation before the queue, efficient bulk publishing,
the `enqueued` status of every step (written to the state Redis before the publish, pipelined per
batch: it also tells ordered journeys which steps exist), status look-ups, and Celery callbacks
(`link=`: a task signature that receives the step's result dict).

Lanes: a single step goes to the `zns` queue as a realtime step. `enqueue_many` puts a bulk run
straight into its account's bulk lane in the state Redis (worker/state/lanes.py), from where the
workers' feeders release it at the account's pace, so a 500k run never stands in the shared queue
in front of other accounts' steps; with `lane="realtime"` the steps go to the queue as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.canvas import Signature

from worker.clock import system_clock
from worker.errors import InvalidJob
from worker.job import Job, Lane, parse_job
from worker.messaging.bulk import BulkPublisher
from worker.messaging.celery_app import create_celery, publish_step
from worker.settings import DEFAULT_ACCOUNT, Settings
from worker.state.keys import Keys
from worker.state.lanes import LaneEntry, LaneStore
from worker.state.step_status import StatusStore
from worker.status import Lookup, StepStatus

#: The producer's connections to the state Redis (status, lanes and look-ups).
STATE_CONNECTIONS = 8
#: Steps written to a lane per round trip.
LANE_BATCH = 1000


@dataclass
class BulkReport:
    """What `enqueue_many` did."""

    task_ids: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)


class BulkInvalid(InvalidJob):
    """Some jobs of a batch are invalid; nothing was enqueued."""

    def __init__(self, rejected: list[tuple[int, str]]) -> None:
        shown = "; ".join(f"#{index}: {reason}" for index, reason in rejected[:5])
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""  # noqa: PLR2004
        super().__init__(f"{len(rejected)} invalid job(s), nothing enqueued: {shown}{more}")
        self.rejected = rejected


class Producer:
    """Validates journey steps and publishes them to the `zns` queue."""

    def __init__(self, settings: Settings, *, app: Celery | None = None) -> None:
        self._settings = settings
        self._app = app or create_celery(settings)
        self._redis: redis.Redis | None = None
        self._status: StatusStore | None = None
        self._lanes: LaneStore | None = None

    @property
    def app(self) -> Celery:
        """The Celery app used to publish (for reading results)."""
        return self._app

    @staticmethod
    def validate(job: Mapping[str, Any]) -> Job:
        """Validate one job as the worker will; raises InvalidJob with a clear reason."""
        return parse_job(dict(job), default_key=uuid.uuid4().hex)

    def enqueue(self, *, link: object = None, **job: Any) -> str:
        """Validate and enqueue one step on the `zns` queue; returns the Celery task id.
        `link`: a Celery signature called with the step's result dict (`status`, `msg_id`, ...)
        when the task returns. `lane="bulk"` lets the account's realtime steps overtake it."""
        valid = self.validate(job)
        return self._publish([valid], link=_signature(link))[0]

    def status(
        self, value: str, *, by: Lookup = Lookup.IDEMPOTENCY_KEY, account: str = DEFAULT_ACCOUNT
    ) -> StepStatus | None:
        """A step's recorded life (enqueued, parked, sent, delivered, dead-lettered) by its
        idempotency key, tracking id or Zalo msg_id; None if nothing is recorded."""
        return self._status_store().get(account, value, by)

    def close(self) -> None:
        """Release the state-Redis connections (the Celery app keeps its own pool)."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._status = None
            self._lanes = None

    def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        skip_invalid: bool = False,
        on_progress: Callable[[int], None] | None = None,
        link: Signature | None = None,
        lane: Lane | str = Lane.BULK,
    ) -> BulkReport:
        """Validate every job, then enqueue them: into their accounts' bulk lanes (the
        default), or with `lane="realtime"` on the `zns` queue. A job's own `lane` wins.

        With `skip_invalid=False` (the default) one bad job enqueues nothing and raises
        BulkInvalid naming each bad job's index; with True the good ones go and the bad are
        reported in `BulkReport.rejected`.
        """
        default_lane = _lane(lane)
        valid: list[Job] = []
        report = BulkReport()
        for index, raw in enumerate(jobs):
            try:
                job = {"lane": default_lane.value, **raw} if isinstance(raw, Mapping) else raw
                valid.append(self.validate(job))
            except InvalidJob as exc:
                report.rejected.append((index, str(exc)))
        if report.rejected and not skip_invalid:
            raise BulkInvalid(report.rejected)
        bulk = [job for job in valid if job.priority is Lane.BULK]
        queued = [job for job in valid if job.priority is not Lane.BULK]
        published = self._publish(queued, on_progress=on_progress, link=link)
        laned = self._to_lane(bulk, on_progress=on_progress, link=link)
        ids = dict(zip(map(id, [*queued, *bulk]), [*published, *laned], strict=True))
        report.task_ids = [ids[id(job)] for job in valid]
        return report

    def _publish(
        self,
        jobs: list[Job],
        *,
        on_progress: Callable[[int], None] | None = None,
        link: Signature | None = None,
    ) -> list[str]:
        ids = [_task_id(job) for job in jobs]
        by_id = dict(zip(ids, jobs, strict=True))
        items = [(task_id, job.kwargs()) for task_id, job in zip(ids, jobs, strict=True)]

        def before(batch: list[tuple[str, dict[str, Any]]]) -> None:
            self._status_store().mark_enqueued([(task_id, by_id[task_id]) for task_id, _ in batch])

        if len(items) == 1:
            before(items)
            task_id, kwargs = items[0]
            publish_step(self._app, kwargs, task_id=task_id, link=link)
            if on_progress is not None:
                on_progress(1)
        else:
            per_message = self._settings.pipeline.steps_per_message
            BulkPublisher(self._app, link=link, steps_per_message=per_message).publish(
                items, on_progress=on_progress, before_batch=before
            )
        return ids

    def _to_lane(
        self,
        jobs: list[Job],
        *,
        on_progress: Callable[[int], None] | None = None,
        link: Signature | None = None,
    ) -> list[str]:
        """Record each step enqueued, then add it to its account's bulk lane, per batch."""
        ids = [_task_id(job) for job in jobs]
        links = [dict(link)] if link is not None else None
        lanes = self._lane_store()
        for start in range(0, len(jobs), LANE_BATCH):
            end = start + LANE_BATCH
            batch = list(zip(ids[start:end], jobs[start:end], strict=True))
            self._status_store().mark_enqueued(batch)
            lanes.push(
                [
                    LaneEntry(task_id, job.account, Lane.BULK, job.kwargs(), link=links)
                    for task_id, job in batch
                ]
            )
            if on_progress is not None:
                on_progress(len(batch))
        return ids

    def _lane_store(self) -> LaneStore:
        self._status_store()
        if self._lanes is None:
            assert self._redis is not None
            p = self._settings.pipeline
            self._lanes = LaneStore(
                self._redis, Keys(self._settings.key_prefix), lease_s=p.lane_lease_s,
                grace_s=p.lane_lease_s,
            )  # fmt: skip
        return self._lanes

    def _status_store(self) -> StatusStore:
        if self._status is None:
            from worker.state.connection import redis_client  # noqa: PLC0415 (not for every importer)

            self._redis = redis_client(self._settings.redis_url, max_connections=STATE_CONNECTIONS)
            self._status = StatusStore(
                self._redis,
                Keys(self._settings.key_prefix),
                clock=system_clock,
                retention_s=self._settings.pipeline.idempotency_retention_s,
            )
        return self._status


def _signature(link: object) -> Signature | None:
    """`link` as a Celery signature (typed `object` so job fields can be passed as **kwargs)."""
    if link is None or isinstance(link, Signature):
        return link
    raise TypeError(f"link must be a Celery signature, got {type(link).__name__}")


def _lane(value: Lane | str) -> Lane:
    try:
        return Lane(value)
    except ValueError:
        raise InvalidJob(f"lane must be 'realtime' or 'bulk', got {value!r}") from None


def _task_id(job: Job) -> str:
    """The producer's key doubles as the task id when it is a UUID (Flower and results line up)."""
    return job.idempotency_key if _is_uuid(job.idempotency_key) else uuid.uuid4().hex


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

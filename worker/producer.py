"""Producer API for Python apps: validate in the billing app, then enqueue one or many steps.

A producer needs nothing of ours to enqueue (`Celery(broker=URL).send_task(TASK_NAME, kwargs=…,
queue="zns")` works); this module adds validation before the queue and efficient bulk publishing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from worker.bulk import BulkPublisher
from worker.celery_app import create_celery, publish_step
from worker.errors import InvalidJob
from worker.job import Job, parse_job
from worker.settings import Settings


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
        self._app = app or create_celery(settings)

    @property
    def app(self) -> Celery:
        """The Celery app used to publish (for reading results)."""
        return self._app

    @staticmethod
    def validate(job: Mapping[str, Any]) -> Job:
        """Validate one job as the worker will; raises InvalidJob with a clear reason."""
        return parse_job(dict(job), default_key=uuid.uuid4().hex)

    def enqueue(self, **job: Any) -> str:
        """Validate and enqueue one step; returns the Celery task id."""
        valid = self.validate(job)
        return self._publish([valid])[0]

    def enqueue_many(
        self,
        jobs: Iterable[Mapping[str, Any]],
        *,
        skip_invalid: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> BulkReport:
        """Validate every job, then publish them over one connection.

        With `skip_invalid=False` (the default) one bad job enqueues nothing and raises
        BulkInvalid naming each bad job's index; with True the good ones go and the bad are
        reported in `BulkReport.rejected`.
        """
        valid: list[Job] = []
        report = BulkReport()
        for index, raw in enumerate(jobs):
            try:
                valid.append(self.validate(raw))
            except InvalidJob as exc:
                report.rejected.append((index, str(exc)))
        if report.rejected and not skip_invalid:
            raise BulkInvalid(report.rejected)
        report.task_ids = self._publish(valid, on_progress=on_progress)
        return report

    def _publish(
        self, jobs: list[Job], *, on_progress: Callable[[int], None] | None = None
    ) -> list[str]:
        items = [(_task_id(job), job.kwargs()) for job in jobs]
        if len(items) == 1:
            task_id, kwargs = items[0]
            publish_step(self._app, kwargs, task_id=task_id)
            if on_progress is not None:
                on_progress(1)
        else:
            BulkPublisher(self._app).publish(items, on_progress=on_progress)
        return [task_id for task_id, _ in items]


def _task_id(job: Job) -> str:
    """The producer's key doubles as the task id when it is a UUID (Flower and results line up)."""
    return job.idempotency_key if _is_uuid(job.idempotency_key) else uuid.uuid4().hex


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

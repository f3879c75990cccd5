"""`zns.send_journey_step`: decode kwargs, call JourneySender, map the outcome to Celery.

`run_step` is the whole life of one step short of Celery: the batch task (tasks/batch.py) runs
the same function for each step it carries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, assert_never

import redis
from celery import Task
from celery.exceptions import Reject
from celery.exceptions import Retry as CeleryRetry

from tasks.app import app, runtime
from worker import metrics
from worker.errors import WAITS, ErrorClass, InvalidJob
from worker.job import Job, parse_job
from worker.logs import current_account
from worker.messaging.names import QUEUE, TASK_NAME
from worker.pipeline.outcomes import (
    AlreadyDead,
    DeadLetter,
    Duplicate,
    Outcome,
    Park,
    Queued,
    Retry,
    Sent,
)
from worker.pipeline.sender import Attempt
from worker.pipeline.step_meta import META_FIELD, StepMeta
from worker.state.lanes import LaneEntry
from worker.state.step_gate import ReleasedSlot

log = logging.getLogger(__name__)
INFRA_RETRY_S = 5.0  # Redis restarts (failover, AOF reload) take seconds
#: Publishing a retry while the broker restarts: try for this long before requeueing.
PUBLISH_BUDGET_S = 30.0
PUBLISH_FIRST_PAUSE_S = 0.5
PUBLISH_MAX_PAUSE_S = 5.0


@dataclass(frozen=True)
class Again:
    """The step runs again later: published anew after `countdown` with this (sealed) meta."""

    job: Job
    meta: StepMeta
    countdown: float
    cause: BaseException | None = None
    kind: ErrorClass | None = None  # why: a failure's class, or a wait (`WAITS`)
    reason: str = ""

    def kwargs(self) -> dict[str, Any]:
        """The task kwargs of the new message (the job and its sealed attempt history)."""
        kwargs = self.job.kwargs()
        return {**kwargs, META_FIELD: runtime().meta_seal.seal(self.meta, kwargs)}


class WaitsInLane(Exception):
    """What the RETRY of a step that waits in its lane shows (Flower, the result backend)."""


@dataclass(frozen=True)
class Waits:
    """The step waits in its account's lane (worker/state/lanes.py) until a feeder releases it."""

    job: Job
    meta: StepMeta
    why: str
    front: bool = False  # released once already: back at the head of its lane

    def entry(
        self,
        task_id: str,
        link: list[dict[str, Any]] | None = None,
        link_error: list[dict[str, Any]] | None = None,
    ) -> LaneEntry:
        """The lane entry: the step as it will be published again, under its own task id."""
        job = self.job
        return LaneEntry(
            task_id, job.account, job.priority, job.kwargs(), self.meta.history, link, link_error,
            probe=self.meta.probe,
        )  # fmt: skip


StepResult = dict[str, Any] | Again | Waits
"""A step's final result (the task result a producer reads), or when and how it runs again."""


@app.task(
    name=TASK_NAME,
    bind=True,
    acks_late=True,
    max_retries=None,
    queue=QUEUE,
    Request="tasks.request:MaskedRequest",
)
def send_journey_step(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[type-arg]
    """Send one journey step (kwargs only: the contract in docs/design.md)."""
    task_id = str(self.request.id)
    if args:
        kwargs.pop(META_FIELD, None)
        return dead_letter_invalid(task_id, "positional arguments are not accepted", args, kwargs)
    match run_step(task_id, kwargs):
        case Again() as again:
            _reschedule(self, again)
        case Waits() as waits:
            _wait_in_lane(self, waits)
        case result:
            return result


def run_step(task_id: str, kwargs: dict[str, Any], *, defer_token_wait: bool = False) -> StepResult:
    """Validate and process one step (its `_meta`, if any, is popped from `kwargs` and honoured
    only when the worker sealed it: worker/pipeline/step_meta.py).
    `defer_token_wait`: see `Attempt`."""
    raw_meta = kwargs.pop(META_FIELD, None)
    try:
        job = parse_job(kwargs, default_key=task_id)
    except InvalidJob as exc:
        return dead_letter_invalid(task_id, str(exc), (), kwargs)
    if runtime().settings.account(job.account) is None:
        return dead_letter_invalid(task_id, f"unknown account {job.account!r}", (), kwargs)
    meta = runtime().meta_seal.open(raw_meta, kwargs)
    account_token = current_account.set(job.account)
    try:
        return _run(job, meta, task_id, defer_token_wait)
    finally:
        current_account.reset(account_token)


def _run(job: Job, meta: StepMeta, task_id: str, defer_token_wait: bool) -> StepResult:
    history = meta.history
    attempt = Attempt(
        task_id=task_id,
        retries=sum(1 for h in history if h.get("class") not in WAITS),
        probe=meta.probe,
        history=history,
        defer_token_wait=defer_token_wait,
        released=None if meta.slot is None else ReleasedSlot(meta.slot, task_id),
    )
    try:
        outcome = runtime().sender.process(job, attempt)
    except (redis.RedisError, OSError) as exc:
        # The state store is unreachable: nothing was sent, try again soon (not counted as a
        # failure of the job). The RETRY result cannot be stored meanwhile: the result backend
        # drops it (worker/messaging/result_backend.py) instead of leaving the message unsettled.
        log.warning("state Redis unavailable (%s); retrying", type(exc).__name__)
        return Again(job, StepMeta(history=history), INFRA_RETRY_S, cause=exc)
    return _result(job, meta, outcome, defer_token_wait)


def _result(job: Job, meta: StepMeta, outcome: Outcome, defer_token_wait: bool) -> StepResult:
    """The task result a producer reads, or when to run the step again."""
    match outcome:
        case Sent() | Duplicate() | AlreadyDead():
            return outcome.result
        case Retry():
            kind = outcome.error_class
            if not (defer_token_wait and kind is ErrorClass.TOKEN_WAIT):  # deferrals are quiet
                log.info("retrying in %.1fs: %s", outcome.delay_s, outcome.reason)
            return Again(
                job, meta.with_error(outcome.error), outcome.delay_s, kind=kind,
                reason=outcome.reason,
            )  # fmt: skip
        case Queued():
            waits_meta = StepMeta(history=meta.history, probe=meta.probe)
            return Waits(job, waits_meta, outcome.why, outcome.front)
        case Park():
            return {
                "status": "parked",
                "reason": outcome.reason.value,
                "due_at": outcome.due_at,
                "tracking_id": job.tracking_id,
                "detail": outcome.detail[:300],
            }
        case DeadLetter():
            return {
                "status": "dead_lettered",
                "reason": outcome.reason[:300],
                "code": outcome.code,
                "tracking_id": job.tracking_id,
            }
        case _:
            assert_never(outcome)


def _reschedule(task: Task, again: Again) -> NoReturn:  # type: ignore[type-arg]
    """Publish the step again with a countdown (Celery's retry), then let Celery ack this one."""

    def retry() -> None:
        raise task.retry(  # type: ignore[call-arg]  # Celery passes **options on
            countdown=again.countdown, kwargs=again.kwargs(), kwargsrepr=again.job.kwargs_repr()
        ) from again.cause

    publish_within_budget(retry, (Reject,))
    raise AssertionError("unreachable: Task.retry always raises")  # pragma: no cover


def _wait_in_lane(task: Task, waits: Waits) -> NoReturn:  # type: ignore[type-arg]
    """Put the step in its account's lane, then end this run as Celery's retry does (state
    RETRY, message acked): the feeder publishes it again under the same task id, with its
    callbacks. If the lane is out of reach (state Redis down), it is rescheduled instead."""
    request = task.request
    entry = waits.entry(
        str(request.id), _signatures(request.callbacks), _signatures(request.errbacks)
    )
    try:
        runtime().lanes.push([entry], front=waits.front)
    except (redis.RedisError, OSError) as exc:
        log.warning("state Redis unavailable (%s); retrying", type(exc).__name__)
        _reschedule(task, Again(waits.job, waits.meta, INFRA_RETRY_S, cause=exc))
    reason = f"waits in its account's {waits.job.priority.value} lane ({waits.why})"
    raise CeleryRetry(reason, exc=WaitsInLane(reason))


def _signatures(value: object) -> list[dict[str, Any]] | None:
    """A request's callbacks as the dicts Celery serialises them to (None: none)."""
    if not value:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    return [dict(item) for item in items if isinstance(item, dict)] or None


def publish_within_budget(
    publish: Callable[[], object], errors: tuple[type[BaseException], ...]
) -> None:
    """Run `publish`; while it fails with `errors` (the broker is restarting), try again for a
    while, then requeue the message in hand.

    With a Redis broker, a message taken just as Redis went down may exist only in this thread
    (kombu records it as unacked in a second call, which failed). Celery would reject it without
    requeue; after the budget it is requeued instead, never dropped."""
    pause, deadline = PUBLISH_FIRST_PAUSE_S, time.monotonic() + PUBLISH_BUDGET_S
    while True:
        try:
            publish()
            return
        except errors as exc:
            reason = exc.args[0] if exc.args else None
            if time.monotonic() + pause > deadline:
                log.error("could not publish the retry (%r); requeueing the step", reason)
                raise Reject(reason, requeue=True) from exc
            log.warning("could not publish the retry (%r); again in %.1fs", reason, pause)
        time.sleep(pause)
        pause = min(pause * 2, PUBLISH_MAX_PAUSE_S)


def dead_letter_invalid(
    task_id: str, reason: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """A job that can never be sent: keep it whole for an operator, never retry it."""
    payload = {"args": list(args), "kwargs": kwargs} if args else kwargs
    account = kwargs.get("account") if isinstance(kwargs.get("account"), str) else None
    metrics.DEAD_LETTERS.labels(account or "-", ErrorClass.INVALID_JOB.value).inc()
    entry = runtime().dead_letters.add(
        reason=reason,
        error_class=ErrorClass.INVALID_JOB,
        code=None,
        kwargs=payload,
        account=account,
        task_id=task_id,
    )
    log.warning("invalid job dead-lettered (%s): %s", entry.id, reason)
    return {"status": "dead_lettered", "reason": reason, "code": None, "dead_letter_id": entry.id}

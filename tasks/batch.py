"""`zns.send_journey_steps`: several journey steps in one broker message (bulk enqueue).

Celery's own work per message (decode, request, trace, task events, result write, ack) was
~35-40% of a worker's CPU per step in `zns bench`; a batch pays it once for all its steps. Each step
still gets what a `zns.send_journey_step` message gets:

- the same pipeline (`run_step`: validation, claim, gates, tokens, send, record), in order;
- its own result under its own task id (`AsyncResult(step_id).get()`), all of the batch's
  results written in one round trip before the batch is acked;
- its own task events for Flower (received, started, succeeded), under its own id, with the
  single task's name and masked kwargs, published together with the batch's;
- its `link` callback, called with its result;
- a step that must run again later (retry, throttled, Redis unreachable) leaves the batch as a
  single `zns.send_journey_step` message with its countdown, under its own task id.

A step whose journey token another step (of another batch, often: bulk runs put a journey's
steps in neighbouring messages) is creating right now does not wait for it, polling Redis and
holding the thread: it is taken up again after the batch's other steps, when the token exists.

The batch is acked after its last step. If the worker dies first, the message is delivered again
and the steps already sent are recognised by their idempotency keys (returned, not resent). A
batch never holds its message longer than the soft time limit: steps not started by then go out
again as a new batch.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections import Counter
from typing import Any

import redis
from celery import Task
from celery.canvas import Signature, signature
from celery.exceptions import Reject
from celery.utils.saferepr import saferepr
from kombu.exceptions import OperationalError

from tasks import envelope
from tasks.app import app, runtime
from tasks.step import (
    INFRA_RETRY_S,
    Again,
    Waits,
    dead_letter_invalid,
    publish_within_budget,
    run_step,
)
from worker.errors import ErrorClass
from worker.job import masked_kwargs_repr
from worker.messaging.celery_app import publish_batch, publish_step
from worker.messaging.names import BATCH_TASK_NAME, QUEUE, TASK_NAME
from worker.messaging.result_backend import ResultBackend

log = logging.getLogger(__name__)
#: What stops a publish while the broker restarts (kombu wraps most; redis-py and sockets not).
PUBLISH_ERRORS = (Reject, OperationalError, redis.RedisError, OSError)
BATCH_FIELDS = frozenset({"steps", "link"})


@app.task(
    name=BATCH_TASK_NAME,
    bind=True,
    acks_late=True,
    max_retries=None,
    queue=QUEUE,
    ignore_result=True,  # nobody holds a batch's id; each step's result is stored under its own
    Request="tasks.request:MaskedRequest",
)
def send_journey_steps(self: Task, *args: Any, **kwargs: Any) -> dict[str, int]:  # type: ignore[type-arg]
    """Send the journey steps of one bulk-enqueued message (`steps`: [{"id", "kwargs"}, …])."""
    steps, link, problem = _decode(args, kwargs)
    if problem:
        dead_letter_invalid(str(self.request.id), problem, args, kwargs)
        return {"dead_lettered": 1}
    steps = _without_bad_ids(steps)
    run = _BatchRun(self, link)
    try:
        return run.all(steps)
    finally:
        run.publish_events()


class _BatchRun:
    """One batch in one pool thread: its steps in order, results and events gathered."""

    def __init__(self, task: Task, link: Signature | None) -> None:  # type: ignore[type-arg]
        self._task = task
        self._link = link
        self._deadline = time.monotonic() + runtime().settings.celery.soft_time_limit_s
        self._results: list[tuple[str, dict[str, Any]]] = []
        self._counts: Counter[str] = Counter()
        self._started: set[str] = set()
        self._waiting: list[tuple[str, Waits]] = []
        #: (type, fields) of the steps' task events, kept with their own timestamps.
        self._events: list[tuple[str, dict[str, Any]]] | None = (
            [] if runtime().settings.celery.task_events else None
        )

    def all(self, steps: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
        """Run every step (or hand the rest on when the time is up); returns counts by status."""
        for step_id, kwargs in steps:
            self._event("task-received", step_id, **_received_fields(step_id, kwargs))
        try:
            later = self._pass(steps, defer_token_wait=True)
            self._pass(later, defer_token_wait=False)
        finally:
            self._settle()
        return dict(self._counts)

    def _pass(
        self, steps: list[tuple[str, dict[str, Any]]], *, defer_token_wait: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        """Run `steps` in order (handing the rest on when the time is up); returns the steps
        deferred while their journey token was being created elsewhere."""
        later: list[tuple[str, dict[str, Any]]] = []
        for index, (step_id, kwargs) in enumerate(steps):
            if time.monotonic() > self._deadline:
                self._hand_on([*steps[index:], *later])
                return []
            if self._one(step_id, kwargs, defer_token_wait=defer_token_wait):
                later.append((step_id, kwargs))
        return later

    def _one(self, step_id: str, kwargs: dict[str, Any], *, defer_token_wait: bool) -> bool:
        """Run one step; True if it was deferred (its journey token is being created)."""
        if step_id not in self._started:  # a deferred step starts once
            self._started.add(step_id)
            self._event("task-started", step_id)
        started = time.perf_counter()
        try:
            result = run_step(step_id, dict(kwargs), defer_token_wait=defer_token_wait)
        except Exception:
            # Unexpected: the step goes out alone, where Celery's handling of a failing task
            # applies (not acked, delivered again) without holding up the rest of the batch.
            log.exception("a step failed in a batch; it goes out again alone")
            self._alone(step_id, kwargs, INFRA_RETRY_S, "failed")
            return False
        match result:
            case Again(kind=ErrorClass.TOKEN_WAIT) if defer_token_wait:
                log.info("step %s deferred to the end of its batch: %s", step_id, result.reason)
                return True
            case Again():
                self._alone(step_id, result.kwargs(), result.countdown, "retried")
                return False
            case Waits():
                self._waiting.append((step_id, result))
                return False
        self._results.append((step_id, result))
        self._counts[str(result.get("status"))] += 1
        runtime_s = time.perf_counter() - started
        self._event("task-succeeded", step_id, result=saferepr(result), runtime=runtime_s)
        return False

    def _alone(self, step_id: str, kwargs: dict[str, Any], countdown: float, count: str) -> None:
        """Publish the step as a single `zns.send_journey_step` under its own id."""

        def publish() -> None:
            publish_step(app, kwargs, task_id=step_id, countdown=countdown)

        publish_within_budget(publish, PUBLISH_ERRORS)
        self._counts[count] += 1
        self._event("task-retried", step_id, exception=f"Retry in {countdown:.1f}s")

    def _to_lanes(self) -> None:
        """The steps that wait for their account's capacity go to its lanes (one round trip),
        each under its own task id with the batch's link; if the lanes are out of reach (state
        Redis down) each goes out alone with a countdown instead."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        link = [dict(self._link)] if self._link is not None else None
        try:
            for front in (False, True):
                entries = [w.entry(step_id, link) for step_id, w in waiting if w.front is front]
                runtime().lanes.push(entries, front=front)
        except (redis.RedisError, OSError) as exc:
            log.warning("state Redis unavailable (%s); waiting steps retried", type(exc).__name__)
            for step_id, waits in waiting:
                again = Again(waits.job, waits.meta, INFRA_RETRY_S, cause=exc)
                self._alone(step_id, again.kwargs(), INFRA_RETRY_S, "retried")
            return
        for step_id, waits in waiting:
            self._counts["waiting"] += 1
            self._event("task-retried", step_id, exception=f"waits in its lane ({waits.why})")

    def _hand_on(self, rest: list[tuple[str, dict[str, Any]]]) -> None:
        log.warning("batch past its time limit: %d steps go out again as a new batch", len(rest))
        link = dict(self._link) if self._link is not None else None
        publish_within_budget(lambda: publish_batch(app, rest, link=link), PUBLISH_ERRORS)
        self._counts["handed_on"] += len(rest)

    def _settle(self) -> None:
        """Put the waiting steps in their lanes, store the finished steps' results (one round
        trip), then call their links."""
        self._to_lanes()
        done, self._results = self._results, []
        if not done:
            return
        _result_backend().store_many(done)
        if self._link is not None:
            for step_id, result in done:
                self._link.apply_async((result,), parent_id=step_id, root_id=step_id)

    def _event(self, type_: str, step_id: str, **fields: Any) -> None:
        if self._events is not None:
            self._events.append((type_, {"uuid": step_id, "timestamp": time.time(), **fields}))

    def publish_events(self) -> None:
        """The steps' task events, as one `task.multi` message (how Celery's worker batches its
        own); a producer from the pool is held only for this publish."""
        if not self._events:
            return
        try:
            with app.amqp.producer_pool.acquire(block=True) as producer:
                dispatcher = app.events.Dispatcher(
                    producer.connection,
                    hostname=self._task.request.hostname,
                    channel=producer.channel,
                    buffer_while_offline=False,
                    buffer_group=["task"],
                    buffer_limit=len(self._events) + 1,
                )
                for type_, fields in self._events:
                    dispatcher.send(type_, **fields)
                dispatcher.flush()
                dispatcher.close()
        except Exception:  # events are for watching; the steps are done
            log.warning("task events of a batch not published", exc_info=True)
        self._events = []


@functools.cache
def _result_backend() -> ResultBackend:
    """One result backend (one Redis pool) for every thread, as Celery's tracer has; `app.backend`
    would give each of the pool's threads its own client and connections."""
    backend: ResultBackend = app.backend  # type: ignore[assignment]  # ours (celery_app.py)
    return backend


def _decode(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[tuple[str, dict[str, Any]]], Signature | None, str | None]:
    """The batch's steps and link, or why the message is unusable as a whole."""
    steps = kwargs.get("steps")
    if args or not isinstance(steps, list) or not set(kwargs) <= BATCH_FIELDS:
        return [], None, "a batch takes only the keyword arguments `steps` and `link`"
    decoded: list[tuple[str, dict[str, Any]]] = []
    for step in steps:
        if not (isinstance(step, dict) and isinstance(step.get("kwargs"), dict)):
            return [], None, "each step of a batch is an object with `id` and `kwargs`"
        step_id = step.get("id") or str(uuid.uuid4())
        decoded.append((step_id, step["kwargs"]))
    raw_link = kwargs.get("link")
    if raw_link is not None and not isinstance(raw_link, dict):
        return [], None, "`link` must be a Celery signature"
    return decoded, signature(raw_link, app=app) if raw_link else None, None


def _without_bad_ids(steps: list[tuple[Any, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The steps whose id can key a result; the others are dead-lettered (a lone surrogate or
    a huge id from a foreign producer: Celery could never store their result)."""
    good: list[tuple[str, dict[str, Any]]] = []
    for step_id, kwargs in steps:
        problem = envelope.step_id_problem(step_id)
        if problem is None:
            good.append((step_id, kwargs))
        else:
            dead_letter_invalid(uuid.uuid4().hex, f"batch step: {problem}", (), kwargs)
    return good


def _received_fields(step_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What Celery's own `task-received` event carries (phone masked, as for single steps)."""
    return {
        "name": TASK_NAME,
        "args": "()",
        "kwargs": masked_kwargs_repr(kwargs),
        "root_id": step_id,
        "parent_id": None,
        "retries": 0,
        "eta": None,
        "expires": None,
    }


__all__ = ["send_journey_steps"]

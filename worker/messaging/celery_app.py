"""The Celery app: each setting with the reason it is there (docs/design.md, operating rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from worker.job import masked_kwargs_repr
from worker.messaging.broker import transport_for
from worker.messaging.names import BATCH_TASK_NAME, QUEUE, TASK_NAME
from worker.messaging.result_backend import backend_url
from worker.settings import Settings

TASK_MODULES = ["tasks.step", "tasks.batch", "tasks.lifecycle"]
CONSUMER_CLASS = "tasks.consumer:DeadLetteringConsumer"
#: Seconds between two sweeps for expired unacked messages (Redis broker); each is one
#: ZREVRANGEBYSCORE under a mutex, cheap.
RESTORE_SWEEP_S = 10


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; one visibility timeout for every process."""
    c = settings.celery
    transport: dict[str, Any] = {"visibility_timeout": c.visibility_timeout_s}
    # Redis broker: every worker sweeps for messages a dead worker held, every
    # RESTORE_SWEEP_S (kombu's default is 10 s x a throttle of 10): back within
    # visibility timeout + one sweep = 250 s, under the 5 minutes we promise.
    broker_transport = {
        **transport,
        "unacked_restore_interval": RESTORE_SWEEP_S,
        "unacked_restore_throttle": 1,
        **confirm_options(c.queue_type),
    }
    return {
        "broker_url": settings.effective_broker_url,
        # Redis broker: kombu's transport, feeding the consumer thread in batches and hardened
        # for a Redis restart (worker/messaging/broker.py).
        "broker_transport": transport_for(settings.effective_broker_url),
        # Results let producers read `status`/`msg_id`; kept in the state Redis, bounded in time.
        # Celery's Redis backend, written in one round trip instead of two, and a write that
        # cannot reach Redis never keeps a message unsettled (worker/messaging/result_backend.py).
        "result_backend": backend_url(settings.redis_url),
        "result_expires": c.result_expires_s,
        # Not `result_extended`: results would then hold the job kwargs (phone numbers) too.
        # Redelivery of a dead worker's jobs after minutes, not Redis's default hour. The same
        # value on every producer and worker, or ETA messages get redelivered early.
        "broker_transport_options": broker_transport,
        "result_backend_transport_options": transport,
        # Ack after the work, and requeue if the worker process dies: safe only because every
        # send is idempotent (claim before send, `sent` recorded after).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # An unexpected exception must not ack (and so drop) a job: it is delivered again.
        "task_acks_on_failure_or_timeout": False,
        # One message per thread at a time: a dying worker strands as few jobs as possible.
        "worker_prefetch_multiplier": 1,
        # JSON only: producers in other codebases and languages, and no pickle from the network.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # A step is a few HTTP calls with explicit timeouts; anything longer is sick.
        "task_soft_time_limit": c.soft_time_limit_s,
        "task_time_limit": c.time_limit_s,
        # Flower sees every task from sent to done. The cost: three PUBLISHes per job, flushed by
        # the single consumer thread; ZNS_CELERY__TASK_EVENTS=false trades them for throughput.
        "worker_send_task_events": c.task_events,
        "task_send_sent_event": c.task_events,
        # Not `task_track_started`: a STARTED result write costs two Redis round trips per task,
        # and Flower learns "started" from the task-started event anyway.
        # Everything on our queue, by name, for producers that import nothing of ours.
        "task_default_queue": QUEUE,
        "task_queues": [task_queue(c.queue_type)],
        **quorum_config(c.queue_type),
        "task_routes": {TASK_NAME: {"queue": QUEUE}, BATCH_TASK_NAME: {"queue": QUEUE}},
        # A lost broker connection must not leave half-done tasks running unacked.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        # Undecodable messages become dead letters instead of vanishing with a log line.
        "worker_consumer": CONSUMER_CLASS,
        "worker_hijack_root_logger": False,
        "worker_concurrency": c.concurrency,
        "worker_pool": "threads",
    }


def task_queue(queue_type: str) -> Queue:
    """`zns` as workers and the producer API declare it. A quorum queue (RabbitMQ) is bound to a
    topic exchange, so that Celery's native delayed delivery can route retries to it."""
    if queue_type == "quorum":
        return Queue(
            QUEUE,
            Exchange(QUEUE, type="topic"),
            routing_key=QUEUE,
            queue_arguments={"x-queue-type": "quorum"},
        )
    return Queue(QUEUE)


def quorum_config(queue_type: str) -> dict[str, Any]:
    """With quorum queues: any queue Celery creates is a quorum queue on a topic exchange, and a
    countdown goes through RabbitMQ's delay exchanges (Celery's native delayed delivery, set up
    by every worker at start), since a quorum queue has no global prefetch a worker could raise
    while it holds a message for its ETA."""
    if queue_type != "quorum":
        return {}
    return {
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
    }


def confirm_options(queue_type: str) -> dict[str, Any]:
    """With quorum queues, every publish waits for RabbitMQ's confirm (the message is in the
    queue's log): `enqueue` returns, a worker acks a step it published again, and a feeder ends
    the lease of a step it released, only once the broker holds the message, so a broker crash
    cannot take one in flight."""
    return {"confirm_publish": True} if queue_type == "quorum" else {}


class ZnsCelery(Celery):
    """Celery; with quorum queues, a countdown under one second is raised to one. Celery routes
    a countdown through its delay exchanges by whole seconds and refuses one that rounds to zero
    (kombu's `calculate_routing_key`): our retries would fail to publish."""

    whole_second_countdowns = False

    def send_task(self, name: str, *args: Any, **options: Any) -> Any:
        """Celery's `send_task`, with the countdown adjusted as above."""
        countdown = options.get("countdown")
        if self.whole_second_countdowns and countdown is not None and 0 < countdown < 1:
            options["countdown"] = 1.0
        return super().send_task(name, *args, **options)


def create_celery(settings: Settings) -> Celery:
    """A configured Celery app; tasks are registered by importing `tasks.step`."""
    app = ZnsCelery("zns", include=TASK_MODULES)
    app.whole_second_countdowns = settings.celery.queue_type == "quorum"
    app.conf.update(celery_config(settings))
    return app


def publish_step(app: Celery, kwargs: dict[str, Any], **options: Any) -> str:
    """Publish one journey step by name on our queue; Celery logs and Flower see the phone masked.
    Returns the task id."""
    result = app.send_task(
        TASK_NAME, kwargs=kwargs, kwargsrepr=masked_kwargs_repr(kwargs), queue=QUEUE, **options
    )
    return str(result.id)


def batch_kwargs(
    steps: Sequence[tuple[str, dict[str, Any]]], link: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The kwargs of one `zns.send_journey_steps` message: (task id, step kwargs) pairs."""
    kwargs: dict[str, Any] = {"steps": [{"id": task_id, "kwargs": kw} for task_id, kw in steps]}
    if link is not None:
        kwargs["link"] = link
    return kwargs


def publish_batch(
    app: Celery,
    steps: Sequence[tuple[str, dict[str, Any]]],
    *,
    link: dict[str, Any] | None = None,
    **options: Any,
) -> str:
    """Publish several steps as one message (each keeps its task id for results and Flower).
    Returns the batch message's id."""
    kwargs = batch_kwargs(steps, link)
    result = app.send_task(
        BATCH_TASK_NAME, kwargs=kwargs, kwargsrepr=masked_kwargs_repr(kwargs), queue=QUEUE,
        **options,
    )  # fmt: skip
    return str(result.id)

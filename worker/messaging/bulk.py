"""Bulk publishing of journey steps: a billing run's 500k jobs with few broker round trips.

Steps go `steps_per_message` to a message (`zns.send_journey_steps`, tasks/batch.py; each step
keeps its own task id, result, events and link), so the broker carries and the workers decode,
trace and ack one message per batch instead of one per step; 1 gives one
`zns.send_journey_step` message per step. A lone step always goes as a single-step message.

With a Redis broker, Celery's per-message `send_task` costs one LPUSH round trip plus ~100 µs
of Python. Here the message is built once by Celery itself (`amqp.as_task_v2`, a template), and
each message only swaps in its id, kwargs and masked kwargs repr; the messages go out in one
LPUSH per `batch_size` steps. The messages are the ones Celery's own producer would write
(protocol 2, JSON, base64 body, the queue's list). Other brokers (AMQP) use kombu's
`Producer.batch`, whose publishes are asynchronous, except with quorum queues, where each waits
for RabbitMQ's confirm (worker/messaging/celery_app.py).

Not sent: the optional `task-sent` event per job (Flower still sees every task from `received`).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from celery import Celery
from celery.canvas import Signature

from worker.job import masked_kwargs_repr
from worker.messaging.celery_app import batch_kwargs, publish_batch, publish_step
from worker.messaging.names import BATCH_TASK_NAME, QUEUE, TASK_NAME
from worker.settings import DEFAULT_STEPS_PER_MESSAGE

DEFAULT_BATCH = 1000
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

Item = tuple[str, dict[str, Any]]
"""(task id, task kwargs)."""
BeforeBatch = Callable[[list[Item]], None]
"""Called with each batch just before it is published (the producer records their status)."""


class BulkPublisher:
    """Publishes many steps to the `zns` queue in batches."""

    def __init__(
        self,
        app: Celery,
        *,
        batch_size: int = DEFAULT_BATCH,
        link: Signature | None = None,
        steps_per_message: int = DEFAULT_STEPS_PER_MESSAGE,
    ) -> None:
        if steps_per_message < 1:
            raise ValueError(f"steps_per_message must be >= 1, got {steps_per_message}")
        self._app = app
        self._batch_size = batch_size
        self._per_message = steps_per_message
        self._redis = str(app.conf.broker_url).startswith(("redis://", "rediss://", "unix://"))
        self._link = link
        self._embed = {**EMBED, "callbacks": [dict(link)] if link is not None else None}

    def publish(
        self,
        items: Iterable[Item],
        *,
        on_progress: Callable[[int], None] | None = None,
        before_batch: BeforeBatch | None = None,
    ) -> int:
        """Publish every item; returns how many went out."""
        sent = 0
        batch: list[Item] = []
        for item in items:
            batch.append(item)
            if len(batch) >= self._batch_size:
                sent += self._flush(batch, on_progress, before_batch)
                batch = []
        if batch:
            sent += self._flush(batch, on_progress, before_batch)
        return sent

    def _flush(
        self,
        batch: list[Item],
        on_progress: Callable[[int], None] | None,
        before_batch: BeforeBatch | None,
    ) -> int:
        if before_batch is not None:
            before_batch(batch)
        if self._redis:
            self._lpush(batch)
        else:
            self._kombu_batch(batch)
        if on_progress is not None:
            on_progress(len(batch))
        return len(batch)

    def _groups(self, batch: Sequence[Item]) -> Iterator[Sequence[Item]]:
        """The steps of each message, in order."""
        for start in range(0, len(batch), self._per_message):
            yield batch[start : start + self._per_message]

    def _lpush(self, batch: Sequence[Item]) -> None:
        amqp = self._app.amqp
        single = amqp.as_task_v2("template", TASK_NAME, args=(), kwargs={})
        multi = amqp.as_task_v2("template", BATCH_TASK_NAME, args=(), kwargs={})
        link = dict(self._link) if self._link is not None else None
        encoded = [
            json.dumps(_message(single, *group[0], self._embed))
            if len(group) == 1
            else json.dumps(_message(multi, str(uuid.uuid4()), batch_kwargs(group, link), EMBED))
            for group in self._groups(batch)
        ]
        with self._app.connection_for_write() as conn, conn.channel() as channel:
            client = channel.client  # type: ignore[attr-defined]  # kombu Redis channel
            # One LPUSH of the whole batch: pushed in order, popped from the other end, so the
            # queue order is that of N single LPUSHes, in one command instead of N.
            client.lpush(QUEUE, *encoded)

    def _kombu_batch(self, batch: Sequence[Item]) -> None:
        link = dict(self._link) if self._link is not None else None
        with self._app.producer_or_acquire() as producer, producer.batch(len(batch)):
            for group in self._groups(batch):
                if len(group) == 1:
                    task_id, kwargs = group[0]
                    publish_step(
                        self._app, kwargs, task_id=task_id, producer=producer, link=self._link
                    )
                else:
                    publish_batch(self._app, group, link=link, producer=producer)


def _message(
    template: Any, task_id: str, kwargs: dict[str, Any], embed: dict[str, Any]
) -> dict[str, Any]:
    """The Redis-transport envelope Celery + kombu would write for this task."""
    headers = {**template.headers, "id": task_id, "root_id": task_id}
    headers["kwargsrepr"] = masked_kwargs_repr(kwargs)
    body = json.dumps([[], kwargs, embed]).encode()
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": template.properties.get("reply_to", ""),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }

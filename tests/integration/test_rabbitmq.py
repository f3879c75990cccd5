"""The same pipeline with RabbitMQ as the broker (state stays in Redis)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.rabbitmq import rabbitmq_url
from tests.support import WorkerProcess
from worker.producer import Producer
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl


@pytest.fixture
def amqp_url(rabbitmq_vhost: str) -> str:
    """The machine's RabbitMQ, a vhost of this test's own (tests/rabbitmq.py)."""
    return rabbitmq_url(rabbitmq_vhost)


def test_steps_are_sent_once_with_a_rabbitmq_broker(
    amqp_url: str,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a worker consuming from RabbitMQ
    start_worker(concurrency=8, ZNS_BROKER_URL=amqp_url)
    amqp_settings = settings.model_copy(update={"broker_url": amqp_url})
    # When 40 steps over 10 journeys are enqueued, one of them twice with the same key
    jobs = [
        {
            "phone": f"09{j:08d}",
            "template_id": "400",
            "template_data": {"step": s},
            "journey": f"rmq-{j}",
            "idempotency_key": f"rmq-{j}-{s}",
        }
        for j in range(10)
        for s in range(4)
    ]
    producer = Producer(amqp_settings)
    report = producer.enqueue_many([*jobs, jobs[0]])
    # Then 40 messages are sent (the repeat is a duplicate), with 10 journey tokens
    statuses = [producer.app.AsyncResult(t).get(timeout=90)["status"] for t in report.task_ids]
    assert statuses.count("sent") == 40
    assert statuses.count("duplicate") == 1
    stats = control.stats()
    assert stats.sends_accepted == 40
    assert stats.journey_tokens_created == 10

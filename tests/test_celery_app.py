"""The Celery configuration derived from our settings: the queue declarations per queue type."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from worker.messaging.celery_app import celery_config, create_celery
from worker.settings import Settings

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def _settings(queue_type: str) -> Settings:
    return Settings(_env_file=None, broker_url=AMQP, celery={"queue_type": queue_type})


def test_a_classic_queue_is_celerys_default_declaration() -> None:
    config = celery_config(_settings("classic"))
    (queue,) = config["task_queues"]
    assert queue.name == "zns" and not queue.queue_arguments
    assert "confirm_publish" not in config["broker_transport_options"]
    assert "task_default_queue_type" not in config


def test_a_quorum_queue_on_a_topic_exchange_with_publisher_confirms() -> None:
    config = celery_config(_settings("quorum"))
    (queue,) = config["task_queues"]
    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert queue.exchange.name == "zns" and queue.exchange.type == "topic"
    assert queue.routing_key == "zns"
    assert config["broker_transport_options"]["confirm_publish"] is True
    assert config["task_default_queue_type"] == "quorum"


@pytest.mark.parametrize(
    ("queue_type", "countdown", "published"),
    [
        ("quorum", 0.2, 1.0),  # Celery's delayed delivery would refuse int(0.2) == 0
        ("quorum", 2.5, 2.5),
        ("quorum", None, None),
        ("classic", 0.2, 0.2),
    ],
)
def test_a_countdown_under_a_second_is_raised_to_one_with_quorum_queues(
    monkeypatch: pytest.MonkeyPatch,
    queue_type: str,
    countdown: float | None,
    published: float | None,
) -> None:
    seen: list[Any] = []

    def send_task(self: Celery, name: str, *args: Any, **options: Any) -> None:
        seen.append(options.get("countdown"))

    monkeypatch.setattr(Celery, "send_task", send_task)
    app = create_celery(_settings(queue_type))
    app.send_task("zns.send_journey_step", kwargs={}, countdown=countdown)
    assert seen == [published]

"""`zns` as a RabbitMQ quorum queue (`ZNS_CELERY__QUEUE_TYPE=quorum`): the worker, the producer
API, retries through Celery's native delayed delivery, and what a producer that declares the
queue otherwise meets (Celery on its defaults, celery-node)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from tests.integration.conftest import NODE_DIR
from tests.rabbitmq import rabbitmq_url
from tests.support import WorkerProcess, wait_until
from worker.messaging.celery_app import task_queue
from worker.messaging.names import QUEUE, TASK_NAME
from worker.producer import Producer
from worker.settings import Settings
from zns_dev.sandbox.control import SandboxControl

QUORUM = {"ZNS_CELERY__QUEUE_TYPE": "quorum"}
#: Where Celery publishes a countdown with quorum queues (kombu's native delayed delivery).
DELAY_EXCHANGE = "celery_delayed_27"
RETRIED = "84900000001"


@pytest.fixture
def amqp_url(rabbitmq_vhost: str) -> str:
    """The machine's RabbitMQ, a vhost of this test's own (tests/rabbitmq.py)."""
    return rabbitmq_url(rabbitmq_vhost)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as resources:
        yield resources


def quorum_settings(settings: Settings, amqp_url: str) -> Settings:
    celery = settings.celery.model_copy(update={"queue_type": "quorum"})
    return settings.model_copy(update={"broker_url": amqp_url, "celery": celery})


def list_queues(vhost: str, column: str) -> dict[str, str]:
    """Queue name -> `column` (type, messages…) in `vhost`, as RabbitMQ reports them."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl not on this machine: the queues cannot be inspected")
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", column, "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def _job(n: int, phone: str | None = None) -> dict[str, object]:
    return {
        "phone": phone or f"8491{n:07d}",
        "template_id": "410",
        "template_data": {"n": n},
        "journey": f"q-{n}",
        "idempotency_key": f"q-{n}",
    }


def test_steps_and_a_retry_go_through_a_quorum_queue(  # noqa: PLR0917 (pytest fixtures)
    stack: ExitStack,
    rabbitmq_vhost: str,
    amqp_url: str,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a worker on RabbitMQ with `zns` declared as a quorum queue, and a Zalo that answers
    # one phone "try later" (-100) once
    control.script(-100, endpoint="send", phone=RETRIED)
    worker = start_worker(
        concurrency=8,
        ZNS_BROKER_URL=amqp_url,
        ZNS_PIPELINE__RETRY_BASE_DELAY_S="6",  # a countdown long enough to look at
        ZNS_PIPELINE__RETRY_MAX_DELAY_S="8",
        **QUORUM,
    )
    producer = Producer(quorum_settings(settings, amqp_url))
    # (a queue of the test's own that gets a copy of whatever enters Celery's delay exchanges)
    connection = stack.enter_context(Connection(amqp_url))
    tap = Queue("test-tap", Exchange(DELAY_EXCHANGE, type="topic"), routing_key="#")
    tap = tap(connection.channel())
    tap.declare()
    routes: list[str] = []
    # When the producer API enqueues 20 steps, one at a time and as a batch
    single = [producer.enqueue(**_job(n)) for n in range(10)]
    report = producer.enqueue_many([_job(n) for n in range(10, 19)] + [_job(19, RETRIED)])

    # Then the retry goes through RabbitMQ's delay exchanges (no worker holds it for its ETA),
    # routed by the bits of its countdown
    def delayed_copy() -> bool:
        message = tap.get(no_ack=True)
        if message is not None:
            routes.append(message.delivery_info["routing_key"])
        return bool(routes)

    wait_until(delayed_copy, timeout_s=30, what="the retry published to the delay exchanges")
    assert routes[0].endswith(f".{QUEUE}") and set(routes[0].split(".")[:-1]) <= {"0", "1"}
    # And all are sent once
    statuses = [
        producer.app.AsyncResult(t).get(timeout=90)["status"] for t in [*single, *report.task_ids]
    ]
    assert statuses == ["sent"] * 20
    sent = [m.phone for m in control.messages()]
    assert len(sent) == 20 == len(set(sent))
    assert control.stats().errors.get(-100) == 1
    assert "direct exchange" not in worker.log()
    # And `zns` is a quorum queue, beside Celery's delay queues
    types = list_queues(rabbitmq_vhost, "type")
    assert types[QUEUE] == "quorum"
    assert types.get("celery_delayed_0") == "quorum"


def test_a_bare_celery_producer_configured_as_documented_is_served(
    amqp_url: str,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a quorum-queue worker
    start_worker(concurrency=4, ZNS_BROKER_URL=amqp_url, **QUORUM)
    # When a Celery producer that imports nothing of ours declares the queue as the docs say
    app = Celery(broker=amqp_url)
    app.conf.task_queues = [task_queue("quorum")]
    app.send_task(TASK_NAME, kwargs=_job(1), queue=QUEUE)
    # Then the step is sent
    deadline = time.monotonic() + 30
    while not control.messages() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [m.phone for m in control.messages()] == [_job(1)["phone"]]


def test_a_producer_declaring_a_classic_queue_is_refused_loudly(
    amqp_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a quorum-queue worker (it declared `zns`)
    start_worker(concurrency=2, ZNS_BROKER_URL=amqp_url, **QUORUM)
    # When a Celery producer on defaults publishes to `zns` (it declares a classic queue)
    app = Celery(broker=amqp_url)
    # Then RabbitMQ refuses the declaration and the producer sees an error: nothing is lost
    # silently
    with pytest.raises(Exception, match=r"PRECONDITION_FAILED|inequivalent"):
        app.send_task(TASK_NAME, kwargs=_job(2), queue=QUEUE)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_celery_node_on_rabbitmq_is_served_on_a_classic_queue_and_refused_on_a_quorum_queue(
    queue_type: str,
    node: str,
    amqp_url: str,
    start_worker: Callable[..., WorkerProcess],
    control: SandboxControl,
) -> None:
    # Given a worker on RabbitMQ with `zns` of this type
    start_worker(concurrency=2, ZNS_BROKER_URL=amqp_url, ZNS_CELERY__QUEUE_TYPE=queue_type)
    # When celery-node (a Node billing app) publishes a step; it asserts a classic queue first
    done = subprocess.run(
        [node, str(NODE_DIR / "publish_amqp.mjs"), amqp_url],
        cwd=NODE_DIR,
        input=json.dumps(_job(3)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    # Then on a classic queue the step is sent; on a quorum queue the Node app gets RabbitMQ's
    # refusal (an error it sees, not a silent loss) and nothing is sent
    if queue_type == "classic":
        assert report.get("published") is True, report
        wait_until(lambda: len(control.messages()) == 1, timeout_s=30, what="the step sent")
        assert control.messages()[0].phone == _job(3)["phone"]
    else:
        assert "PRECONDITION_FAILED" in report.get("error", ""), report
        time.sleep(1)
        assert control.messages() == []
